"""The search: an Optuna study over LoRA / QLoRA recipes. The only module importing Optuna.

A study is named `<task>-<profile>` unless told otherwise and lives in `<mlruns>/optuna-journal.log` (Optuna's
JournalStorage: safe for several local processes) or any Optuna storage URL (`postgresql://...` for many machines).
`trials` is the total number of finished (complete or pruned) trials the study should have: running the same
command again resumes it and runs only what is missing. Trial 0 is always the task's seed recipe. Each trial is
`harness.trial.run_trial`, nested in MLflow under one parent run per study.

Any number of workers may run the same command on one study at once (Optuna's own distributed engine): each pulls
trials until the study has its total, never starting one the total does not need; the worker that creates the
study creates its MLflow parent run and every other worker finds it in the study's attributes; a trial whose
worker died is failed and queued again (heartbeats on a database, process liveness on a local journal file).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import socket
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy.exc
from optuna.exceptions import DuplicatedStudyError, UpdateFinishedTrialError
from optuna.storages import BaseStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import FrozenTrial, TrialState

from harness import estimates, model_loading, tracking
from harness.config import CategoricalParam, FloatParam, TaskConfig, TrialConfig, resolve_trial_config
from harness.errors import HarnessError, TrialStopped, without_password
from harness.memory import read_model_shape
from harness.prompts import compact_json, prompt_turns
from harness.task_data import load_split
from harness.trial import GENERATION_BATCH_SIZE, evaluate_model, run_trial

FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED)
# A worker that dies leaves its trial RUNNING; without a heartbeat for GRACE seconds it is failed and retried.
HEARTBEAT_SECONDS = int(os.environ.get("HARNESS_HEARTBEAT_SECONDS", "30"))
MAX_RETRIES = 2
MLFLOW_RUN_ATTR = "mlflow_run_id"
WORKER_ATTR = "harness.worker"  # host:pid of the process running the trial
WORKER_STARTED_ATTR = "harness.worker_started"  # that process's start time: a reused pid is not taken for it
WORKER_ATTRS = (WORKER_ATTR, WORKER_STARTED_ATTR)
SURPLUS_ATTR = "harness.surplus"
IDENTITY_ATTR = "harness.identity"  # what makes the study's trials comparable (`study_identity`)
LEGACY_SPACE_ATTR = "harness.search_space"  # the identity of studies made before it covered model, budget and data
PARENT_RUN_ATTR = "harness.mlflow_parent_run_id"  # the study's one MLflow parent run, shared by its workers
# How often a waiting worker looks at the study, and how long a joining worker waits for the creator's parent run.
POLL_SECONDS = float(os.environ.get("HARNESS_POLL_SECONDS", "2"))
PARENT_RUN_WAIT_SECONDS = 120
# A RUNNING trial that no worker took up within this (interrupted between its creation and its first line) is dead.
ORPHAN_SECONDS = 2 * HEARTBEAT_SECONDS
CLAIM_PREFIX = "harness-claim:"
SCHEMA_ATTEMPTS = 5  # marker studies: a unique name is the storage's atomic "only one of us"

# Optuna logs each failed trial with its traceback; harness reports failures itself (progress, MLflow, user attrs).
optuna.logging.set_verbosity(optuna.logging.ERROR)
# Grouped TPE and the retry callback are marked experimental; every worker would print so on every start.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


@dataclass(frozen=True)
class SearchOptions:
    trials: int
    profile: str
    model: str | None = None
    study_name: str | None = None
    sampler: str = "tpe"  # tpe | random | gp
    pruner: str = "halving"  # halving (successive halving over training steps) | hyperband | median | none
    seed: int = 0
    timeout_seconds: float | None = None
    max_memory_mb: float | None = None
    storage: str | None = None  # an Optuna storage URL or a journal file; default <mlruns>/optuna-journal.log
    worker_index: int | None = None  # this worker's number in log lines (--n-workers, a Kubernetes or Slurm index)
    max_failures: int = 3  # this process stops after so many of its trials failed in a row

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
    """Run (or resume, or join) a study until it has `options.trials` finished trials; returns the ranked results."""
    study_name = _study_name(task, options)
    storage_url = options.storage or default_storage()
    base_config = resolve_trial_config(task, profile=options.profile, model=options.model)
    total_steps = base_config.budget.total_steps(len(load_split(task, "train")))
    study, storage, created = _open_study(task, options, study_name, storage_url, base_config, total_steps)
    _fail_dead_workers(study, storage, task)  # a resumed study's trials whose worker died are retried first
    parent_run_id = _study_run(
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
    progress = SearchProgress(total=options.trials, finished=_count_finished(study))
    _update_best(study, progress)
    forecast = forecast_search(task, options, base_config, total_steps, finished=progress.finished)
    progress.estimate, progress.seconds_left = forecast.estimate.describe(), forecast.estimate.total_seconds
    tracking.log_to_run(parent_run_id, tags={"harness.estimate": progress.estimate})
    if on_progress:
        on_progress(progress)
    deadline = None if options.timeout_seconds is None else time.monotonic() + options.timeout_seconds
    status = "FAILED"
    failures = _FailuresInARow(options.max_failures)
    try:
        # One zero-shot evaluation per study, by whichever worker claims it first.
        if _claim(storage_url, f"{study_name}:zero-shot")[0]:
            _zero_shot_baseline(task, base_config, parent_run_id)
        rungs = task.search.pruning.rung_steps(total_steps) if options.pruner != "none" else ()
        objective = _objective(task, base_config, options, parent_run_id, progress, on_progress, rungs)

        def stop_or_wait(study: optuna.Study, trial: FrozenTrial) -> None:
            if failures.record(trial) or not _wait_for_room(study, storage, task, options.trials, deadline):
                study.stop()

        if _wait_for_room(study, storage, task, options.trials, deadline):
            study.optimize(
                objective,
                callbacks=[
                    lambda study, trial: _after_trial(
                        study, trial, task, parent_run_id, progress, on_progress, forecast, total_steps
                    ),
                    stop_or_wait,
                ],
                timeout=options.timeout_seconds,
                catch=(Exception,),
                gc_after_trial=True,
            )
        status = "FAILED" if failures.stopped else "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        _fail_dead_workers(study, storage, task)
        summary = _summarise(study, task, storage_url, parent_run_id)
        _log_study_plots(study, parent_run_id)
        # The study's run stays RUNNING while other workers still run trials; the last one to stop ends it.
        if not _running(study):
            tracking.finish_study_run(parent_run_id, status)
    if failures.stopped:
        finished = len([row for row in summary.rows if row["state"] in ("COMPLETE", "PRUNED")])
        raise HarnessError(
            f"the search stopped: {len(failures.reasons)} trials in a row failed, the last with {failures.reasons[-1]}."
            f" The study's {finished} finished trials are kept; fix the cause and run the same command to resume"
            " (--max-failures sets how many failures in a row stop a search)"
        )
    return summary


class _FailuresInARow:
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
        if reason := _failure(trial):
            self.reasons.append(reason)
        elif trial.state in FINISHED_STATES:
            self.reasons.clear()
        return self.stopped


def _failure(trial: FrozenTrial) -> str | None:
    """What a failed trial failed with, as the search reports it; None for any other trial (a surplus trial, one
    another worker had already run, is not a failure)."""
    if trial.state != TrialState.FAIL or SURPLUS_ATTR in trial.user_attrs:
        return None
    return f"trial {trial.number}: {trial.user_attrs.get('harness.error', 'interrupted')}"


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


@contextmanager
def registration_claim(study_name: str, total: int, *, storage: str | None = None) -> Iterator[tuple[bool, str]]:
    """`claim_registration` held for the registration that follows it: a registration that fails or is
    interrupted gives the claim back, so the next run of the search (or another worker) registers instead of
    being told that someone else does."""
    storage_url = storage or default_storage()
    claimed, why = claim_registration(study_name, total, storage=storage_url)
    what = _registration_claim_name(study_name, total)
    try:
        yield claimed, why
    except BaseException:
        if claimed:
            _release(storage_url, what)
        raise
    if claimed:
        _claim_done(storage_url, what)


def claim_registration(study_name: str, total: int, *, storage: str | None = None) -> tuple[bool, str]:
    """Whether this worker registers the study's best trial, and why not: only once the study has its `total`
    and no trial runs, and only for the one worker whose claim lands first. The claim is a marker study: the
    storage refuses a second study of the same name atomically, on PostgreSQL as on a journal file. Keyed on the
    total, so extending the study to more trials registers again, once."""
    storage_url = storage or default_storage()
    study = optuna.load_study(study_name=study_name, storage=_storage(storage_url))
    finished, running = _count_finished(study), len(_running(study))
    if finished < total or running:
        return False, (
            f"the study has {finished} of {total} finished trials and {running} running on other workers:"
            " the last worker to finish registers"
        )
    claimed, by = _claim(storage_url, _registration_claim_name(study_name, total), dead_holder_unless_done=True)
    if not claimed:
        return False, (
            f"another worker ({by}) registers the study's best trial at {total} trials"
            " (`harness register` registers it again on purpose)"
        )
    return True, "this worker finished the study last"


def _registration_claim_name(study_name: str, total: int) -> str:
    return f"{study_name}:register:{total}"


def _claim(storage_url: str, what: str, *, dead_holder_unless_done: bool = False) -> tuple[bool, str]:
    """Whether this worker is the one to do `what` for a study, else which worker is: a marker study named after
    it, which the storage creates once (atomically, on a database as on a journal file). With
    `dead_holder_unless_done`, a claim whose worker died on this machine (killed) before marking it done
    (`_claim_done`) is taken over."""
    name = f"{CLAIM_PREFIX}{what}"
    for _ in range(2):
        try:
            marker = optuna.create_study(study_name=name, storage=_storage(storage_url))
        except DuplicatedStudyError:
            attrs = optuna.load_study(study_name=name, storage=_storage(storage_url)).user_attrs
            holder = str(attrs.get("worker"))
            if not (dead_holder_unless_done and not attrs.get("done") and _gone_here(holder, attrs.get("started"))):
                return False, holder
            _release(storage_url, what)
            continue
        marker.set_user_attr("worker", worker_id())
        marker.set_user_attr("started", _process_start(os.getpid()))
        marker.set_user_attr("time", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        return True, worker_id()
    return False, "a worker that claimed it at the same moment"


def _claim_done(storage_url: str, what: str) -> None:
    optuna.load_study(study_name=f"{CLAIM_PREFIX}{what}", storage=_storage(storage_url)).set_user_attr("done", True)


def _release(storage_url: str, what: str) -> None:
    """Give a claim back (its marker study deleted); a claim already given back is no error."""
    with contextlib.suppress(KeyError):
        optuna.delete_study(study_name=f"{CLAIM_PREFIX}{what}", storage=_storage(storage_url))


def study_summary(task: TaskConfig, options: SearchOptions) -> SearchSummary:
    """The ranked results of a study as its workers left them (what `--n-workers` prints at the end)."""
    study_name = _study_name(task, options)
    storage_url = options.storage or default_storage()
    try:
        study = optuna.load_study(study_name=study_name, storage=_storage(storage_url))
        parent_run_id = str(study.user_attrs[PARENT_RUN_ATTR])
    except KeyError:
        raise HarnessError(
            f"study {study_name!r} in {without_password(storage_url)} was not started: see the workers' errors above"
        ) from None
    return _summarise(study, task, storage_url, parent_run_id, log=False)


def _study_name(task: TaskConfig, options: SearchOptions) -> str:
    return options.study_name or f"{task.task.name}-{options.profile}"


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class StudyTrial:
    """A finished trial as registration needs it: which study, its params, value and MLflow run."""

    study_name: str
    number: int
    params: dict[str, Any]
    value: float
    mlflow_run_id: str


def default_storage() -> str:
    """`<mlruns>/optuna-journal.log`: a JournalStorage file several local processes can share (SQLite cannot take
    concurrent writers). A store made before harness used it, `<mlruns>/optuna.db`, is still read."""
    journal, legacy = tracking.mlruns_dir() / "optuna-journal.log", tracking.mlruns_dir() / "optuna.db"
    return f"sqlite:///{legacy}" if legacy.exists() and not journal.exists() else str(journal)


def is_journal(storage_url: str) -> bool:
    """A storage without a URL scheme is a journal file path (as optuna-dashboard reads it too)."""
    return "://" not in storage_url


def find_trial(study_name: str, *, storage: str | None = None, number: int | None = None) -> StudyTrial:
    """A study's best complete trial, or the trial numbered `number`; a clear error when there is none."""
    storage_url = storage or default_storage()
    try:
        study = optuna.load_study(study_name=study_name, storage=_storage(storage_url))
    except KeyError:
        known = [n for n in optuna.get_all_study_names(storage=_storage(storage_url)) if not n.startswith(CLAIM_PREFIX)]
        raise HarnessError(
            f"no study {study_name!r} in {without_password(storage_url)}; studies there:"
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


def _open_study(
    task: TaskConfig,
    options: SearchOptions,
    study_name: str,
    storage_url: str,
    base_config: TrialConfig,
    total_steps: int,
) -> tuple[optuna.Study, BaseStorage, bool]:
    """The study, its storage, and whether this worker created it (exactly one worker does: the storage refuses a
    second study of the same name)."""
    _check_seed_in_space(task)
    storage = _storage(storage_url, _FailRunThenRetry(task.task.name, "worker stopped sending heartbeats"))
    # Every trial re-seeds the sampler before its first draw (see `_objective`).
    sampler = _sampler(options, seed=options.seed)
    pruner = _pruner(options, task, total_steps)
    try:
        study = optuna.create_study(
            study_name=study_name,
            storage=storage,
            sampler=sampler,
            pruner=pruner,
            direction=task.search.objective.direction,
        )
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
        study.set_user_attr("harness.task", task.task.name)
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
        and _claim(storage_url, f"{study_name}:seed-after-{seed_trials[-1].number}")[0]
    ):
        study.enqueue_trial(_seed_params(task), user_attrs={"harness.seed_recipe": True})
    return study, storage, created


