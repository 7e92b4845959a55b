"""`run_search`: run (or resume, or join) a study until it has its trials, and report progress on the way.

The loop: open the study (created, resumed or joined), find or create its MLflow parent run, print the estimate,
evaluate the zero-shot baseline once per study, then let Optuna run trials (`objective.py`) while the study lacks
finished trials no other worker is running (`coordination.py`); at the end, rank the trials, log the leaderboard
and the plots, and end the study's run if this was the last worker.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from harness import estimates, model_loading, tracking
from harness.config import TaskConfig, TrialConfig, for_profile, resolve_trial_config
from harness.errors import HarnessError, without_password
from harness.memory import read_model_shape
from harness.prompts import compact_json, prompt_turns
from harness.search import coordination, plots
from harness.search.coordination import FINISHED_STATES, count_finished, running_trials
from harness.search.objective import FailuresInARow, failure, objective
from harness.search.options import SearchOptions
from harness.search.storage import default_storage
from harness.search.study import SearchSummary, open_study, study_run, summarise
from harness.task_data import load_split
from harness.trial import GENERATION_BATCH_SIZE, evaluate_model


@dataclass
class SearchProgress:
    """What the live view shows; updated by the search as trials run."""

    total: int
    finished: int = 0
    current_trial: int | None = None
    current_params: dict[str, Any] = field(default_factory=dict)
    current_step: int = 0
    current_total_steps: int = 0
    best_value: float | None = None
    best_trial: int | None = None
    last_failure: str | None = None  # "trial N: error", shown instead of Optuna's logged traceback
    started: float = field(default_factory=time.monotonic)
    estimate: str | None = None  # the search's estimate before it started, on this machine
    seconds_left: float | None = None  # the estimate of what is left, corrected by the trials finished so far


def run_search(
    task: TaskConfig, options: SearchOptions, *, on_progress: Callable[[SearchProgress], None] | None = None
) -> SearchSummary:
    """Run (or resume, or join) a study until it has `options.trials` finished trials; returns the ranked results."""
    task = for_profile(task, options.profile)  # the space and seed recipe the profile allows
    study_name = options.study_name_for(task.task.name)
    storage_url = options.storage or default_storage()
    base_config = resolve_trial_config(task, profile=options.profile, model=options.model)
    total_steps = base_config.budget.total_steps(len(load_split(task, "train")))
    study, storage, created = open_study(task, options, storage_url, base_config, total_steps)
    coordination.fail_dead_workers(study, storage)  # a resumed study's trials whose worker died are retried first
    parent_run_id = study_run(
        study,
        created,
        task,
        storage_url,
        tags={
            "harness.study": study_name,
            "harness.storage": without_password(storage_url),
            "harness.sampler": options.sampler,
            "harness.pruner": options.pruner,
            "harness.profile": options.profile,
            "harness.model": base_config.model,
        },
    )
    progress = SearchProgress(total=options.trials, finished=count_finished(study))
    _update_best(study, progress)
    forecast = forecast_search(task, options, base_config, total_steps, finished=progress.finished)
    progress.estimate, progress.seconds_left = forecast.estimate.describe(), forecast.estimate.total_seconds
    tracking.log_to_run(parent_run_id, tags={"harness.estimate": progress.estimate})

    def notify() -> None:
        if on_progress:
            on_progress(progress)

    def on_step(trial: int, params: dict[str, Any], step: int, total: int) -> None:
        progress.current_trial, progress.current_params, progress.current_step = trial, params, step
        progress.current_total_steps = total or total_steps  # 0 until the trainer says: the budget's steps
        notify()

    notify()
    deadline = None if options.timeout_seconds is None else time.monotonic() + options.timeout_seconds
    status = "FAILED"
    failures = FailuresInARow(options.max_failures)
    try:
        # One zero-shot evaluation per study, by whichever worker claims it first.
        if coordination.claim(storage_url, study, "zero-shot")[0]:
            _zero_shot_baseline(task, base_config, parent_run_id)
        rungs = task.search.pruning.rung_steps(total_steps) if options.pruner != "none" else ()

        def after_trial(study: optuna.Study, trial: FrozenTrial) -> None:
            _after_trial(study, trial, parent_run_id, progress, forecast, total_steps)
            notify()
            if failures.record(trial) or not coordination.wait_for_room(study, storage, options.trials, deadline):
                study.stop()

        if coordination.wait_for_room(study, storage, options.trials, deadline):
            study.optimize(
                objective(task, base_config, options, parent_run_id, rungs, on_step),
                callbacks=[after_trial],
                timeout=options.timeout_seconds,
                catch=(Exception,),
                gc_after_trial=True,
            )
        status = "FAILED" if failures.stopped else "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        coordination.fail_dead_workers(study, storage)
        summary = summarise(study, task, storage_url, parent_run_id)
        plots.log_study_plots(study, parent_run_id)
        # The study's run stays RUNNING while other workers still run trials; the last one to stop ends it.
        if not running_trials(study):
            tracking.finish_study_run(parent_run_id, status)
    if failures.stopped:
        finished = len([row for row in summary.rows if row["state"] in ("COMPLETE", "PRUNED")])
        raise HarnessError(
            f"the search stopped: {len(failures.reasons)} trials in a row failed, the last with {failures.reasons[-1]}."
            f" The study's {finished} finished trials are kept; fix the cause and run the same command to resume"
            " (--max-failures sets how many failures in a row stop a search)"
        )
    return summary


def forecast_search(
    task: TaskConfig,
    options: SearchOptions,
    base: TrialConfig,
    total_steps: int,
    *,
    finished: int = 0,
) -> estimates.Forecast:
    """The estimate of a search on this machine: the trials still missing (pruning as the options set it), the
    zero-shot baseline if the study has none yet, the refit and the registration's test evaluation."""
    model_ref = model_loading.resolve_model(base.model)
    tokenizer = model_loading.load_tokenizer(model_ref)
    sample = load_split(task, "train")[:64]
    workload = estimates.Workload(
        estimates.measure_machine(),
        read_model_shape(model_ref.path),
        estimates.mean_token_counts(
            tokenizer, [prompt_turns(task, e.text) for e in sample], [compact_json(e.fields) for e in sample]
        ),
    )
    refit = resolve_trial_config(task, profile=options.profile, model=options.model, refit=True).budget
    pruning = task.search.pruning if options.pruner != "none" else None
    rungs = pruning.rung_steps(total_steps) if pruning else ()
    estimate = estimates.search_estimate(
        workload,
        base.budget,
        refit,
        trials=max(options.trials - finished, 0),
        total_steps=total_steps,
        refit_steps=refit.total_steps(len(load_split(task, "train"))),
        pruning=pruning,
        zero_shot=finished == 0,
        test_examples=len(load_split(task, "test")),
        generation_batch_size=GENERATION_BATCH_SIZE,
        promoted=estimates.promotion_share(options.sampler, pruning),
    )
    return estimates.Forecast(estimate, workload, base.budget, rungs, GENERATION_BATCH_SIZE)


