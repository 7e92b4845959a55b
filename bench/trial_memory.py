"""Memory of trials run one after another in one process (as a search runs them): before and after the kernel fixes.

    .venv/bin/python bench/trial_memory.py [--profile cpu] [--recipes nf4:attn:16 int8:attn:16 none:all:32]

oneDNN, which runs PyTorch's bf16 matmuls on a CPU, builds a kernel for every new matrix shape and keeps it (up to
1024 by default, about 0.5 MB each). Two contenders, each a fresh process running the same trials in order:
- before: micro-batches padded only to their longest sequence, oneDNN's default cache of 1024 kernels;
- harness: micro-batches padded to a multiple of 64 tokens (`training.CPU_PAD_MULTIPLE`), a cache of 256
  (`memory.KERNEL_CACHE_CAPACITY`).
Prints each trial's peak RSS and training seconds side by side, the kernels each process built, and the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

# padding multiple of a micro-batch (None: its longest sequence), kernels oneDNN keeps
CONTENDERS: dict[str, tuple[int | None, int]] = {"before": (None, 1024), "harness": (64, 256)}


def run_trials(profile: str, recipes: list[str], pad: int | None) -> list[dict[str, float]]:
    """The child: the recipes as trials, one after another in this process."""
    from harness import tracking, training
    from harness.config import load_task, resolve_trial_config
    from harness.trial import run_trial

    tracking.configure()  # the runs go to the child's own store (HARNESS_MLRUNS), not MLflow's default
    training.CPU_PAD_MULTIPLE = pad
    task = load_task("legal")
    figures = []
    for recipe in recipes:
        quantization, targets, rank = recipe.split(":")
        overrides = {"quantization": quantization, "lora.target_modules": targets, "lora.r": int(rank)}
        config = resolve_trial_config(task, profile=profile, overrides=overrides)
        with tempfile.TemporaryDirectory() as work:
            metrics = run_trial(task, config, output_dir=Path(work)).metrics
        figures.append({k: metrics[k] for k in ("peak_memory_mb", "train_seconds", "f1_micro")})
    return figures


def contend(name: str, profile: str, recipes: list[str]) -> tuple[list[dict[str, float]], int]:
    _, capacity = CONTENDERS[name]
    with tempfile.TemporaryDirectory() as store:
        env = {
            **os.environ,
            "HARNESS_MLRUNS": store,
            "ONEDNN_PRIMITIVE_CACHE_CAPACITY": str(capacity),
            "ONEDNN_VERBOSE": "profile_create",  # one line per kernel built
        }
        child = [sys.executable, __file__, "--child", name, "--profile", profile, "--recipes", *recipes]
        done = subprocess.run(child, env=env, capture_output=True, text=True, check=True)
    kernels = sum("create:cache_miss" in line for line in done.stdout.splitlines())
    result = next(line for line in reversed(done.stdout.splitlines()) if line.startswith("["))
    return json.loads(result), kernels


def ratio(after: dict[str, float], before: dict[str, float], key: str) -> str:
    return f"{after[key] / before[key]:.2f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--recipes", nargs="+", default=["nf4:attn:16", "int8:attn:16", "none:all:32"])
    parser.add_argument("--child", choices=sorted(CONTENDERS))
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_trials(args.profile, args.recipes, CONTENDERS[args.child][0])))
        return

    import torch

    from harness import machine

    print(f"CPU: {machine.describe()['cpu']}, avx512_bf16 {torch.cpu._is_avx512_bf16_supported()}")
    results = {name: contend(name, args.profile, args.recipes) for name in CONTENDERS}
    (before, before_kernels), (after, after_kernels) = results["before"], results["harness"]
    print(f"{'trial (quantization:targets:rank)':36} {'peak RSS MB':>21} {'training s':>17}  f1_micro")
    for i, recipe in enumerate(args.recipes):
        b, a = before[i], after[i]
        memory = f"{b['peak_memory_mb']:6.0f} -> {a['peak_memory_mb']:5.0f} ({ratio(a, b, 'peak_memory_mb')})"
        seconds = f"{b['train_seconds']:5.1f} -> {a['train_seconds']:5.1f} ({ratio(a, b, 'train_seconds')})"
        print(f"{i}  {recipe:33} {memory} {seconds}  {b['f1_micro']:.3f} / {a['f1_micro']:.3f}")
    worst_before = max(t["peak_memory_mb"] for t in before)
    worst_after = max(t["peak_memory_mb"] for t in after)
    print(
        f"highest peak: before {worst_before:.0f} MB, harness {worst_after:.0f} MB ({worst_after / worst_before:.2f}x)"
    )
    print(f"kernels built: before {before_kernels}, harness {after_kernels} ({after_kernels / before_kernels:.2f}x)")


if __name__ == "__main__":
    main()
