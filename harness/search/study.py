"""A study: its name, its identity (what makes its trials comparable), creating or resuming it, its one MLflow
parent run, finding its trials and summarising them."""

from __future__ import annotations

import hashlib
import json
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import optuna
from optuna.exceptions import DuplicatedStudyError
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from harness import tracking
from harness.config import TaskConfig, TrialConfig
from harness.errors import HarnessError, without_password
from harness.search import coordination, space
from harness.search.coordination import FINISHED_STATES, MLFLOW_RUN_ATTR, count_finished, running_trials
from harness.search.options import SearchOptions
from harness.search.storage import default_storage, open_storage
from harness.task_data import load_split

IDENTITY_ATTR = "harness.identity"  # what makes the study's trials comparable (`study_identity`)
LEGACY_SPACE_ATTR = "harness.search_space"  # the identity of studies made before it covered model, budget and data
TASK_ATTR = "harness.task"
PARENT_RUN_ATTR = "harness.mlflow_parent_run_id"  # the study's one MLflow parent run, shared by its workers
PARENT_RUN_WAIT_SECONDS = 120  # how long a joining worker waits for the creator's parent run


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


@dataclass(frozen=True)
class StudyTrial:
    """A finished trial as registration needs it: which study, its params, value and MLflow run."""

    study_name: str
    number: int
    params: dict[str, Any]
    value: float
    mlflow_run_id: str


def study_identity(task: TaskConfig, base: TrialConfig) -> dict[str, Any]:
    """Everything that makes a study's trials comparable: the space and objective, the fixed part of the recipe,
    the base model, the profile's budget and the data the trials train and are scored on (by digest)."""
    return {
        "params": {key: param.model_dump(mode="json") for key, param in sorted(task.search.params.items())},
        "objective": task.search.objective.model_dump(mode="json"),
        "recipe": base.recipe.model_dump(mode="json"),
        "base model": base.model,
        "budget": base.budget.model_dump(mode="json"),
        "training data": _digest(load_split(task, "train")[: base.budget.train_examples]),
        "validation data": _digest(load_split(task, "validation")[: base.budget.validation_examples]),
    }


def open_study(
    task: TaskConfig, options: SearchOptions, storage_url: str, base_config: TrialConfig, total_steps: int
) -> tuple[optuna.Study, BaseStorage, bool]:
    """The study, its storage, and whether this worker created it (exactly one worker does: the storage refuses a
    second study of the same name). Resuming a study made for other trials is refused, naming each difference."""
    study_name = options.study_name_for(task.task.name)
    space.check_seed_in_space(task)
    storage = open_storage(storage_url, coordination.FailRunThenRetry("worker stopped sending heartbeats"))
    # Every trial re-seeds the sampler before its first draw (see `objective`).
    sampler = space.sampler(options, seed=options.seed)
    pruner = space.pruner(options, task, total_steps)
    try:
        study = optuna.create_study(
            study_name=study_name,
            storage=storage,
            sampler=sampler,
            pruner=pruner,
            direction=task.search.objective.direction,
        )
        study.set_user_attr(coordination.STUDY_UID_ATTR, uuid.uuid4().hex)  # first: claims are keyed on it
        created = True
    except DuplicatedStudyError:
        study = optuna.load_study(study_name=study_name, storage=storage, sampler=sampler, pruner=pruner)
        created = False
    identity = study_identity(task, base_config)
    stored = study.user_attrs.get(IDENTITY_ATTR)
    if stored is None and LEGACY_SPACE_ATTR in study.user_attrs:
        # A study from before the identity covered more than the space: what it recorded is all it can be held to.
        stored = {**identity, **json.loads(study.user_attrs[LEGACY_SPACE_ATTR])}
    if created or stored is None:
        study.set_user_attr(IDENTITY_ATTR, identity)
        study.set_user_attr(TASK_ATTR, task.task.name)
    elif differences := [key for key in identity if stored.get(key) != identity[key]]:
        lines = "".join(
            f"\n  {key}: stored {_short(stored.get(key))}, now {_short(identity[key])}" for key in differences
        )
        raise HarnessError(
            f"study {study_name!r} in {without_password(storage_url)} was made for other trials than {task.file}"
            f" and the {options.profile} profile now make; its trials and new ones would not be comparable:{lines}\n"
            "Name a new study with --study NAME (or restore what changed) to search again."
        )
    # The seed recipe is queued by the study's creator, and again when its trial failed (Ctrl-C, a crash): every
    # study gets to answer "did the search beat the standard recipe?".
    seed_trials = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("harness.seed_recipe")]
    if created or (
        seed_trials
        and all(t.state == TrialState.FAIL for t in seed_trials)
        # Workers resuming together queue it once: claimed per failed seed trial.
        and coordination.claim(storage_url, study, f"seed-after-{seed_trials[-1].number}")[0]
    ):
        study.enqueue_trial(space.seed_params(task), user_attrs={"harness.seed_recipe": True})
    return study, storage, created


