"""Several workers of one study on one machine: `harness search --n-workers K` starts K processes.

Each worker is an ordinary `harness search` process on the same study: Optuna's storage is all they share, exactly
as for workers on other machines. On a GPU machine each worker gets its own device (`CUDA_VISIBLE_DEVICES`, round
robin); on a CPU machine they split the cores (pinned, with as many threads as cores). A worker killed mid-trial
leaves its trial to the others: the search fails it and queues it again (see `harness.search`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from harness.errors import HarnessError

if TYPE_CHECKING:
    from harness.config import TaskConfig
    from harness.search.options import SearchOptions
    from harness.search.study import SearchSummary

# Schedulers that start many copies of one command number them; a worker's index seeds its sampler.
INDEX_VARIABLES = ("HARNESS_WORKER_INDEX", "JOB_COMPLETION_INDEX", "SLURM_ARRAY_TASK_ID", "SLURM_PROCID")


@dataclass(frozen=True)
class WorkerSlot:
    """What one local worker gets: its index, its environment and (on a CPU machine) its cores."""

    index: int
    environment: dict[str, str]
    cpus: frozenset[int] = field(default_factory=frozenset)


@dataclass(frozen=True)
class WorkerExit:
    index: int
    pid: int
    returncode: int

    def describe(self) -> str:
        if self.returncode < 0:
            return f"worker {self.index} (pid {self.pid}) was killed by {signal.Signals(-self.returncode).name}"
        return f"worker {self.index} (pid {self.pid}) exited with code {self.returncode}"


@dataclass(frozen=True)
class PoolResult:
    """How a local pool's search ended: each worker's exit, the study's summary and its finished trials."""

    exits: list[WorkerExit]
    summary: SearchSummary
    finished: int

    @property
    def failed(self) -> list[str]:
        """The workers that exited with an error (not those killed: their trials are retried)."""
        return [e.describe() for e in self.exits if e.returncode > 0]


def run_search_pool(
    task_argument: str,
    task: TaskConfig,
    options: SearchOptions,
    count: int,
    *,
    tracking_uri: str,
    on_start: Callable[[WorkerSlot, str], None],
    on_exit: Callable[[WorkerExit], None],
) -> PoolResult:
    """`harness search --n-workers K`: K workers running `options` on this machine's GPUs or cores, then the
    study settled (trials of killed workers failed and queued again, its run ended) and summarised.
    `on_start(slot, where)` is told where each worker runs; `on_exit` each worker's end."""
    from harness import tracking
    from harness.search.study import close_study, study_summary

    arguments = [*options.worker_arguments(task_argument), "--quiet", "--pool-worker"]
    # Storage and tracking URI through the environment: `ps` shows command lines, and they may hold a password.
    shared = {"HARNESS_STORAGE": str(options.storage), "HARNESS_TRACKING_URI": tracking_uri}
    tracking.experiment_for(task.task.name)  # a new local store is created once here, not raced by the workers
    from harness import machine  # torch: only once workers are started

    gpus = machine.visible_gpus()
    per_worker = task.profiles[options.profile].gpus_per_trial if options.profile in task.profiles else 1
    slots = plan_workers(count, gpus=gpus, cpus=os.sched_getaffinity(0), gpus_per_worker=per_worker)
    for slot in slots:
        on_start(slot, f"GPU {slot.environment['CUDA_VISIBLE_DEVICES']}" if gpus else f"cores {sorted(slot.cpus)}")
    exits = run_workers(arguments, slots, environment=shared, on_exit=on_exit)
    # Workers killed last leave their trials RUNNING and the study's run open: settle both.
    close_study(task, options, dead_pids={e.pid for e in exits if e.returncode < 0})
    summary = study_summary(task, options)
    finished = len([r for r in summary.rows if r["state"] in ("COMPLETE", "PRUNED")])
    return PoolResult(exits, summary, finished)


def worker_index_from_environment() -> int | None:
    """The index a scheduler gave this process (Kubernetes indexed Job, Slurm array), or HARNESS_WORKER_INDEX."""
    for name in INDEX_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return None


def plan_workers(count: int, *, gpus: list[str], cpus: set[int], gpus_per_worker: int = 1) -> list[WorkerSlot]:
    """One slot per worker: `gpus_per_worker` GPUs each (a trial splits its model over them; round robin when there
    are more workers than such groups); without GPUs, the cores in contiguous shares (shared round robin when there
    are more workers than cores)."""
    if count < 1:
        raise ValueError(f"--n-workers must be at least 1, got {count}")
    if gpus:
        groups = [gpus[i : i + gpus_per_worker] for i in range(0, len(gpus) - gpus_per_worker + 1, gpus_per_worker)]
        if not groups:
            raise HarnessError(
                f"each worker's trials split their model over {gpus_per_worker} GPUs (the profile's gpus_per_trial)"
                f" and this machine shows {len(gpus)}"
            )
        return [
            WorkerSlot(i, {"CUDA_VISIBLE_DEVICES": ",".join(groups[i % len(groups)]), "HARNESS_WORKER_INDEX": str(i)})
            for i in range(count)
        ]
    cores = sorted(cpus)
    if count >= len(cores):
        shares = [[cores[i % len(cores)]] for i in range(count)]
    else:
        size, extra = divmod(len(cores), count)
        shares, start = [], 0
        for i in range(count):
            end = start + size + (1 if i < extra else 0)
            shares.append(cores[start:end])
            start = end
    return [
        WorkerSlot(
            i,
            {
                "CUDA_VISIBLE_DEVICES": "",
                "OMP_NUM_THREADS": str(len(share)),
                "MKL_NUM_THREADS": str(len(share)),
                "HARNESS_WORKER_INDEX": str(i),
            },
            frozenset(share),
        )
        for i, share in enumerate(shares)
    ]


def run_workers(
    arguments: list[str],
    slots: list[WorkerSlot],
    *,
    environment: dict[str, str],
    on_exit: Callable[[WorkerExit], None],
) -> list[WorkerExit]:
    """Run `harness <arguments> --worker-index I` once per slot and wait for all of them. Ctrl-C is passed on to
    every worker once (each records its stop); the pool then waits for them and re-raises."""
    processes = {}
    for slot in slots:
        command = [sys.executable, "-m", "harness", *arguments, "--worker-index", str(slot.index)]
        processes[slot.index] = subprocess.Popen(
            command,
            env={**os.environ, **environment, **slot.environment},
            preexec_fn=(lambda cpus=slot.cpus: os.sched_setaffinity(0, cpus)) if slot.cpus else None,
            # Sessions of their own: the terminal's Ctrl-C reaches the pool only, which passes it on once (a
            # second SIGINT would cut short the worker's own clean-up).
            start_new_session=True,
        )
    exits: list[WorkerExit] = []
    try:
        while processes:
            # Reaped promptly: until then a dead worker looks alive to the others, which wait for its trial.
            for index, process in list(processes.items()):
                if process.poll() is not None:
                    exits.append(WorkerExit(index, process.pid, process.returncode))
                    on_exit(exits[-1])
                    del processes[index]
            time.sleep(0.2)
    except KeyboardInterrupt:
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process in processes.values():
            process.wait()
        raise
    return exits
