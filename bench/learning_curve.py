"""The learning curve of one recipe on the real model: stored-test-set quality against the number of training
examples, with the training time each point costs: how the refit's size is chosen, and what a goal the model misses
would take.

    .venv/bin/python bench/learning_curve.py --sizes 200 400 [--profile cpu] [--eval-set test-v1]
        [--set lora.r=8 --set quantization=nf4 ...] [--out results/learning-curve-cpu.json]

Each point is a fresh refit of the recipe (the task's seed recipe with the `--set` overrides, at the profile's
refit budget with its training examples cut to the size; one epoch, so the learning-rate schedule fits each size),
tracked in a temporary MLflow store, then its adapter, folded into the base model as registration merges it,
scores the eval set by greedy generation. Points already in `--out` (same recipe) are kept, so a curve can be
extended a size at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from harness import tracking
from harness.config import load_task, parse_set_options, resolve_trial_config
from harness.machine import describe as machine_description
from harness.trial import evaluate_model, run_trial

SHOWN = ("f1_micro", "f1_claim_amount", "acc_initiator", "exact_match", "json_valid_rate")


def refit_point(task, *, profile: str, overrides: dict, size: int, eval_set: str) -> dict:
    config = resolve_trial_config(
        task, profile=profile, overrides={**overrides, "budget.train_examples": size, "budget.validation_examples": 8},
        refit=True,
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as directory:
        os.environ["HARNESS_MLRUNS"] = directory
        tracking.configure()
        started = time.perf_counter()
        trial = run_trial(task, config, output_dir=Path(directory) / "run")
        wall = time.perf_counter() - started
        scores, generated = evaluate_model(
            task, config.model, adapter=trial.adapter_dir, quantization=config.recipe.quantization,
            split=eval_set, max_new_tokens=config.budget.max_new_tokens,
        )  # fmt: skip
    return {
        "train_examples": size,
        "train_steps": trial.metrics["train_steps"],
        "train_seconds": round(trial.metrics["train_seconds"], 1),
        "refit_wall_seconds": round(wall, 1),
        "seconds_per_step": round(trial.metrics["train_seconds"] / trial.metrics["train_steps"], 2),
        "peak_memory_mb": round(trial.metrics["peak_memory_mb"]),
        "eval_seconds": round(generated.seconds, 1),
        eval_set: scores.metrics,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="legal")
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--sizes", type=int, nargs="+", required=True)
    parser.add_argument("--eval-set", default="test-v1")
    parser.add_argument("--set", dest="set_", action="append", default=[], help="recipe override, key=value")
    parser.add_argument("--out", type=Path, default=None, help="write (and extend) the curve as JSON here")
    args = parser.parse_args()

    task = load_task(args.task)
    overrides = parse_set_options(args.set_)
    recipe = resolve_trial_config(task, profile=args.profile, overrides=overrides, refit=True).recipe.model_dump()
    previous = json.loads(args.out.read_text()) if args.out and args.out.exists() else None
    points = previous["points"] if previous and previous["recipe"] == recipe else []
    for size in args.sizes:
        point = refit_point(task, profile=args.profile, overrides=overrides, size=size, eval_set=args.eval_set)
        points = sorted([p for p in points if p["train_examples"] != size] + [point], key=lambda p: p["train_examples"])
        metrics = point[args.eval_set]
        print(
            f"{size} examples: {point['train_steps']} steps in {point['train_seconds']:.0f} s"
            f" ({point['seconds_per_step']:.2f} s a step), peak {point['peak_memory_mb'] / 1024:.1f} GB;"
            f" {args.eval_set} " + ", ".join(f"{name} {metrics[name]:.3f}" for name in SHOWN),
            flush=True,
        )
        if args.out:
            figures = {"task": args.task, "profile": args.profile, "eval_set": args.eval_set, "recipe": recipe,
                       "machine": machine_description(), "points": points}  # fmt: skip
            args.out.write_text(json.dumps(figures, indent=2) + "\n")
    machine = machine_description()
    print(f"{machine['cpu']}, {machine['cores']} cores, avx512_bf16 {machine['avx512_bf16']}, torch {machine['torch']}")


if __name__ == "__main__":
    main()