def study_run(study: optuna.Study, created: bool, task: TaskConfig, storage_url: str, *, tags: dict[str, str]) -> str:
    """The study's one MLflow parent run: created by the worker that created the study, found by the others in
    the study's attributes (by its tag only for studies with trials from before the attribute existed)."""
    if not created and PARENT_RUN_ATTR not in study.user_attrs and study.get_trials(deepcopy=False):
        legacy = tracking.find_study_run(task.task.name, study.study_name)
        if legacy:
            study.set_user_attr(PARENT_RUN_ATTR, legacy)
    deadline = time.monotonic() + PARENT_RUN_WAIT_SECONDS
    while not created:
        found = study.user_attrs.get(PARENT_RUN_ATTR)
        if found:
            tracking.resume_study_run(str(found), study.study_name)
            return str(found)
        # The creating worker died before making it: one of the others makes it (claimed), the rest find it.
        if time.monotonic() > deadline and coordination.claim(storage_url, study, "parent-run")[0]:
            break
        time.sleep(coordination.POLL_SECONDS)
    run_id = tracking.create_study_run(task.task.name, study.study_name, tags=tags)
    study.set_user_attr(PARENT_RUN_ATTR, run_id)
    return run_id


def load_study(study_name: str, storage_url: str | None = None) -> optuna.Study:
    """A study that exists; a clear error naming the studies there when it does not."""
    storage_url = storage_url or default_storage()
    storage = open_storage(storage_url)
    try:
        return optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        known = study_names(storage_url)
        raise HarnessError(
            f"no study {study_name!r} in {without_password(storage_url)}; studies there:"
            f" {', '.join(known) or 'none'} (run `harness search` first, or pass --study)"
        ) from None


def study_names(storage_url: str | None = None, *, task_name: str | None = None) -> list[str]:
    """The studies in a storage, oldest first; with `task_name`, only those made for that task."""
    storage = open_storage(storage_url or default_storage())
    summaries = [
        s
        for s in optuna.get_all_study_summaries(storage, include_best_trial=False)
        if not s.study_name.startswith(coordination.LEGACY_CLAIM_PREFIX)
    ]
    if task_name is not None:
        summaries = [s for s in summaries if s.user_attrs.get(TASK_ATTR) == task_name]
    summaries.sort(key=lambda s: s.datetime_start or datetime.min)  # a study without trials has no start yet
    return [s.study_name for s in summaries]


def latest_study_name(task_name: str, profile: str, *, storage: str | None = None) -> str:
    """The study `harness report`, `ui` and `register` mean when none is named: `<task>-<profile>` if it exists,
    else the task's most recently started study (say, `legal-smoke` after a `--profile smoke` search)."""
    names = study_names(storage, task_name=task_name)
    default = f"{task_name}-{profile}"
    return default if default in names or not names else names[-1]


def find_trial(study_name: str, *, storage: str | None = None, number: int | None = None) -> StudyTrial:
    """A study's best complete trial, or the trial numbered `number`; a clear error when there is none."""
    study = load_study(study_name, storage)
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


