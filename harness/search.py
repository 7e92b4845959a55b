"""The search: an Optuna study over LoRA / QLoRA recipes. The only module importing Optuna.

A study is named `<task>-<profile>` unless told otherwise and lives in `sqlite:///<mlruns>/optuna.db` (or any
Optuna storage URL). `trials` is the total number of finished (complete or pruned) trials the study should
have: running the same command again resumes it and runs only what is missing. Trial 0 is always the task's seed
recipe. Each trial is `harness.trial.run_trial`, nested in MLflow under one parent run per study.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from harness import tracking
from harness.config import CategoricalParam, FloatParam, TaskConfig, TrialConfig, resolve_trial_config
from harness.errors import HarnessError, TrialStopped
from harness.trial import evaluate_model, run_trial

FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED)
# A worker that dies leaves its trial RUNNING; without a heartbeat for GRACE seconds it is failed and retried.
HEARTBEAT_SECONDS = int(os.environ.get("HARNESS_HEARTBEAT_SECONDS", "30"))
MAX_RETRIES = 2
MLFLOW_RUN_ATTR = "mlflow_run_id"

# Optuna logs each failed trial with its traceback; harness reports failures itself (progress, MLflow, user attrs).
optuna.logging.set_verbosity(optuna.logging.ERROR)


@dataclass(frozen=True)
class SearchOptions:
    trials: int
    profile: str
    model: str | None = None
    study_name: str | None = None
    sampler: str = "tpe"  # tpe | random | gp
    pruner: str = "median"  # none | median | hyperband
    seed: int = 0
    timeout_seconds: float | None = None
    max_memory_mb: float | None = None
    storage: str | None = None  # any Optuna storage URL; default sqlite:///<mlruns>/optuna.db


@dataclass
class SearchProgress:
    """What the live view shows; updated by the search as trials run."""

    total: int
    finished: int = 0
    current_trial: int | None = None
    current_params: dict[str, Any] = field(default_factory=dict)
    current_step: int = 0
    best_value: float | None = None
    best_trial: int | None = None
    last_failure: str | None = None  # "trial N: error", shown instead of Optuna's logged traceback
    started: float = field(default_factory=time.monotonic)


@dataclass
class SearchSummary:
    study_name: str
    storage: str
    parent_run_id: str
    objective: str
    direction: str
    rows: list[dict[str, Any]]  # every finished trial, best first
    best: dict[str, Any] | None
    seed_recipe: dict[str, Any] | None
    zero_shot: dict[str, float]


def run_search(
    task: TaskConfig, options: SearchOptions, *, on_progress: Callable[[SearchProgress], None] | None = None
) -> SearchSummary:
    """Run (or resume) a study until it has `options.trials` finished trials; returns the ranked results."""
    study_name = options.study_name or f"{task.task.name}-{options.profile}"
    storage_url = options.storage or default_storage()
    base_config = resolve_trial_config(task, profile=options.profile, model=options.model)
    study = _open_study(task, options, study_name, storage_url)
    parent_run_id = tracking.open_study_run(
        task.task.name,
        study_name,
        tags={
            "harness.study": study_name,
            "harness.storage": _without_password(storage_url),
            "harness.sampler": options.sampler,
            "harness.pruner": options.pruner,
            "harness.profile": options.profile,
            "harness.model": base_config.model,
        },
    )
    progress = SearchProgress(total=options.trials, finished=_count_finished(study))
    _update_best(study, progress)
    status = "FAILED"
    zero_shot: dict[str, float] = {}
    try:
        zero_shot = _zero_shot_baseline(task, base_config, parent_run_id)
        objective = _objective(task, base_config, options, parent_run_id, progress, on_progress)
        remaining = options.trials - progress.finished
        if remaining > 0:
            study.optimize(
                objective,
                callbacks=[
                    optuna.study.MaxTrialsCallback(options.trials, states=FINISHED_STATES),
                    lambda study, trial: _after_trial(study, trial, task, parent_run_id, progress, on_progress),
                ],
                timeout=options.timeout_seconds,
                catch=(Exception,),
                gc_after_trial=True,
            )
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        summary = _summarise(study, task, storage_url, parent_run_id, zero_shot)
        _log_study_plots(study, parent_run_id)
        tracking.finish_study_run(parent_run_id, status)
    return summary


@dataclass(frozen=True)
class StudyTrial:
    """A finished trial as registration needs it: which study, its params, value and MLflow run."""

    study_name: str
    number: int
    params: dict[str, Any]
    value: float
    mlflow_run_id: str


def default_storage() -> str:
    return f"sqlite:///{tracking.mlruns_dir() / 'optuna.db'}"


def find_trial(study_name: str, *, storage: str | None = None, number: int | None = None) -> StudyTrial:
    """A study's best complete trial, or the trial numbered `number`; a clear error when there is none."""
    storage_url = storage or default_storage()
    try:
        study = optuna.load_study(study_name=study_name, storage=storage_url)
    except KeyError:
        known = optuna.get_all_study_names(storage=storage_url)
        raise HarnessError(
            f"no study {study_name!r} in {_without_password(storage_url)}; studies there:"
            f" {', '.join(known) or 'none'} (run `harness search` first, or pass --study)"
        ) from None
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if number is None:
        if not complete:
            raise HarnessError(f"study {study_name!r} has no complete trial to register yet")
        trial = study.best_trial
    else:
        matching = [t for t in complete if t.number == number]
        if not matching:
            raise HarnessError(
                f"trial {number} of study {study_name!r} is not a complete trial;"
                f" complete trials: {', '.join(str(t.number) for t in complete) or 'none'}"
            )
        trial = matching[0]
    return StudyTrial(
        study_name, trial.number, dict(trial.params), float(trial.value or 0.0), trial.user_attrs[MLFLOW_RUN_ATTR]
    )


