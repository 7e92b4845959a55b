"""glibc's mmap threshold for a trial: 2 MB (harness until 2026-12-03) against 32 MB (now), one process each.

    .venv/bin/python bench/heap_threshold.py [--task legal-ru] [--examples 600] [--steps 4]

Blocks at or over the threshold are mapped from the OS when allocated and unmapped when freed
(`memory.keep_the_heap_compact`): every step maps and zeroes them again, a page fault per 4 KB. Each contender is a
fresh process running the same trial (the task's registered legal-ru recipe: r 8, alpha 2 x r, all modules,
lr 4.6e-3, no quantization) for `--steps` steps on the refit's data, with only the threshold changed. Prints
seconds a step, the kernel's share of the CPU time, page faults and peak RSS of each, and the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

CONTENDERS = {"2 MB": 2 << 20, "32 MB": 32 << 20}
RECIPE = {
    "lora.r": 8,
    "lora.alpha_ratio": 2,
    "lora.target_modules": "all",
    "train.learning_rate": 0.0045707816,
    "quantization": "none",
}


def run_child(task_name: str, examples: int, steps: int, threshold: int) -> dict[str, float]:
    from harness import memory, tracking
    from harness.config import load_task, resolve_trial_config
    from harness.trial import run_trial

    memory.MMAP_THRESHOLD_BYTES = threshold  # read when the trial sets the heap up
    tracking.configure()  # the child's own store (HARNESS_MLRUNS)
    task = load_task(task_name)
    overrides = {**RECIPE, "budget.train_examples": examples, "budget.max_steps": steps}
    overrides |= {"budget.validation_examples": 1}
    config = resolve_trial_config(task, profile="cpu", overrides=overrides)
    with tempfile.TemporaryDirectory() as work:
        metrics = run_trial(task, config, output_dir=Path(work)).metrics
    return {"seconds_per_step": metrics["train_seconds"] / steps, "peak_memory_mb": metrics["peak_memory_mb"]}


def contend(threshold: int, args: argparse.Namespace) -> dict[str, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.TemporaryDirectory() as store:
        child = [sys.executable, __file__, "--child", str(threshold), "--task", args.task]
        child += ["--examples", str(args.examples), "--steps", str(args.steps)]
        done = subprocess.run(
            child, env={**os.environ, "HARNESS_MLRUNS": store}, capture_output=True, text=True, check=True
        )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    user, system = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
    figures["kernel_share"] = system / (user + system)
    figures["page_faults"] = after.ru_minflt - before.ru_minflt
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="legal-ru")
    parser.add_argument("--examples", type=int, default=600)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--child", type=int)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_child(args.task, args.examples, args.steps, args.child)))
        return

    import torch

    from harness import machine

    described = machine.describe()
    print(
        f"CPU: {described['cpu']} {described['cpu_generation']}, {described['cores']} cores,"
        f" avx512_bf16 {torch.cpu._is_avx512_bf16_supported()}"
    )
    results = {name: contend(threshold, args) for name, threshold in CONTENDERS.items()}
    for name, r in results.items():
        print(
            f"threshold {name:>5}: {r['seconds_per_step']:5.1f} s a step, kernel {r['kernel_share']:.0%} of the CPU"
            f" time, {r['page_faults'] / 1e6:5.1f} M page faults, peak {r['peak_memory_mb']:.0f} MB"
        )
    old, new = results["2 MB"], results["32 MB"]
    speed = old["seconds_per_step"] / new["seconds_per_step"]
    faults, peak = old["page_faults"] / new["page_faults"], new["peak_memory_mb"] / old["peak_memory_mb"]
    print(f"32 MB against 2 MB: steps {speed:.2f}x faster, page faults {faults:.0f}x fewer, peak {peak:.2f}x")


if __name__ == "__main__":
    main()
