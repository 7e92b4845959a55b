"""MLflow servers harness starts: the UI over the store a search wrote, a team's tracking server, and the page
that ranks a task's runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from harness import processes
from harness.errors import HarnessError
from harness.tracking.store import EXPERIMENT_KIND, mlruns_dir

UI_STARTUP_SECONDS = 120


def start_mlflow_server(
    host: str,
    port: int,
    log_path: Path,
    *,
    backend_store_uri: str | None = None,
    artifacts_destination: str | None = None,
    workers: int = 1,
) -> subprocess.Popen[bytes]:
    """Start `mlflow server` and wait until it answers; the caller stops it (`stop_mlflow_server`).

    Without `backend_store_uri` it serves the store in use, its artifacts read where the runs logged them (the
    UI). With one (PostgreSQL for a team) it is a tracking server: clients upload artifacts through it into
    `artifacts_destination`, so workers on other machines need no shared filesystem."""
    store = backend_store_uri or mlflow.get_tracking_uri()
    command = [sys.executable, "-m", "mlflow", "server", "--host", host, "--port", str(port)]
    command += ["--workers", str(workers)]
    if artifacts_destination:
        command += ["--serve-artifacts", "--artifacts-destination", artifacts_destination]
    elif store.startswith("sqlite:"):
        command += ["--default-artifact-root", (mlruns_dir() / "artifacts").as_uri()]
    environment = {
        **os.environ,
        # Through the environment, not the command line: `ps` shows command lines, and the URI may hold a password.
        "MLFLOW_BACKEND_STORE_URI": store,
        # MLflow's job runner (GenAI features: a dozen worker processes) has nothing to do for fine-tuning runs.
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    process = processes.start_logged(command, log_path, environment=environment)
    processes.wait_until_healthy(
        process,
        f"http://{host}:{port}/health",
        name="MLflow server",
        log_path=log_path,
        timeout_seconds=UI_STARTUP_SECONDS,
    )
    return process


def stop_mlflow_server(process: subprocess.Popen[bytes]) -> None:
    """Stop the MLflow server and its worker processes (its whole process group)."""
    processes.stop(process)


def save_ranked_view(base_url: str, task_name: str, *, metrics: list[str], params: list[str]) -> str:
    """Store, on the task's experiment, a view of its runs ranked by `metrics[0]` (best first) with `metrics` and
    `params` as columns, and return the page that opens it: what a person should see first. MLflow's UI opens a
    view stored on the experiment as a `mlflow.sharedViewState.<key>` tag when the URL names its key. Also marks
    the experiment as model training (experiments made before harness set it lack the tag)."""
    experiment = mlflow.get_experiment_by_name(task_name)
    if experiment is None:
        raise HarnessError(f"no experiment {task_name!r} at {mlflow.get_tracking_uri()}: run `harness search` first")
    client = MlflowClient()
    for key, value in EXPERIMENT_KIND.items():
        if experiment.tags.get(key) != value:
            client.set_experiment_tag(experiment.experiment_id, key, value)
    columns = [f"metrics.`{m}`" for m in metrics] + [f"params.`{p}`" for p in params]
    view = {
        "orderByKey": f"metrics.`{metrics[0]}`",
        "orderByAsc": False,
        "selectedColumns": columns,
        "columnOrder": columns,  # the objective first; MLflow would sort them by name
        "runsExpanded": {},
        "runListHidden": False,
    }
    share_key = f"harness-ranked-by-{metrics[0]}"
    client.set_experiment_tag(experiment.experiment_id, f"mlflow.sharedViewState.{share_key}", json.dumps(view))
    return f"{base_url}/#/experiments/{experiment.experiment_id}/runs?viewStateShareKey={share_key}"
