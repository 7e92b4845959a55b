"""What a search is asked to do: `SearchOptions`, the one source of `harness search`'s defaults.

The CLI's options take their defaults from here, and a local worker pool builds each worker's command line from
the same object (`worker_arguments`), so an option cannot be forgotten or defaulted differently on the way.
Importing this module imports no Optuna: the CLI reads these defaults before it knows it will search.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.errors import HarnessError

SAMPLERS = ("tpe", "random", "gp")
PRUNERS = ("halving", "hyperband", "median", "none")


@dataclass(frozen=True)
class SearchOptions:
    trials: int = 30  # the finished (complete or pruned) trials the study should have; running again resumes
    profile: str = "cpu"
    model: str | None = None  # a model spec overriding the profile's base model
    study_name: str | None = None  # default <task>-<profile>
    sampler: str = "tpe"  # tpe (multivariate, seeded) | random | gp
    pruner: str = "halving"  # halving (successive halving over training steps) | hyperband | median | none
    seed: int = 0
    timeout_seconds: float | None = None  # stop starting new trials after this many seconds
    max_memory_mb: float | None = None  # refuse trials whose estimated peak exceeds this
    storage: str | None = None  # an Optuna storage URL or a journal file; default <mlruns>/optuna-journal.log
    worker_index: int | None = None  # this worker's number in log lines (--n-workers, a Kubernetes or Slurm index)
    max_failures: int = 3  # this process stops after so many of its trials failed in a row
    register: bool = True  # register the best trial once the study has its trials

    def __post_init__(self) -> None:
        # Refused here, before a study or an MLflow run exists: a request that means nothing creates nothing.
        if self.trials < 1:
            raise HarnessError(f"--trials must be at least 1 (finished trials the study wants), got {self.trials}")
        if self.max_failures < 1:
            raise HarnessError(f"--max-failures must be at least 1, got {self.max_failures}")
        if self.timeout_seconds is not None and self.timeout_seconds <= 0:
            raise HarnessError(f"--timeout must be a positive number of seconds, got {self.timeout_seconds:g}")
        if self.max_memory_mb is not None and self.max_memory_mb <= 0:
            raise HarnessError(f"--max-memory must be a positive size such as 24G, got {self.max_memory_mb:g} MB")
        if self.sampler not in SAMPLERS:
            raise HarnessError(f"unknown sampler {self.sampler!r}; expected {', '.join(SAMPLERS)}")
        if self.pruner not in PRUNERS:
            raise HarnessError(f"unknown pruner {self.pruner!r}; expected {', '.join(PRUNERS)}")

    def study_name_for(self, task_name: str) -> str:
        return self.study_name or f"{task_name}-{self.profile}"

    def worker_arguments(self, task: str) -> list[str]:
        """`harness search` arguments that make a worker run this same search (storage and tracking URI excepted:
        they travel in the environment, since `ps` shows command lines and a URL may hold a password)."""
        arguments = ["search", task, "--trials", str(self.trials), "--profile", self.profile]
        arguments += ["--study", self.study_name] if self.study_name else []
        arguments += ["--sampler", self.sampler, "--pruner", self.pruner]
        arguments += ["--seed", str(self.seed), "--max-failures", str(self.max_failures)]
        arguments += ["--model", self.model] if self.model else []
        arguments += ["--timeout", repr(self.timeout_seconds)] if self.timeout_seconds is not None else []
        arguments += ["--max-memory", f"{self.max_memory_mb!r}M"] if self.max_memory_mb is not None else []
        arguments += [] if self.register else ["--no-register"]
        return arguments


def check_storage_for_workers(storage: str | None, n_workers: int) -> None:
    """`--n-workers K` needs at least one worker, and a storage several processes can write (not SQLite)."""
    if n_workers < 1:
        raise HarnessError(f"--n-workers must be at least 1, got {n_workers}")
    if n_workers > 1 and storage and storage.startswith("sqlite:"):
        raise HarnessError(
            f"--n-workers {n_workers} needs a storage several processes can write: {storage} is SQLite."
            " Pass --storage postgresql://... or a journal file (--storage mlruns/optuna-journal.log)."
        )
