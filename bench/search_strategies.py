"""Search strategies side by side: the default (TPE + successive halving over training steps) against random search
without pruning, on the real model, over several seeds.

    .venv/bin/python bench/search_strategies.py [--profile cpu] [--trials 12] [--seeds 0 1 2]
        [--train-examples 80] [--validation-examples 32] [--out bench/search_strategies.json]
        [--random-from results/search-strategies-12trials-seed*.json]

For each seed both contenders run the same number of trials (trial 0 the seed recipe in both) in fresh studies
and MLflow stores under a temporary directory, in this one process, at the profile's budget with its training
examples cut to `--train-examples` and its validation examples to `--validation-examples` (random search
without pruning generates for every trial: at the full budget 3 seeds of it take hours on 2 cores).
Compute is the wall time of the trials (training, pruning evaluations, generation and scoring), the zero-shot
baseline left out (both run it once). For each seed it prints the best validation objective of each contender,
and the share of random search's compute the default needed to reach random search's best (its anytime curve:
best so far against compute so far); a figure of at most 0.5 is what the default promises.

`--random-from` takes random search's side of each seed from earlier runs of this bench (same task, budget,
trials and machine) and runs only the default: random search without pruning does not depend on the pruner or
the sampler's settings, so a change to the default is measured in a third of the time. The output says so.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import yaml

from harness import tracking
from harness.config import SEARCH_SPACES_DIR, load_task
from harness.machine import describe as machine_description
from harness.search.options import SearchOptions
from harness.search.run import run_search


def task_with_budget(task_name: str, profile: str, budget: dict[str, int], directory: Path):
    """The task's YAML with the profile's budget values replaced, in `directory` (eval sets where they are)."""
    source = SEARCH_SPACES_DIR / f"{task_name}.yaml"
    data = yaml.safe_load(source.read_text())
    data["profiles"][profile]["budget"].update(budget)
    for eval_set in data["data"]["eval_sets"]:
        eval_set["path"] = str((source.parent / eval_set["path"]).resolve())
    path = directory / f"{task_name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_task(str(path))


def run_study(task, *, profile: str, trials: int, seed: int, sampler: str, pruner: str) -> dict:
    with tempfile.TemporaryDirectory() as directory:
        os.environ["HARNESS_MLRUNS"] = directory
        tracking.configure()
        started = time.perf_counter()
        summary = run_search(
            task, SearchOptions(trials=trials, profile=profile, sampler=sampler, pruner=pruner, seed=seed)
        )
        wall = time.perf_counter() - started
    objective = summary.objective
    curve, compute, best = [], 0.0, None
    # One worker runs a study's trials one after another, so trial numbers are their order in time.
    for row in sorted(summary.rows, key=lambda r: r["trial"]):
        compute += row["seconds"] or 0.0
        if row["state"] == "COMPLETE":
            best = row[objective] if best is None else max(best, row[objective])
        curve.append({"trial": row["trial"], "state": row["state"], "value": row[objective],
                      "compute_seconds": round(compute, 1), "best_so_far": best, "steps": row["steps"],
                      "seconds": row["seconds"],
                      # the recipe, and what the pruner saw (random search without pruning computes no rung losses)
                      **{k: v for k, v in row.items() if k.startswith(("param.", "rung_loss."))}})  # fmt: skip
    return {
        "best": best,
        "compute_seconds": round(compute, 1),
        "wall_seconds": round(wall, 1),
        "pruned": sum(r["state"] == "PRUNED" for r in summary.rows),
        "curve": curve,
    }


def compute_to_reach(curve: list[dict], target: float) -> float | None:
    """Compute spent when the best so far first reached `target`; None if it never did."""
    for point in curve:
        if point["best_so_far"] is not None and point["best_so_far"] >= target:
            return point["compute_seconds"]
    return None


def earlier_random(paths: list[Path], args: argparse.Namespace, machine: dict) -> dict[int, tuple[Path, dict]]:
    """Random search's result per seed from earlier runs of this bench, refused unless they ran what this run would."""
    found: dict[int, tuple[Path, dict]] = {}
    for path in paths:
        earlier = json.loads(path.read_text())
        keys = ("task", "profile", "trials", "train_examples", "validation_examples")
        differ = [k for k in keys if earlier["args"].get(k) != getattr(args, k)]
        differ += [f"machine.{k}" for k in ("cpu", "cores", "avx512_bf16") if earlier["machine"].get(k) != machine[k]]
        if differ:
            raise SystemExit(f"{path}: its run differs from this one in {', '.join(differ)}; re-run random search")
        found |= {r["seed"]: (path, r["random"]) for r in earlier["seeds"]}
    if missing := sorted(set(args.seeds) - set(found)):
        raise SystemExit(f"{', '.join(map(str, paths))}: no random search for seed(s) {missing}")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="legal")
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--train-examples", type=int, default=80)
    parser.add_argument("--validation-examples", type=int, default=32)
    parser.add_argument("--out", type=Path, default=None, help="also write every figure as JSON here")
    parser.add_argument(
        "--random-from", type=Path, nargs="+", default=[], help="earlier runs' JSON to take random from"
    )
    args = parser.parse_args()
    machine = machine_description()
    reused = earlier_random(args.random_from, args, machine) if args.random_from else {}

    results = []
    with tempfile.TemporaryDirectory() as directory:
        budget = {"train_examples": args.train_examples, "validation_examples": args.validation_examples}
        task = task_with_budget(args.task, args.profile, budget, Path(directory))
        for seed in args.seeds:
            common = {"profile": args.profile, "trials": args.trials, "seed": seed}
            default = run_study(task, sampler="tpe", pruner="halving", **common)
            if seed in reused:
                source, random = reused[seed]
            else:
                source, random = None, run_study(task, sampler="random", pruner="none", **common)
            reached = compute_to_reach(default["curve"], random["best"])
            share = None if reached is None else reached / random["compute_seconds"]
            results.append({"seed": seed, "default": default, "random": random, "share_to_reach": share,
                            **({"random_from": str(source)} if source else {})})  # fmt: skip
            print(
                f"seed {seed}: default best {default['best']:.4f} in {default['compute_seconds']:.0f} s"
                f" ({default['pruned']} of {args.trials} pruned); random best {random['best']:.4f} in"
                f" {random['compute_seconds']:.0f} s{f' (from {source})' if source else ''};"
                f" default reached random's best at"
                + (f" {share:.2f} of random's compute" if share is not None else " no point (never reached it)"),
                flush=True,
            )
    shares = [r["share_to_reach"] for r in results]
    print(f"task {args.task}, profile {args.profile} cut to {args.train_examples} training and"
          f" {args.validation_examples} validation examples,"
          f" {args.trials} trials a study; {machine['cpu']}, {machine['cores']} cores,"
          f" avx512_bf16 {machine['avx512_bf16']}")  # fmt: skip
    total_default = sum(r["default"]["compute_seconds"] for r in results)
    total_random = sum(r["random"]["compute_seconds"] for r in results)
    print(f"compute, all seeds: default {total_default:.0f} s, random {total_random:.0f} s,"
          f" ratio {total_default / total_random:.2f}")  # fmt: skip
    reached_shares = [s for s in shares if s is not None]
    print(
        f"default reached random search's best in {len(reached_shares)} of {len(shares)} seeds, at"
        f" {', '.join(f'{s:.2f}' for s in reached_shares) or '-'} of its compute"
        + (f" (worst {max(reached_shares):.2f})" if reached_shares else "")
    )
    if args.out:
        args.out.write_text(json.dumps({"machine": machine, "args": vars(args) | {"out": str(args.out),
                                        "random_from": [str(p) for p in args.random_from]},
                                        "seeds": results}, indent=2) + "\n")  # fmt: skip


if __name__ == "__main__":
    main()