def _storage(
    storage_url: str, on_stale_trial: Callable[[optuna.Study, FrozenTrial], None] | None = None
) -> BaseStorage:
    if is_journal(storage_url):
        Path(storage_url).parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(storage_url))
    if storage_url.startswith("sqlite:"):
        engine: dict[str, Any] = {}
    else:
        # Trials run for minutes to hours between writes: test pooled connections before use.
        engine = {"pool_pre_ping": True}
    for attempt in range(SCHEMA_ATTEMPTS):
        try:
            return RDBStorage(
                storage_url,
                engine_kwargs=engine,
                heartbeat_interval=HEARTBEAT_SECONDS,
                grace_period=2 * HEARTBEAT_SECONDS,
                heartbeat_stale_trial_callback=on_stale_trial,
            )
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError) as error:
            # Workers starting together on an empty database race to create Optuna's tables; the losers find
            # them made a moment later.
            if attempt == SCHEMA_ATTEMPTS - 1:
                raise _storage_error(storage_url, error) from None
            time.sleep(1 + attempt)
        except Exception as error:  # SQLAlchemy's and the driver's errors: a wrong URL, host, password or database
            raise _storage_error(storage_url, error) from None
    raise AssertionError("unreachable")


def _storage_error(storage_url: str, error: Exception) -> HarnessError:
    return HarnessError(
        f"cannot open the Optuna storage {without_password(storage_url)}: {type(error).__name__}:"
        f" {str(error).splitlines()[0] if str(error) else ''}\n"
        "Expected a database URL (postgresql://USER:PASS@HOST:PORT/DB, sqlite:///PATH) or a journal file path."
    )