def _open_study(task: TaskConfig, options: SearchOptions, study_name: str, storage_url: str) -> optuna.Study:
    _check_seed_in_space(task)
    storage = RDBStorage(
        storage_url,
        heartbeat_interval=HEARTBEAT_SECONDS,
        grace_period=2 * HEARTBEAT_SECONDS,
        heartbeat_stale_trial_callback=_FailRunThenRetry(task.task.name),
    )
    direction = task.search.objective.direction
    study = optuna.create_study(
        study_name=study_name,
        storage=storage,
        sampler=_sampler(options),
        pruner=_pruner(options, task),
        direction=direction,
        load_if_exists=True,
    )
    signature = _space_signature(task)
    stored = study.user_attrs.get("harness.search_space")
    if stored is None:
        study.set_user_attr("harness.search_space", signature)
        study.set_user_attr("harness.task", task.task.name)
    elif stored != signature:
        raise HarnessError(
            f"study {study_name!r} in {_without_password(storage_url)} was created with another search space"
            f" or objective than {task.file} now declares:\n  stored:  {stored}\n  current: {signature}\n"
            "Name a new study with --study NAME (or restore the YAML) so results stay comparable."
        )
    # The seed recipe is queued once, and again when its trial failed (Ctrl-C, a crash): every study gets to
    # answer "did the search beat the standard recipe?".
    seed_trials = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("harness.seed_recipe")]
    if all(t.state == TrialState.FAIL for t in seed_trials):
        study.enqueue_trial(_seed_params(task), user_attrs={"harness.seed_recipe": True})
    return study


def _check_seed_in_space(task: TaskConfig) -> None:
    """Trial 0 is the seed recipe, so the space must contain it: otherwise the study could not answer
    "did the search beat the standard recipe?"."""
    for key, value in _seed_params(task).items():
        param = task.search.params[key]
        inside = value in param.choices if isinstance(param, CategoricalParam) else param.low <= value <= param.high
        if not inside:
            allowed = (
                ", ".join(map(str, param.choices))
                if isinstance(param, CategoricalParam)
                else f"{param.low}..{param.high}"
            )
            raise HarnessError(
                f"the seed recipe's {key}={value} is outside the search space ({allowed}) in {task.file};"
                " every study starts with the seed recipe, so widen search.params or change the recipe"
            )


def _space_signature(task: TaskConfig) -> str:
    space = {key: param.model_dump() for key, param in sorted(task.search.params.items())}
    return json.dumps({"params": space, "objective": task.search.objective.model_dump()}, sort_keys=True)


def _seed_params(task: TaskConfig) -> dict[str, Any]:
    """The seed recipe, in the search's own parameters (alpha as alpha_ratio where the space samples that)."""
    recipe = task.recipe
    values = {
        "lora.r": recipe.lora.r,
        "lora.alpha": recipe.lora.resolved_alpha,
        "lora.alpha_ratio": recipe.lora.resolved_alpha / recipe.lora.r,
        "lora.dropout": recipe.lora.dropout,
        "lora.target_modules": recipe.lora.target_modules,
        "lora.use_rslora": recipe.lora.use_rslora,
        "train.learning_rate": recipe.train.learning_rate,
        "train.weight_decay": recipe.train.weight_decay,
        "train.warmup_ratio": recipe.train.warmup_ratio,
        "train.lr_scheduler": recipe.train.lr_scheduler,
        "quantization": recipe.quantization,
        "seed": recipe.seed,
    }
    return {key: values[key] for key in task.search.params}


