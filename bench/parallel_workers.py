"""One worker against a local pool: the same study run by `harness search` and by `harness search --n-workers K`.

    .venv/bin/python bench/parallel_workers.py [--profile smoke] [--trials 6] [--workers 2]

Both are the real command, run one after the other from this script, each on a fresh study in its own temporary
mlruns (a journal file, the MLflow SQLite store), with pruning off so both run every trial to the end. Prints the
wall time of each, the trials per minute and the ratio. On a CPU machine the pool splits the cores: the gain is
what running trials side by side saves over one process using every core (start-up, evaluation and the parts of
training that do not use all cores), not K times.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HARNESS = str(Path(sys.executable).parent / "harness")


def run_search(task: str, *, profile: str, trials: int, workers: int) -> float:
    with tempfile.TemporaryDirectory() as directory:
        command = [HARNESS, "search", task, "--trials", str(trials), "--profile", profile, "--pruner", "none"]
        command += ["--quiet", "--no-register", "--n-workers", str(workers)]
        started = time.perf_counter()
        subprocess.run(
            command,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "HARNESS_MLRUNS": str(Path(directory) / "mlruns")},
        )
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="legal")
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    common = {"profile": args.profile, "trials": args.trials}
    one = run_search(args.task, workers=1, **common)
    pool = run_search(args.task, workers=args.workers, **common)
    print(f"task {args.task}, profile {args.profile}, {args.trials} trials, {os.cpu_count()} cores")
    for name, seconds in (("1 worker", one), (f"--n-workers {args.workers}", pool)):
        print(f"{name:16s} wall {seconds:5.0f} s  {args.trials / seconds * 60:5.1f} trials/min")
    print(f"speed-up of the pool: {one / pool:.2f}x")


if __name__ == "__main__":
    main()
