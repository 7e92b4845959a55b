"""A search's trials in the search's own process against each in a process of its own (harness/trial_process.py).

    .venv/bin/python bench/trial_process.py [--profile cpu] [--rounds 2] [--recipes nf4:mlp:32 none:attn:32]

One process plays the search: it first runs a trial of each recipe itself (what a search's process holds after
some trials), then, for each round and recipe, the same trial both ways, alternating which goes first:
- in-process: `harness.trial.run_trial` in this process, as searches ran their trials before;
- own process: `harness.trial_process.run_trial_in_own_process`, as they run them now.
Prints each trial's peak RSS, training speed, generation and wall seconds side by side, and the ratios.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import machine, tracking
from harness.config import load_task, resolve_trial_config
from harness.trial import run_trial
from harness.trial_process import run_trial_in_own_process

CONTENDERS = {"in-process": run_trial, "own process": run_trial_in_own_process}
FIGURES = ("peak_memory_mb", "train_tokens_per_second", "eval_seconds", "wall_seconds")


def one_trial(contender: str, task: Any, config: Any) -> dict[str, float]:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as work:
        metrics = CONTENDERS[contender](task, config, output_dir=Path(work), evaluate_at_steps=(2, 8)).metrics
    return {**{k: metrics[k] for k in FIGURES[:-1]}, "wall_seconds": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--recipes", nargs="+", default=["nf4:mlp:32", "none:attn:32"])
    args = parser.parse_args()
    tracking.configure()
    task = load_task("legal")
    configs = {}
    for recipe in args.recipes:
        quantization, targets, rank = recipe.split(":")
        overrides = {"quantization": quantization, "lora.target_modules": targets, "lora.r": int(rank)}
        configs[recipe] = resolve_trial_config(task, profile=args.profile, overrides=overrides)
    described = machine.describe()
    print(f"CPU: {described['cpu']}, avx512_bf16 {described['avx512_bf16']}, {described['cores']} cores;"
          f" profile {args.profile}; rounds {args.rounds}")  # fmt: skip
    for config in configs.values():  # the search's history: trials already run in this process
        one_trial("in-process", task, config)
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    for round_number in range(args.rounds):
        for recipe, config in configs.items():
            order = list(CONTENDERS) if round_number % 2 else list(reversed(CONTENDERS))
            for contender in order:
                figures = one_trial(contender, task, config)
                results.setdefault((recipe, contender), []).append(figures)
                print(f"round {round_number} {recipe:12s} {contender:12s} " + "  ".join(
                    f"{k} {v:.1f}" for k, v in figures.items()), flush=True)  # fmt: skip
    print(f"\n{'recipe':12s} {'figure':24s} {'in-process':>11s} {'own process':>11s} {'ratio':>6s}")
    for recipe in configs:
        for figure in FIGURES:
            before = statistics.mean(r[figure] for r in results[(recipe, "in-process")])
            after = statistics.mean(r[figure] for r in results[(recipe, "own process")])
            print(f"{recipe:12s} {figure:24s} {before:11.1f} {after:11.1f} {after / before:5.2f}x")


if __name__ == "__main__":
    main()