def _sampler(options: SearchOptions) -> optuna.samplers.BaseSampler:
    if options.sampler == "tpe":
        # Constant liar: concurrent workers do not all sample the same point while trials are running.
        return optuna.samplers.TPESampler(multivariate=True, group=True, seed=options.seed, constant_liar=True)
    if options.sampler == "random":
        return optuna.samplers.RandomSampler(seed=options.seed)
    if options.sampler == "gp":
        return optuna.samplers.GPSampler(seed=options.seed)
    raise HarnessError(f"unknown sampler {options.sampler!r}; expected tpe, random or gp")


def _pruner(options: SearchOptions, task: TaskConfig) -> optuna.pruners.BasePruner:
    if options.pruner == "none":
        return optuna.pruners.NopPruner()
    if options.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    if options.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1)
    raise HarnessError(f"unknown pruner {options.pruner!r}; expected none, median or hyperband")


def _suggest(trial: optuna.Trial, task: TaskConfig) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, param in task.search.params.items():
        if isinstance(param, CategoricalParam):
            values[key] = trial.suggest_categorical(key, list(param.choices))
        elif isinstance(param, FloatParam):
            values[key] = trial.suggest_float(key, param.low, param.high, log=param.log)
        else:
            values[key] = trial.suggest_int(key, param.low, param.high, step=param.step, log=param.log)
    return values


class _PruningReporter:
    """Turns the trial's validation loss into Optuna intermediate values and asks the pruner."""

    def __init__(self, trial: optuna.Trial, maximize: bool, progress: SearchProgress, notify: Callable[[], None]):
        self.trial = trial
        self.maximize = maximize
        self.progress = progress
        self.notify = notify
        self.prune = False

    def on_log(self, step: int, metrics: dict[str, float]) -> None:
        self.progress.current_step = step
        self.notify()

    def on_evaluate(self, step: int, validation_loss: float) -> None:
        # Pruners compare intermediate values in the study's direction: lower loss is better, so a maximised
        # objective gets the negated loss.
        self.trial.report(-validation_loss if self.maximize else validation_loss, step)
        self.prune = self.trial.should_prune()

    def should_stop(self, step: int) -> bool:
        return self.prune


def _objective(
    task: TaskConfig,
    base: TrialConfig,
    options: SearchOptions,
    parent_run_id: str,
    progress: SearchProgress,
    on_progress: Callable[[SearchProgress], None] | None,
) -> Callable[[optuna.Trial], float]:
    metric = task.search.objective.metric
    maximize = task.search.objective.direction == "maximize"

    def notify() -> None:
        if on_progress:
            on_progress(progress)

    def objective(trial: optuna.Trial) -> float:
        params = _suggest(trial, task)
        progress.current_trial, progress.current_params, progress.current_step = trial.number, params, 0
        notify()
        config = resolve_trial_config(task, profile=base.profile, model=base.model, overrides=params)
        reporter = _PruningReporter(trial, maximize, progress, notify)
        tags = {"harness.study": trial.study.study_name, "harness.trial_number": str(trial.number)}
        if trial.user_attrs.get("harness.seed_recipe"):
            tags["harness.seed_recipe"] = "true"

        def remember_run(run_id: str) -> None:
            # Cross-reference both ways as soon as the run exists: a worker killed mid-trial leaves it findable.
            trial.set_user_attr(MLFLOW_RUN_ATTR, run_id)

        try:
            result = run_trial(
                task,
                config,
                reporter=reporter,
                max_memory_mb=options.max_memory_mb,
                parent_run_id=parent_run_id,
                run_name=f"trial-{trial.number}",
                tags=tags,
                on_run_started=remember_run,
            )
        except TrialStopped:
            raise optuna.TrialPruned() from None
        except Exception as error:
            trial.set_user_attr("harness.error", f"{type(error).__name__}: {error}"[:1000])
            raise
        trial.set_user_attr("metrics", {k: v for k, v in result.metrics.items() if isinstance(v, int | float)})
        trial.set_user_attr("adapter_dir", str(result.adapter_dir))
        return float(result.metrics[metric])

    return objective


def _after_trial(
    study: optuna.Study,
    trial: FrozenTrial,
    task: TaskConfig,
    parent_run_id: str,
    progress: SearchProgress,
    on_progress: Callable[[SearchProgress], None] | None,
) -> None:
    progress.finished = _count_finished(study)
    progress.current_trial = None
    if trial.state == TrialState.FAIL:
        progress.last_failure = f"trial {trial.number}: {trial.user_attrs.get('harness.error', 'interrupted')}"
    _update_best(study, progress)
    if progress.best_value is not None:
        tracking.log_to_run(
            parent_run_id,
            metrics={"best_value": progress.best_value, "finished_trials": progress.finished},
            tags={"harness.best_trial": str(progress.best_trial)},
        )
    if on_progress:
        on_progress(progress)


