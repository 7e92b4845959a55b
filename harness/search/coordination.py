"""Workers sharing one study: who runs what, who is gone, and claims that exactly one worker wins.

A worker is a process, named `host:pid` (`worker_id`); each trial records its worker and that process's start
time, so a trial whose worker died is failed and queued again (Optuna's retry callback): on a database by
Optuna's heartbeats, on a journal file (its workers share one machine) by whether the process still exists. A
worker starts a trial only while the study lacks finished trials no running trial will supply, and a trial two
workers started for the same last slot ends as surplus.

Claims ("only one of us evaluates zero-shot / creates the parent run / registers") are rows of a table of their
own in the study's database, or files created exclusively beside the journal file: atomic on both, and not
studies, so no study list (Optuna's, optuna-dashboard's) shows them.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import json
import os
import socket
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import filelock
import optuna
import psutil
import sqlalchemy
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from harness import retries, tracking
from harness.search.storage import HEARTBEAT_SECONDS, default_storage, is_journal, open_storage

FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED)
MAX_RETRIES = 2  # a trial whose worker died is queued again at most this often
MLFLOW_RUN_ATTR = "mlflow_run_id"
WORKER_ATTR = "harness.worker"  # host:pid of the process running the trial
WORKER_STARTED_ATTR = "harness.worker_started"  # that process's start time: a reused pid is not taken for it
WORKER_ATTRS = (WORKER_ATTR, WORKER_STARTED_ATTR)
SURPLUS_ATTR = "harness.surplus"
# How often a waiting worker looks at the study.
POLL_SECONDS = float(os.environ.get("HARNESS_POLL_SECONDS", "2"))
# A RUNNING trial that no worker took up within this (interrupted between its creation and its first line) is dead.
ORPHAN_SECONDS = 2 * HEARTBEAT_SECONDS
LEGACY_CLAIM_PREFIX = "harness-claim:"  # claims were marker studies before they had a store of their own
STUDY_UID_ATTR = "harness.study_uid"  # set when a study is created: what its claims are keyed on

# The retry callback is marked experimental; every worker would print so on every start.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def count_finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED_STATES))


def running_trials(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))


def mark_trial_taken(trial: optuna.Trial) -> None:
    """Record this worker on the trial: the first thing a trial does, since one without a worker cannot be found
    dead (until ORPHAN_SECONDS have passed)."""
    trial.set_user_attr(WORKER_ATTR, worker_id())
    trial.set_user_attr(WORKER_STARTED_ATTR, process_start(os.getpid()))


def wait_for_room(study: optuna.Study, storage: BaseStorage, total: int, deadline: float | None) -> bool:
    """Whether this worker should start a trial: the study lacks finished trials that no running trial will
    supply. While every missing trial runs on another worker, wait: if one of those workers dies, its trial is
    failed and queued again, and this worker runs it. False once the study has its total (or time is up)."""
    while True:
        fail_dead_workers(study, storage)
        finished = count_finished(study)
        if finished >= total:
            return False
        if finished + len(running_trials(study)) < total:
            return True
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(POLL_SECONDS)


def is_surplus(study: optuna.Study, number: int, total: int) -> bool:
    """Whether trial `number` is one the study does not need: the finished trials and those started before it
    already make the total (two workers that found room at the same moment both started one)."""
    started_before = [t for t in running_trials(study) if t.number < number]
    return count_finished(study) + len(started_before) >= total


class SurplusTrial(Exception):
    """Raised before a trial the study does not need does anything: it ends FAIL, unlogged, and is not retried."""


def fail_dead_workers(study: optuna.Study, storage: BaseStorage, *, dead: frozenset[str] = frozenset()) -> None:
    """Fail and queue again the running trials whose worker is gone: by Optuna's heartbeats on a database; on a
    journal file (no heartbeats; its workers share one machine) by whether the worker's process still exists;
    `dead` names workers known to be gone (a local pool's children). A trial no worker took up is gone too."""
    if isinstance(storage, RDBStorage):
        optuna.storages.fail_stale_trials(study)
    now = datetime.now()  # Optuna's trial times are naive local times
    for trial in running_trials(study):
        worker = trial.user_attrs.get(WORKER_ATTR)
        if worker is None:
            started = trial.datetime_start or now
            if (now - started).total_seconds() > ORPHAN_SECONDS:
                _fail_and_retry(study, storage, trial, "no worker took the trial up")
        elif worker in dead or (
            not isinstance(storage, RDBStorage) and gone_here(str(worker), trial.user_attrs.get(WORKER_STARTED_ATTR))
        ):
            _fail_and_retry(study, storage, trial, f"worker {worker} died")


def _fail_and_retry(study: optuna.Study, storage: BaseStorage, trial: FrozenTrial, reason: str) -> None:
    trial_id = storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name(study.study_name), trial.number
    )
    try:
        if not storage.set_trial_state_values(trial_id, TrialState.FAIL):
            return
    except UpdateFinishedTrialError:
        return  # another worker failed it first
    FailRunThenRetry(reason)(study, storage.get_trial(trial_id))