def study_summary(task: TaskConfig, options: SearchOptions) -> SearchSummary:
    """The ranked results of a study as its workers left them (what `--n-workers` prints at the end)."""
    study_name = options.study_name_for(task.task.name)
    storage_url = options.storage or default_storage()
    try:
        study = optuna.load_study(study_name=study_name, storage=open_storage(storage_url))
        parent_run_id = str(study.user_attrs[PARENT_RUN_ATTR])
    except KeyError:
        raise HarnessError(
            f"study {study_name!r} in {without_password(storage_url)} was not started: see the workers' errors above"
        ) from None
    return summarise(study, task, storage_url, parent_run_id, log=False)


def close_study(task: TaskConfig, options: SearchOptions, *, dead_pids: set[int]) -> None:
    """After a local pool's workers have all stopped: fail the trials its dead workers left RUNNING (queued
    again for the next run) and end the study's run if no trial runs anywhere."""
    storage = open_storage(options.storage or default_storage())
    try:
        study = optuna.load_study(study_name=options.study_name_for(task.task.name), storage=storage)
    except KeyError:
        return  # the workers never got as far as creating it
    host = socket.gethostname()
    coordination.fail_dead_workers(study, storage, dead=frozenset(f"{host}:{pid}" for pid in dead_pids))
    parent_run_id = study.user_attrs.get(PARENT_RUN_ATTR)
    if parent_run_id and not running_trials(study):
        complete = count_finished(study) >= options.trials
        tracking.end_run_if_running(str(parent_run_id), "FINISHED" if complete else "KILLED")


def summarise(
    study: optuna.Study, task: TaskConfig, storage_url: str, parent_run_id: str, *, log: bool = True
) -> SearchSummary:
    """Every finished trial, complete ones best first, with the seed recipe and zero-shot figures; logged on the
    study's run as `leaderboard.json` unless `log` is false."""
    metric, direction = task.search.objective.metric, task.search.objective.direction
    maximize = direction == "maximize"
    rows = []
    for trial in study.get_trials(deepcopy=False, states=FINISHED_STATES):
        rows.append(
            {
                "trial": trial.number,
                "state": trial.state.name,
                # A pruned trial's value is its last intermediate one (a validation loss), not the objective.
                metric: trial.value if trial.state == TrialState.COMPLETE else None,
                "seed_recipe": bool(trial.user_attrs.get("harness.seed_recipe")),
                # Steps trained: a pruned trial stopped at its last rung.
                "steps": (trial.user_attrs.get("metrics") or {}).get("train_steps", trial.last_step),
                "seconds": round((trial.datetime_complete - trial.datetime_start).total_seconds(), 1)
                if trial.datetime_complete and trial.datetime_start
                else None,
                "mlflow_run_id": trial.user_attrs.get(MLFLOW_RUN_ATTR),
                **{f"param.{k}": v for k, v in trial.params.items()},
                # What the pruner compared: the validation loss at each rung the trial reached (reported negated
                # to a maximising study).
                **{
                    f"rung_loss.{step}": -value if maximize else value
                    for step, value in sorted(trial.intermediate_values.items())
                },
                **{k: v for k, v in (trial.user_attrs.get("metrics") or {}).items() if k != metric},
            }
        )
    complete = [r for r in rows if r["state"] == "COMPLETE"]
    complete.sort(key=lambda r: r[metric], reverse=maximize)
    ranked = complete + [r for r in rows if r["state"] != "COMPLETE"]
    if ranked and log:
        tracking.log_table_to_run(parent_run_id, ranked, "leaderboard.json")
    return SearchSummary(
        study_name=study.study_name,
        storage=without_password(storage_url),
        parent_run_id=parent_run_id,
        objective=metric,
        direction=direction,
        rows=ranked,
        best=complete[0] if complete else None,
        seed_recipe=next((r for r in rows if r["seed_recipe"]), None),
        # Read back from the study's run: the worker that evaluated it may be another one.
        zero_shot={
            k.removeprefix("zero_shot_"): v
            for k, v in tracking.run_metrics(parent_run_id).items()
            if k.startswith("zero_shot_")
        },
    )


def _digest(examples: list[Any]) -> str:
    text = json.dumps([[e.id, e.text, e.fields] for e in examples], sort_keys=True, ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _short(value: Any, limit: int = 160) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 1] + "…"