def _update_best(study: optuna.Study, progress: SearchProgress) -> None:
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    if complete:
        best = study.best_trial
        progress.best_value, progress.best_trial = best.value, best.number


def _count_finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED_STATES))


def _zero_shot_baseline(task: TaskConfig, base: TrialConfig, parent_run_id: str) -> dict[str, float]:
    """The base model without fine-tuning, once per study, logged on the parent run as `zero_shot_*`."""
    logged = tracking.run_metrics(parent_run_id)
    if "zero_shot_f1_micro" in logged:
        return {k.removeprefix("zero_shot_"): v for k, v in logged.items() if k.startswith("zero_shot_")}
    scores, _ = evaluate_model(
        task,
        base.model,
        split="validation",
        limit=base.budget.validation_examples,
        max_new_tokens=base.budget.max_new_tokens,
    )
    tracking.log_to_run(parent_run_id, metrics={f"zero_shot_{k}": v for k, v in scores.metrics.items()})
    return dict(scores.metrics)


def _summarise(
    study: optuna.Study, task: TaskConfig, storage_url: str, parent_run_id: str, zero_shot: dict[str, float]
) -> SearchSummary:
    metric, direction = task.search.objective.metric, task.search.objective.direction
    rows = []
    for trial in study.get_trials(deepcopy=False, states=FINISHED_STATES):
        rows.append(
            {
                "trial": trial.number,
                "state": trial.state.name,
                metric: trial.value,
                "seed_recipe": bool(trial.user_attrs.get("harness.seed_recipe")),
                "mlflow_run_id": trial.user_attrs.get(MLFLOW_RUN_ATTR),
                "adapter_dir": trial.user_attrs.get("adapter_dir"),
                **{f"param.{k}": v for k, v in trial.params.items()},
                **{k: v for k, v in (trial.user_attrs.get("metrics") or {}).items() if k != metric},
            }
        )
    complete = [r for r in rows if r["state"] == "COMPLETE"]
    complete.sort(key=lambda r: r[metric], reverse=direction == "maximize")
    ranked = complete + [r for r in rows if r["state"] != "COMPLETE"]
    if ranked:
        tracking.log_table_to_run(parent_run_id, ranked, "leaderboard.json")
    return SearchSummary(
        study_name=study.study_name,
        storage=_without_password(storage_url),
        parent_run_id=parent_run_id,
        objective=metric,
        direction=direction,
        rows=ranked,
        best=complete[0] if complete else None,
        seed_recipe=next((r for r in rows if r["seed_recipe"]), None),
        zero_shot=zero_shot,
    )


PLOTS = ("optimization_history", "param_importances", "parallel_coordinate", "slice")


def _log_study_plots(study: optuna.Study, parent_run_id: str) -> None:
    """Optuna's plots of the study on its parent run: interactive HTML (plotly) and PNG (matplotlib)."""
    import tempfile
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")  # no display: render to files
    import matplotlib.pyplot as plt
    import optuna.visualization as interactive
    import optuna.visualization.matplotlib as static

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return
    skipped = {}
    with tempfile.TemporaryDirectory() as directory, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the matplotlib backend is marked experimental on every call
        for name in PLOTS:
            try:
                getattr(interactive, f"plot_{name}")(study).write_html(Path(directory) / f"{name}.html")
                axes = getattr(static, f"plot_{name}")(study)
                figure = axes.flat[0].figure if hasattr(axes, "flat") else axes.figure
                figure.savefig(Path(directory) / f"{name}.png", bbox_inches="tight")
                plt.close(figure)
            except (ValueError, RuntimeError, ZeroDivisionError) as error:
                # Importances need two trials that differ; a one-trial study has none to show yet.
                skipped[name] = f"{type(error).__name__}: {error}"[:200]
        tracking.log_directory_to_run(parent_run_id, Path(directory), "plots")
    if skipped:
        tracking.log_to_run(parent_run_id, tags={f"harness.plot_skipped.{k}": v for k, v in skipped.items()})


class _FailRunThenRetry:
    """A trial whose worker stopped sending heartbeats: fail its MLflow run, then queue it again."""

    def __init__(self, task_name: str) -> None:
        self.task_name = task_name
        self.retry = RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES)

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        run_id = trial.user_attrs.get(MLFLOW_RUN_ATTR)
        if run_id:
            tracking.fail_run(run_id, f"worker stopped sending heartbeats; trial {trial.number} failed and retried")
        self.retry(study, trial)


def _without_password(url: str) -> str:
    """Storage URLs may carry credentials (postgresql://user:secret@host/db): never log the secret."""
    if "://" not in url or "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"