def _study_run(study: optuna.Study, created: bool, task: TaskConfig, storage_url: str, *, tags: dict[str, str]) -> str:
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
        if time.monotonic() > deadline and _claim(storage_url, f"{study.study_name}:parent-run")[0]:
            break
        time.sleep(POLL_SECONDS)
    run_id = tracking.create_study_run(task.task.name, study.study_name, tags=tags)
    study.set_user_attr(PARENT_RUN_ATTR, run_id)
    return run_id


def _running(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))


def _wait_for_room(
    study: optuna.Study, storage: BaseStorage, task: TaskConfig, total: int, deadline: float | None
) -> bool:
    """Whether this worker should start a trial: the study lacks finished trials that no running trial will
    supply. While every missing trial runs on another worker, wait: if one of those workers dies, its trial is
    failed and queued again, and this worker runs it. False once the study has its total (or time is up)."""
    while True:
        _fail_dead_workers(study, storage, task)
        finished = _count_finished(study)
        if finished >= total:
            return False
        if finished + len(_running(study)) < total:
            return True
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(POLL_SECONDS)


def _fail_dead_workers(
    study: optuna.Study, storage: BaseStorage, task: TaskConfig, *, dead: frozenset[str] = frozenset()
) -> None:
    """Fail and queue again the running trials whose worker is gone: by Optuna's heartbeats on a database; on a
    journal file (no heartbeats; its workers share one machine) by whether the worker's process still exists;
    `dead` names workers known to be gone (a local pool's children). A trial no worker took up is gone too."""
    if isinstance(storage, RDBStorage):
        optuna.storages.fail_stale_trials(study)
    now = datetime.now()  # Optuna's trial times are naive local times
    for trial in _running(study):
        worker = trial.user_attrs.get(WORKER_ATTR)
        if worker is None:
            started = trial.datetime_start or now
            if (now - started).total_seconds() > ORPHAN_SECONDS:
                _fail_and_retry(study, storage, task, trial, "no worker took the trial up")
        elif worker in dead or (
            not isinstance(storage, RDBStorage) and _gone_here(str(worker), trial.user_attrs.get(WORKER_STARTED_ATTR))
        ):
            _fail_and_retry(study, storage, task, trial, f"worker {worker} died")


