"""One trial as Optuna sees it: take the trial, sample a recipe, run `harness.trial.run_trial` in a process of its
own (`harness.trial_process`) with a reporter that turns the validation loss at each rung into Optuna's
intermediate values (and prunes), return the objective.
Also how a trial's failure is told, and the count of failures in a row that stops a search."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from harness import tracking
from harness.config import TaskConfig, TrialConfig, resolve_trial_config
from harness.errors import TrialStopped
from harness.search import coordination, space
from harness.search.coordination import FINISHED_STATES, MLFLOW_RUN_ATTR, SURPLUS_ATTR
from harness.search.options import SearchOptions
from harness.trial_process import TrialFailed, run_trial_in_own_process

ProgressCallback = Callable[[int, dict[str, Any], int, int], None]  # trial, params, step, total steps


def objective(
    task: TaskConfig,
    base: TrialConfig,
    options: SearchOptions,
    parent_run_id: str,
    rungs: tuple[int, ...],
    on_step: ProgressCallback,
) -> Callable[[optuna.Trial], float]:
    """The function Optuna calls for each trial; `on_step(trial, params, step, total_steps)` follows it."""
    metric = task.search.objective.metric
    maximize = task.search.objective.direction == "maximize"

    def run(trial: optuna.Trial) -> float:
        coordination.mark_trial_taken(trial)
        if coordination.is_surplus(trial.study, trial.number, options.trials):
            trial.set_user_attr(SURPLUS_ATTR, "another worker started the study's last missing trial first")
            raise coordination.SurplusTrial(
                f"trial {trial.number} is not needed: the study has its {options.trials} trials"
            )
        trial.study.sampler = space.sampler(options, seed=space.trial_seed(options.seed, trial.number))
        params = space.suggest(trial, task)
        on_step(trial.number, params, 0, 0)
        config = resolve_trial_config(task, profile=base.profile, model=base.model, overrides=params)
        reporter = PruningReporter(trial, maximize, lambda step, total: on_step(trial.number, params, step, total))
        tags = {
            "harness.study": trial.study.study_name,
            "harness.trial_number": str(trial.number),
            "harness.worker": coordination.worker_id(),
        }
        if trial.user_attrs.get("harness.seed_recipe"):
            tags["harness.seed_recipe"] = "true"

        def remember_run(run_id: str) -> None:
            # Cross-reference both ways as soon as the run exists: a worker killed mid-trial leaves it findable.
            trial.set_user_attr(MLFLOW_RUN_ATTR, run_id)

        try:
            # The adapter is kept as the run's artifact; the local copy goes with the temporary directory.
            with tempfile.TemporaryDirectory(prefix="harness-trial-") as work:
                result = run_trial_in_own_process(
                    task,
                    config,
                    output_dir=Path(work),
                    reporter=reporter,
                    evaluate_at_steps=rungs,
                    max_memory_mb=options.max_memory_mb,
                    parent_run_id=parent_run_id,
                    run_name=f"trial-{trial.number}",
                    tags=tags,
                    on_run_started=remember_run,
                )
        except TrialStopped:
            raise optuna.TrialPruned() from None
        except Exception as error:
            reason = str(error) if isinstance(error, TrialFailed) else _reason(error)
            trial.set_user_attr("harness.error", reason[:1000])
            raise
        trial.set_user_attr("metrics", {k: v for k, v in result.metrics.items() if isinstance(v, int | float)})
        return float(result.metrics[metric])

    return run


def _reason(error: Exception) -> str:
    return tracking.describe_failure(error) or f"{type(error).__name__}: {error}"


class PruningReporter:
    """Turns the trial's validation loss into Optuna intermediate values and asks the pruner."""

    def __init__(self, trial: optuna.Trial, maximize: bool, on_step: Callable[[int, int], None]):
        self.trial = trial
        self.maximize = maximize
        self.on_step = on_step
        self.total_steps = 0
        self.prune = False

    def on_train_begin(self, total_steps: int) -> None:
        self.total_steps = total_steps
        self.on_step(0, total_steps)

    def on_log(self, step: int, metrics: dict[str, float]) -> None:
        self.on_step(step, self.total_steps)

    def on_evaluate(self, step: int, validation_loss: float) -> None:
        # Pruners compare intermediate values in the study's direction: lower loss is better, so a maximised
        # objective gets the negated loss.
        self.trial.report(-validation_loss if self.maximize else validation_loss, step)
        self.prune = self.trial.should_prune()

    def should_stop(self, step: int) -> bool:
        return self.prune

    def on_train_end(self) -> None:
        pass


def failure(trial: FrozenTrial) -> str | None:
    """What a failed trial failed with, as the search reports it; None for any other trial (a surplus trial, one
    another worker had already run, is not a failure)."""
    if trial.state != TrialState.FAIL or SURPLUS_ATTR in trial.user_attrs:
        return None
    return f"trial {trial.number}: {trial.user_attrs.get('harness.error', 'interrupted')}"


class FailuresInARow:
    """Counts this process's trials that failed one after another: a search whose every trial fails the same way
    (a budget that cannot fit, a tracking store that is down, a model that cannot load) stops instead of looping."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.reasons: list[str] = []

    @property
    def stopped(self) -> bool:
        return len(self.reasons) >= self.limit

    def record(self, trial: FrozenTrial) -> bool:
        """Whether the search must stop after this trial."""
        if reason := failure(trial):
            self.reasons.append(reason)
        elif trial.state in FINISHED_STATES:
            self.reasons.clear()
        return self.stopped
