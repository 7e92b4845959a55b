"""Where runs are stored: `<mlruns>` and the tracking URI (SQLite by default, a team's server over HTTP), one
experiment per task, and what a failing store means in one line."""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import mlflow

from harness.errors import HarnessError, causes, describe_machine_failure, without_password

SYSTEM_METRICS_INTERVAL_SECONDS = 2
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


def mlruns_dir() -> Path:
    return Path(os.environ.get("HARNESS_MLRUNS") or "mlruns").resolve()


def default_tracking_uri() -> str:
    return f"sqlite:///{mlruns_dir() / 'mlflow.db'}"


def configure(tracking_uri: str | None = None) -> str:
    """Point MLflow at the tracking store (default `<mlruns>/mlflow.db`); returns the URI in use. Not from
    MLFLOW_TRACKING_URI: MLflow sets that variable itself, so a child process would inherit its parent's store."""
    uri = tracking_uri or default_tracking_uri()
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    if uri.startswith(("http://", "https://")):
        _check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_system_metrics_sampling_interval(SYSTEM_METRICS_INTERVAL_SECONDS)
    mlflow.set_system_metrics_samples_before_logging(1)
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # not a line per system-metrics start and stop
    # Logging a merged model, MLflow looks for a model card and a licence on the hub under the local path it was
    # given, and warns that it found none: nothing to act on (the base model's licence is the user's to know).
    logging.getLogger("mlflow.transformers").setLevel(logging.ERROR)
    return uri


def _check_reachable(uri: str) -> None:
    """A tracking server nobody answers at is a clear error before anything starts, not minutes of retries."""
    try:
        urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=10).close()
    except urllib.error.HTTPError:
        pass  # it answers (a proxy in front may want credentials for /health)
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise HarnessError(
            f"the MLflow tracking server at {without_password(uri)} is not reachable ({reason}): start it"
            " (`harness server`, see the README's team set-up) or correct --tracking-uri"
        ) from None


def describe_failure(error: BaseException) -> str | None:
    """A failure of the machine or of the tracking store as one line saying what failed and what to do; None for
    anything else (a bug keeps its traceback)."""
    machine = describe_machine_failure(error)
    if machine:
        return machine
    store = without_password(mlflow.get_tracking_uri())
    text = " | ".join(str(cause) for cause in causes(error))
    if "database is locked" in text:
        return (
            f"the tracking store {store} stayed locked by another process (database is locked): let it"
            " finish, or give processes that write at once a tracking server (`harness server`) instead of one"
            " SQLite file"
        )
    server = urllib.parse.urlsplit(mlflow.get_tracking_uri())
    unanswered = re.search(r"Max retries exceeded|Connection refused|Failed to establish a new connection", text)
    # Only when the failing URL is the tracking server's (a model hub that cannot be reached is another matter).
    if (
        server.scheme in ("http", "https")
        and unanswered
        and f"port={server.port or (443 if server.scheme == 'https' else 80)}" in text.replace(" ", "")
    ):
        return (
            f"the MLflow tracking server at {store} stopped answering: check that it runs (`harness server`),"
            " then run the same command again (a search resumes)"
        )
    return None


def experiment_for(task_name: str) -> str:
    """One experiment per task, created on first use with its artifacts under `<mlruns>/artifacts/<task>`."""
    experiment = mlflow.get_experiment_by_name(task_name)
    if experiment is not None:
        return str(experiment.experiment_id)
    uri = mlflow.get_tracking_uri()
    location = (mlruns_dir() / "artifacts" / task_name).as_uri() if uri.startswith("sqlite:") else None
    try:
        # The tag MLflow's UI reads to show a model-training experiment (runs with metric columns), not a GenAI one.
        return str(mlflow.create_experiment(task_name, artifact_location=location, tags=EXPERIMENT_KIND))
    except mlflow.exceptions.MlflowException:
        # Another worker of the same study created it a moment ago.
        experiment = mlflow.get_experiment_by_name(task_name)
        if experiment is None:
            raise
        return str(experiment.experiment_id)


def tracking_uri() -> str:
    """The tracking store this process uses (`configure` set it), for a process that must use the same."""
    return mlflow.get_tracking_uri()


# What MLflow imports at a process's first run rather than at `import mlflow` (its database store, schema
# migrations, system metrics): about 2 s, which every trial's process would pay again.
FIRST_RUN_MODULES = (
    "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.store.tracking.sqlalchemy_workspace_store",
    "mlflow.store.model_registry.sqlalchemy_store",
    "mlflow.store.db.utils",
    "mlflow.system_metrics.system_metrics_monitor",
    "mlflow.utils.git_utils",
    "git",  # GitPython, for the source commit MLflow tags each run with
    "alembic.config",
    "sqlalchemy.dialects.sqlite",
)


def import_first_run_modules() -> None:
    """Import what MLflow would import at the first run, for a process that forks processes which track runs."""
    for name in FIRST_RUN_MODULES:
        with contextlib.suppress(ImportError):  # internals: a module that moved costs time, not correctness
            importlib.import_module(name)