class FailRunThenRetry:
    """A failed trial whose worker is gone: fail its MLflow run, then queue it again (Optuna's retry callback)."""

    def __init__(self, reason: str) -> None:
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


def gone_here(worker: str, started: str | None) -> bool:
    """Whether `worker` (host:pid, as `worker_id` names it) ran on this machine and its process is gone."""
    host, _, pid = worker.rpartition(":")
    return host == socket.gethostname() and pid.isdigit() and not _process_exists(int(pid), started)


def process_start(pid: int) -> str | None:
    """When a process started (seconds since the epoch, as psutil reads it), or None if there is no such process:
    with the pid it names the process, since a pid is reused once its process is gone."""
    try:
        return f"{psutil.Process(pid).create_time():.2f}"
    except psutil.Error:
        return None


def _process_exists(pid: int, started: str | None = None) -> bool:
    if not psutil.pid_exists(pid):
        return False
    return started is None or process_start(pid) in (None, started)


# --- claims --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """Who holds a claim: the worker, its process start time, when, and whether it did what it claimed."""

    worker: str
    started: str | None
    time: str
    done: bool = False


def claim(storage_url: str, study: optuna.Study, what: str, *, take_over_dead_holder: bool = False) -> tuple[bool, str]:
    """Whether this worker is the one to do `what` for `study`, else which worker is. Atomic: of workers claiming
    at once, on any number of machines, one wins. With `take_over_dead_holder`, a claim whose worker died on this
    machine before marking it done (`claim_done`) is taken over."""
    store = _claim_store(storage_url)
    key = _claim_key(storage_url, study, what)
    if legacy := _legacy_claim_holder(storage_url, study, what, take_over_dead_holder=take_over_dead_holder):
        return False, legacy
    for _ in range(2):
        mine = Claim(worker_id(), process_start(os.getpid()), time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        holder = store.create(key, mine)
        if holder is None:
            return True, mine.worker
        if not (take_over_dead_holder and not holder.done and gone_here(holder.worker, holder.started)):
            return False, holder.worker
        store.delete(key, holder)  # only if the dead holder still holds it; then the exclusive create decides
    return False, "a worker that claimed it at the same moment"


def claim_done(storage_url: str, study: optuna.Study, what: str) -> None:
    _claim_store(storage_url).mark_done(_claim_key(storage_url, study, what))


def release_claim(storage_url: str, study: optuna.Study, what: str) -> None:
    """Give a claim back; one already given back is no error."""
    store = _claim_store(storage_url)
    key = _claim_key(storage_url, study, what)
    if holder := store.read(key):
        store.delete(key, holder)


@contextmanager
def held_claim(storage_url: str, study: optuna.Study, what: str) -> Iterator[tuple[bool, str]]:
    """`claim` (dead holders taken over) held for the work that follows: work that fails or is interrupted gives
    the claim back, so the next run (or another worker) does it instead of being told someone else does."""
    claimed, holder = claim(storage_url, study, what, take_over_dead_holder=True)
    try:
        yield claimed, holder
    except BaseException:
        if claimed:
            release_claim(storage_url, study, what)
        raise
    if claimed:
        claim_done(storage_url, study, what)


def _claim_key(storage_url: str, study: optuna.Study, what: str) -> str:
    # The study's own uid (`open_study` sets it at creation): a study deleted and made again under the same name
    # starts without the old one's claims (SQLite even reuses a deleted study's id). Older studies have their id.
    uid = study.user_attrs.get(STUDY_UID_ATTR)
    if uid is None:
        uid = f"id{open_storage(storage_url).get_study_id_from_name(study.study_name)}"
    return f"{study.study_name}#{uid}:{what}"


def _legacy_claim_holder(storage_url: str, study: optuna.Study, what: str, *, take_over_dead_holder: bool) -> str:
    """The holder of a claim made as a marker study (harness before claims had their own store), if any."""
    name = f"{LEGACY_CLAIM_PREFIX}{study.study_name}:{what}"
    storage = open_storage(storage_url)
    if name not in optuna.get_all_study_names(storage=storage):
        return ""
    attrs = optuna.load_study(study_name=name, storage=storage).user_attrs
    holder = str(attrs.get("worker"))
    if take_over_dead_holder and not attrs.get("done") and gone_here(holder, attrs.get("started")):
        with contextlib.suppress(KeyError):
            optuna.delete_study(study_name=name, storage=storage)
        return ""
    return holder


class _ClaimFiles:
    """Claims beside a journal file (its workers share one machine): one file each, written whole and then linked
    into place (link() is an exclusive create: of workers claiming at once one wins, and no claim is ever seen
    half-written); taking over or marking done happens under a lock of the claims directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, key: str) -> Path:
        return self.directory / (hashlib.sha256(key.encode()).hexdigest()[:32] + ".json")

    def create(self, key: str, claim: Claim) -> Claim | None:
        self.directory.mkdir(parents=True, exist_ok=True)
        temporary = self.directory / f".{uuid.uuid4().hex}.tmp"
        temporary.write_text(json.dumps({"key": key, **asdict(claim)}))
        try:
            os.link(temporary, self._path(key))
        except FileExistsError:
            return self.read(key) or Claim("a worker that claimed it at the same moment", None, "")
        finally:
            temporary.unlink()
        return None

    def read(self, key: str) -> Claim | None:
        try:
            data = json.loads(self._path(key).read_text())
        except FileNotFoundError:
            return None
        return Claim(data["worker"], data["started"], data["time"], data["done"])

    def mark_done(self, key: str) -> None:
        with self._locked():
            holder = self.read(key)
            if holder:
                temporary = self.directory / f".{uuid.uuid4().hex}.tmp"
                temporary.write_text(json.dumps({"key": key, **asdict(holder), "done": True}))
                os.replace(temporary, self._path(key))

    def delete(self, key: str, holder: Claim) -> None:
        """Delete the claim if `holder` still holds it: of workers taking over one dead holder at once, none
        deletes the claim another has just made in its place."""
        with self._locked():
            current = self.read(key)
            if current is not None and _same_claimant(current, holder):
                self._path(key).unlink()

    def _locked(self) -> filelock.FileLock:
        self.directory.mkdir(parents=True, exist_ok=True)
        return filelock.FileLock(self.directory / ".lock")


def _same_claimant(a: Claim, b: Claim) -> bool:
    return (a.worker, a.started, a.time) == (b.worker, b.started, b.time)


_METADATA = sqlalchemy.MetaData()
_CLAIMS = sqlalchemy.Table(
    "harness_claims",
    _METADATA,
    sqlalchemy.Column("key", sqlalchemy.String(512), primary_key=True),
    sqlalchemy.Column("worker", sqlalchemy.String(512), nullable=False),
    sqlalchemy.Column("started", sqlalchemy.String(64)),
    sqlalchemy.Column("time", sqlalchemy.String(64), nullable=False),
    sqlalchemy.Column("done", sqlalchemy.Boolean, nullable=False, default=False),
)


class _ClaimTable:
    """Claims in the study's database: a table of their own (`harness_claims`), a claim a row whose key is unique."""

    def __init__(self, engine: sqlalchemy.Engine) -> None:
        self.engine = engine

    def create(self, key: str, claim: Claim) -> Claim | None:
        try:
            with self.engine.begin() as connection:
                connection.execute(_CLAIMS.insert().values(key=key, **asdict(claim)))
        except sqlalchemy.exc.IntegrityError:
            return self.read(key) or Claim("a worker that claimed it at the same moment", None, "")
        return None

    def read(self, key: str) -> Claim | None:
        with self.engine.connect() as connection:
            row = connection.execute(sqlalchemy.select(_CLAIMS).where(_CLAIMS.c.key == key)).first()
        return None if row is None else Claim(row.worker, row.started, row.time, bool(row.done))

    def mark_done(self, key: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(_CLAIMS.update().where(_CLAIMS.c.key == key).values(done=True))

    def delete(self, key: str, holder: Claim) -> None:
        with self.engine.begin() as connection:  # this holder's row only: a newer claim is not someone's to delete
            connection.execute(
                _CLAIMS.delete().where(
                    _CLAIMS.c.key == key,
                    _CLAIMS.c.worker == holder.worker,
                    _CLAIMS.c.started.is_not_distinct_from(holder.started),
                    _CLAIMS.c.time == holder.time,
                )
            )


@functools.cache
def _claim_store(storage_url: str) -> _ClaimFiles | _ClaimTable:
    if is_journal(storage_url):
        return _ClaimFiles(Path(f"{storage_url}.claims"))
    engine = sqlalchemy.create_engine(storage_url, pool_pre_ping=not storage_url.startswith("sqlite:"))
    # Workers starting together race to create the table; the losers find it made a moment later.
    for attempt in retries.attempts(retry_on=(sqlalchemy.exc.SQLAlchemyError,), tries=3, wait_growth=1.0):
        with attempt:
            _METADATA.create_all(engine, checkfirst=True)
    return _ClaimTable(engine)


# --- the registration after a search ---------------------------------------------------------------------------


@contextmanager
def registration_claim(study_name: str, total: int, *, storage: str | None = None) -> Iterator[tuple[bool, str]]:
    """`claim_registration` held for the registration that follows it: a registration that fails or is
    interrupted gives the claim back, so the next run of the search (or another worker) registers instead of
    being told that someone else does."""
    storage_url = storage or default_storage()
    study = optuna.load_study(study_name=study_name, storage=open_storage(storage_url))
    if not (ready := _ready_to_register(study, total))[0]:
        yield ready
        return
    with held_claim(storage_url, study, f"register:{total}") as (claimed, holder):
        yield (True, "this worker finished the study last") if claimed else (False, _registered_by(holder, total))


def claim_registration(study_name: str, total: int, *, storage: str | None = None) -> tuple[bool, str]:
    """Whether this worker registers the study's best trial, and why not: only once the study has its `total`
    and no trial runs, and only for the one worker whose claim lands first. Keyed on the total, so extending the
    study to more trials registers again, once."""
    storage_url = storage or default_storage()
    study = optuna.load_study(study_name=study_name, storage=open_storage(storage_url))
    if not (ready := _ready_to_register(study, total))[0]:
        return ready
    claimed, holder = claim(storage_url, study, f"register:{total}", take_over_dead_holder=True)
    return (True, "this worker finished the study last") if claimed else (False, _registered_by(holder, total))


def _ready_to_register(study: optuna.Study, total: int) -> tuple[bool, str]:
    finished, running = count_finished(study), len(running_trials(study))
    if finished < total or running:
        return False, (
            f"the study has {finished} of {total} finished trials and {running} running on other workers:"
            " the last worker to finish registers"
        )
    return True, ""


def _registered_by(holder: str, total: int) -> str:
    return (
        f"another worker ({holder}) registers the study's best trial at {total} trials"
        " (`harness register` registers it again on purpose)"
    )