def _gone_here(worker: str, started: str | None) -> bool:
    """Whether `worker` (host:pid, as `worker_id` names it) ran on this machine and its process is gone."""
    host, _, pid = worker.rpartition(":")
    return host == socket.gethostname() and pid.isdigit() and not _process_exists(int(pid), started)


def _fail_and_retry(
    study: optuna.Study, storage: BaseStorage, task: TaskConfig, trial: FrozenTrial, reason: str
) -> None:
    trial_id = storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name(study.study_name), trial.number
    )
    try:
        if not storage.set_trial_state_values(trial_id, TrialState.FAIL):
            return
    except UpdateFinishedTrialError:
        return  # another worker failed it first
    _FailRunThenRetry(task.task.name, reason)(study, storage.get_trial(trial_id))


def close_study(task: TaskConfig, options: SearchOptions, *, dead_pids: set[int]) -> None:
    """After a local pool's workers have all stopped: fail the trials its dead workers left RUNNING (queued
    again for the next run) and end the study's run if no trial runs anywhere."""
    study_name = _study_name(task, options)
    storage = _storage(options.storage or default_storage())
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        return  # the workers never got as far as creating it
    host = socket.gethostname()
    _fail_dead_workers(study, storage, task, dead=frozenset(f"{host}:{pid}" for pid in dead_pids))
    parent_run_id = study.user_attrs.get(PARENT_RUN_ATTR)
    if parent_run_id and not _running(study):
        complete = _count_finished(study) >= options.trials
        tracking.end_run_if_running(str(parent_run_id), "FINISHED" if complete else "KILLED")


