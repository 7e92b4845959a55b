"""Search strategies side by side: TPE with median pruning against random search without pruning.

    .venv/bin/python bench/search_strategies.py [--profile smoke] [--trials 6] [--seed 0]

Both run the same number of trials with the same seed, each in its own fresh study and MLflow store under a
temporary directory, in this one process. Prints best value, trials pruned and wall time for each, and the ratios.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from harness import tracking
from harness.config import load_task
from harness.search import SearchOptions, run_search


def run_one(task_name: str, *, profile: str, trials: int, seed: int, sampler: str, pruner: str) -> dict:
    with tempfile.TemporaryDirectory() as directory:
        os.environ["HARNESS_MLRUNS"] = directory
        tracking.configure()
        started = time.perf_counter()
        summary = run_search(
            load_task(task_name),
            SearchOptions(trials=trials, profile=profile, sampler=sampler, pruner=pruner, seed=seed),
        )
        seconds = time.perf_counter() - started
    pruned = sum(row["state"] == "PRUNED" for row in summary.rows)
    best = summary.best[summary.objective] if summary.best else float("nan")
    return {"best": best, "pruned": pruned, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="legal")
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    common = {"profile": args.profile, "trials": args.trials, "seed": args.seed}
    tpe = run_one(args.task, sampler="tpe", pruner="median", **common)
    random = run_one(args.task, sampler="random", pruner="none", **common)
    print(f"task {args.task}, profile {args.profile}, {args.trials} trials, seed {args.seed}")
    for name, result in (("TPE + median pruning", tpe), ("random, no pruning", random)):
        print(f"{name:22s} best {result['best']:.4f}  pruned {result['pruned']}  wall {result['seconds']:.0f} s")
    print(f"wall time ratio random / TPE: {random['seconds'] / tpe['seconds']:.2f}x")


if __name__ == "__main__":
    main()