def _after_trial(
    study: optuna.Study,
    trial: FrozenTrial,
    parent_run_id: str,
    progress: SearchProgress,
    forecast: estimates.Forecast,
    total_steps: int,
) -> None:
    progress.finished = count_finished(study)
    progress.current_trial = None
    if trial.state in FINISHED_STATES and trial.datetime_start and trial.datetime_complete:
        complete = trial.state == TrialState.COMPLETE
        forecast.trial_finished(
            seconds=(trial.datetime_complete - trial.datetime_start).total_seconds(),
            steps=total_steps if complete else (trial.last_step or total_steps),
            complete=complete,
        )
    if reason := failure(trial):
        progress.last_failure = reason
    _update_best(study, progress)
    if progress.best_trial is not None:
        best_metrics = study.best_trial.user_attrs.get("metrics", {})
        forecast.refit_tokens_per_second = best_metrics.get("train_tokens_per_second") or None
    progress.seconds_left = forecast.seconds_left(progress.total - progress.finished)
    if progress.best_value is not None:
        tracking.log_to_run(
            parent_run_id,
            metrics={"best_value": progress.best_value, "finished_trials": progress.finished},
            tags={"harness.best_trial": str(progress.best_trial)},
        )


def _update_best(study: optuna.Study, progress: SearchProgress) -> None:
    if study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        best = study.best_trial
        progress.best_value, progress.best_trial = best.value, best.number


def _zero_shot_baseline(task: TaskConfig, base: TrialConfig, parent_run_id: str) -> None:
    """The base model without fine-tuning, once per study, logged on the parent run as `zero_shot_*`."""
    if "zero_shot_f1_micro" in tracking.run_metrics(parent_run_id):
        return
    scores, _ = evaluate_model(
        task,
        base.model,
        split="validation",
        limit=base.budget.validation_examples,
        max_new_tokens=base.budget.max_new_tokens,
    )
    tracking.log_to_run(parent_run_id, metrics={f"zero_shot_{k}": v for k, v in scores.metrics.items()})
