"""Opening an Optuna storage: a journal file (several local processes), SQLite (one process) or a database URL
(PostgreSQL: many machines), with errors that say what was expected; and the default one under `<mlruns>`."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy.exc
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import FrozenTrial

from harness import retries, tracking
from harness.errors import HarnessError, without_password

# A worker that dies leaves its trial RUNNING; on a database, without a heartbeat for two of these it is failed.
HEARTBEAT_SECONDS = int(os.environ.get("HARNESS_HEARTBEAT_SECONDS", "30"))
SCHEMA_ATTEMPTS = 5  # workers starting together on an empty database race to create Optuna's tables

# Optuna logs each failed trial with its traceback; harness reports failures itself (progress, MLflow, user attrs).
optuna.logging.set_verbosity(optuna.logging.ERROR)


def default_storage() -> str:
    """`<mlruns>/optuna-journal.log`: a JournalStorage file several local processes can share (SQLite cannot take
    concurrent writers). A store made before harness used it, `<mlruns>/optuna.db`, is still read."""
    journal, legacy = tracking.mlruns_dir() / "optuna-journal.log", tracking.mlruns_dir() / "optuna.db"
    return f"sqlite:///{legacy}" if legacy.exists() and not journal.exists() else str(journal)


def is_journal(storage_url: str) -> bool:
    """A storage without a URL scheme is a journal file path (as optuna-dashboard reads it too)."""
    return "://" not in storage_url


def open_storage(
    storage_url: str, on_stale_trial: Callable[[optuna.Study, FrozenTrial], None] | None = None
) -> BaseStorage:
    """The storage at `storage_url`; on a database, `on_stale_trial` is called for a trial whose worker stopped
    sending heartbeats."""
    if is_journal(storage_url):
        Path(storage_url).parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(storage_url))
    if storage_url.startswith("sqlite:"):
        engine: dict[str, Any] = {}
    else:
        # Trials run for minutes to hours between writes: test pooled connections before use.
        engine = {"pool_pre_ping": True}
    # The losers of the race to create Optuna's tables find them made a moment later.
    race = (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError)
    try:
        for attempt in retries.attempts(retry_on=race, tries=SCHEMA_ATTEMPTS, wait_growth=1.0):
            with attempt:
                return RDBStorage(
                    storage_url,
                    engine_kwargs=engine,
                    heartbeat_interval=HEARTBEAT_SECONDS,
                    grace_period=2 * HEARTBEAT_SECONDS,
                    heartbeat_stale_trial_callback=on_stale_trial,
                )
    except Exception as error:  # SQLAlchemy's and the driver's errors: a wrong URL, host, password or database
        raise storage_error(storage_url, error) from None
    raise AssertionError("unreachable: the last attempt returns or raises")


def storage_error(storage_url: str, error: Exception) -> HarnessError:
    return HarnessError(
        f"cannot open the Optuna storage {without_password(storage_url)}: {type(error).__name__}:"
        f" {str(error).splitlines()[0] if str(error) else ''}\n"
        "Expected a database URL (postgresql://USER:PASS@HOST:PORT/DB, sqlite:///PATH) or a journal file path."
    )