def _is_surplus(study: optuna.Study, number: int, total: int) -> bool:
    """Whether trial `number` is one the study does not need: the finished trials and those started before it
    already make the total (two workers that found room at the same moment both started one)."""
    started_before = [t for t in _running(study) if t.number < number]
    return _count_finished(study) + len(started_before) >= total


def _process_start(pid: int) -> str | None:
    """A process's start time in clock ticks since boot (Linux /proc), or None where there is no /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _process_exists(pid: int, started: str | None = None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process
    return started is None or _process_start(pid) in (None, started)


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


def _digest(examples: list[Any]) -> str:
    text = json.dumps([[e.id, e.text, e.fields] for e in examples], sort_keys=True, ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _short(value: Any, limit: int = 160) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 1] + "…"


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


def _sampler(options: SearchOptions, *, seed: int) -> optuna.samplers.BaseSampler:
    if options.sampler == "tpe":
        # Constant liar: concurrent workers do not all sample the same point while trials are running.
        return optuna.samplers.TPESampler(multivariate=True, group=True, seed=seed, constant_liar=True)
    if options.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if options.sampler == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    raise HarnessError(f"unknown sampler {options.sampler!r}; expected tpe, random or gp")


def _pruner(options: SearchOptions, task: TaskConfig, total_steps: int) -> optuna.pruners.BasePruner:
    """The pruner; every one of them sees the validation loss at the same rungs (`PruningSpec.rung_steps`)."""
    rungs = task.search.pruning.rung_steps(total_steps)
    first, factor = (rungs[0] if rungs else total_steps), task.search.pruning.reduction_factor
    if options.pruner == "none":
        return optuna.pruners.NopPruner()
    if options.pruner == "halving":
        # Asynchronous successive halving: a trial goes on past a rung when it is in the best 1/factor of the
        # trials that reached that rung so far.
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=first, reduction_factor=factor)
    if options.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=first, max_resource=total_steps, reduction_factor=factor)
    if options.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    raise HarnessError(f"unknown pruner {options.pruner!r}; expected halving, hyperband, median or none")


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

    def on_train_begin(self, total_steps: int) -> None:
        self.progress.current_total_steps = total_steps

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

    def on_train_end(self) -> None:
        pass


def _objective(
    task: TaskConfig,
    base: TrialConfig,
    options: SearchOptions,
    parent_run_id: str,
    progress: SearchProgress,
    on_progress: Callable[[SearchProgress], None] | None,
    rungs: tuple[int, ...],
) -> Callable[[optuna.Trial], float]:
    metric = task.search.objective.metric
    maximize = task.search.objective.direction == "maximize"

    def notify() -> None:
        if on_progress:
            on_progress(progress)

    def objective(trial: optuna.Trial) -> float:
        # First: a trial without its worker's name cannot be found dead (until ORPHAN_SECONDS have passed).
        trial.set_user_attr(WORKER_ATTR, worker_id())
        trial.set_user_attr(WORKER_STARTED_ATTR, _process_start(os.getpid()))
        if _is_surplus(trial.study, trial.number, options.trials):
            trial.set_user_attr(SURPLUS_ATTR, "another worker started the study's last missing trial first")
            raise _SurplusTrial(f"trial {trial.number} is not needed: the study has its {options.trials} trials")
        # Each trial draws from a seed of its own: workers sharing a study never repeat each other's random draws
        # (same-seeded samplers would), and a one-worker study stays reproducible.
        trial.study.sampler = _sampler(options, seed=options.seed + trial.number)
        params = _suggest(trial, task)
        progress.current_trial, progress.current_params, progress.current_step = trial.number, params, 0
        notify()
        config = resolve_trial_config(task, profile=base.profile, model=base.model, overrides=params)
        reporter = _PruningReporter(trial, maximize, progress, notify)
        tags = {
            "harness.study": trial.study.study_name,
            "harness.trial_number": str(trial.number),
            "harness.worker": worker_id(),
        }
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
            reason = tracking.describe_failure(error) or f"{type(error).__name__}: {error}"
            trial.set_user_attr("harness.error", reason[:1000])
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
    forecast: estimates.Forecast,
    total_steps: int,
) -> None:
    progress.finished = _count_finished(study)
    progress.current_trial = None
    if trial.state in FINISHED_STATES and trial.datetime_start and trial.datetime_complete:
        complete = trial.state == TrialState.COMPLETE
        forecast.trial_finished(
            seconds=(trial.datetime_complete - trial.datetime_start).total_seconds(),
            steps=total_steps if complete else (trial.last_step or total_steps),
            complete=complete,
        )
    if reason := _failure(trial):
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
    if on_progress:
        on_progress(progress)


def _update_best(study: optuna.Study, progress: SearchProgress) -> None:
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    if complete:
        best = study.best_trial
        progress.best_value, progress.best_trial = best.value, best.number


def _count_finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED_STATES))


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


def _summarise(
    study: optuna.Study, task: TaskConfig, storage_url: str, parent_run_id: str, *, log: bool = True
) -> SearchSummary:
    metric, direction = task.search.objective.metric, task.search.objective.direction
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
                "adapter_dir": trial.user_attrs.get("adapter_dir"),
                **{f"param.{k}": v for k, v in trial.params.items()},
                **{k: v for k, v in (trial.user_attrs.get("metrics") or {}).items() if k != metric},
            }
        )
    complete = [r for r in rows if r["state"] == "COMPLETE"]
    complete.sort(key=lambda r: r[metric], reverse=direction == "maximize")
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


PLOTS = ("optimization_history", "param_importances", "parallel_coordinate", "slice")


def _log_study_plots(study: optuna.Study, parent_run_id: str) -> None:
    """Optuna's plots of the study on its parent run: interactive HTML (plotly) and PNG (matplotlib)."""
    import tempfile

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


class _SurplusTrial(Exception):
    """Raised before a trial the study does not need does anything: it ends FAIL, unlogged, and is not retried."""


class _FailRunThenRetry:
    """A failed trial whose worker is gone: fail its MLflow run, then queue it again (Optuna's retry callback)."""

    def __init__(self, task_name: str, reason: str) -> None:
        self.task_name = task_name
        self.reason = reason
        self.retry = RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES)

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        # The retry first: it is what the study cannot lose. It copies the trial's attributes, but not the dead
        # worker's name and run, which stay the failed trial's.
        retried = copy.deepcopy(trial)
        retried.user_attrs = {
            k: v for k, v in trial.user_attrs.items() if k not in (*WORKER_ATTRS, MLFLOW_RUN_ATTR, "harness.error")
        }
        self.retry(study, retried)
        run_id = trial.user_attrs.get(MLFLOW_RUN_ATTR)
        if run_id:
            try:
                tracking.fail_run(run_id, f"{self.reason}; trial {trial.number} failed and retried")
            except Exception as error:  # the tracking server may be down: the trial is retried all the same
                warnings.warn(f"could not mark MLflow run {run_id} FAILED: {error}", stacklevel=1)
