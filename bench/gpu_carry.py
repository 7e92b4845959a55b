"""What the GPU check needs on a GPU machine that reaches no package registry, prepared here: `make gpu-carry`.

    .venv/bin/python bench/gpu_carry.py [--out .gpu-carry] [--limit-mb 60]

A lent GPU machine (docs/gpu.md) holds PyTorch with CUDA, transformers, PEFT and accelerate, but not harness's
other packages, and takes only about 64 MiB of files carried with the working tree. This writes into `--out`
(ignored by git; the device call carries it):
- `wheels/`: the packages the check's steps import that the image lacks (`IMAGE_HAS`, from the machine's recorded
  package list), with everything they require in turn that the image lacks too, each at the version this virtual
  environment holds (the one the tests passed with), for CPython 3.12 on x86-64 Linux;
- `cache/models/tiny-llama-seed0`: the tiny random Llama, built here: it takes its tokenizer from the embedded
  SmolLM2, whose 94 MB package does not travel.
Packages too big to go along (`TOO_BIG`) are left out and named; the total is printed against the limit.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from packaging.requirements import Requirement

# What the GPU check's training, search and registration steps import beyond the image (bench/gpu_check.py's STEPS).
# Not openai: the serving step needs vLLM too, which cannot travel.
ROOTS = ("trl", "datasets", "mlflow-skinny", "optuna", "plotly", "pydantic", "gguf", "jsonschema", "tenacity")
# The device image's Python packages as recorded for its kind: carried only where missing.
IMAGE_PACKAGES = Path(__file__).with_name("gpu_image_packages.txt")
IMAGE_HAS = {line.strip() for line in IMAGE_PACKAGES.read_text().splitlines() if line.strip()[:1] not in ("", "#")}
TOO_BIG = {
    "bitsandbytes": "its wheel (0.50.2) is 41 MB and does not fit beside the rest: the nf4 step needs a machine with it"
}
TARGET = ["--python-version", "3.12", "--implementation", "cp", "--only-binary=:all:"]
TARGET += [f"--platform={p}" for p in ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(roots: tuple[str, ...]) -> dict[str, str]:
    """Every package the roots need that the image lacks, at this environment's version."""
    needed: dict[str, str] = {}
    stack = [canonical(root) for root in roots]
    while stack:
        name = stack.pop()
        if name in needed or name in IMAGE_HAS or name in TOO_BIG:
            continue
        try:
            found = distribution(name)
        except PackageNotFoundError:
            continue  # required only on other platforms or Pythons
        needed[name] = found.version
        for text in found.requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                stack.append(canonical(requirement.name))
    return needed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(".gpu-carry"))
    parser.add_argument("--limit-mb", type=float, default=60.0, help="What may travel beside the working tree.")
    args = parser.parse_args()

    wheels = args.out / "wheels"
    shutil.rmtree(args.out, ignore_errors=True)
    wheels.mkdir(parents=True)
    needed = closure(ROOTS)
    pins = [f"{name}=={version}" for name, version in sorted(needed.items())]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", *TARGET, "-d", str(wheels), *pins],
                   check=True)  # fmt: skip

    from harness import model_loading

    tiny = model_loading.resolve_model("tiny:llama").path
    shutil.copytree(tiny, args.out / "cache" / "models" / tiny.name)

    sizes = {path.name: path.stat().st_size for path in args.out.rglob("*") if path.is_file()}
    total_mb = sum(sizes.values()) / 2**20
    for name, size in sorted(sizes.items(), key=lambda item: -item[1])[:8]:
        print(f"{size / 2**20:7.1f} MB  {name}")
    print(f"{len(needed)} packages, the tiny model: {total_mb:.1f} MB in {args.out} (limit {args.limit_mb:.0f} MB)")
    for name, why in TOO_BIG.items():
        print(f"left out: {name} ({why})")
    if total_mb > args.limit_mb:
        sys.exit(f"{args.out} holds {total_mb:.1f} MB, over the {args.limit_mb:.0f} MB that may travel")


if __name__ == "__main__":
    main()
