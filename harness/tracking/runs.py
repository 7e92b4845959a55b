"""Runs: one per trial (ended truthfully whatever happens), a study's parent run, and what is logged to and
read back from runs."""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.tracking import MlflowClient

from harness import retries
from harness.errors import HarnessError, TrialStopped, without_password
from harness.tracking.store import describe_failure, experiment_for

STORE_RETRY_SECONDS = 60  # how long a failed run's end is retried against a store that fails (a lock lifting)


class RunLog:
    """What a trial logs to its MLflow run, in plain calls."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.client = MlflowClient()

    def params(self, values: dict[str, Any]) -> None:
        mlflow.log_params({key: _param_value(value) for key, value in values.items()})

    def metrics(self, values: dict[str, float], *, step: int | None = None) -> None:
        mlflow.log_metrics({key: float(value) for key, value in values.items()}, step=step)

    def tags(self, values: dict[str, str]) -> None:
        mlflow.set_tags(values)

    def text(self, text: str, artifact_file: str) -> None:
        mlflow.log_text(text, artifact_file)

    def directory(self, path: Path, artifact_path: str) -> None:
        mlflow.log_artifacts(str(path), artifact_path)

    def table(self, rows: list[dict[str, Any]], artifact_file: str) -> None:
        mlflow.log_table(data=pd.DataFrame(rows), artifact_file=artifact_file)

    def dataset(self, rows: list[dict[str, Any]], *, name: str, context: str) -> None:
        """Record a data split as a run input, with MLflow's digest of its content."""
        frame = pd.DataFrame(rows)
        mlflow.log_input(mlflow.data.from_pandas(frame, name=name), context=context)


@contextmanager
def trial_run(
    task_name: str, *, run_name: str, tags: dict[str, str], parent_run_id: str | None = None
) -> Iterator[RunLog]:
    """An MLflow run that always ends truthfully: FINISHED, FAILED (error tagged) or KILLED (Ctrl-C)."""
    experiment_id = experiment_for(task_name)
    run = mlflow.start_run(
        experiment_id=experiment_id,
        run_name=run_name,
        tags={**tags, **({"mlflow.parentRunId": parent_run_id} if parent_run_id else {})},
        log_system_metrics=True,
    )
    try:
        yield RunLog(run.info.run_id)
    except TrialStopped as stopped:
        _end_active_run("KILLED", {"harness.state": "pruned", "harness.pruned": str(stopped)})
        raise
    except KeyboardInterrupt:
        _end_active_run("KILLED", {"harness.state": "killed", "harness.error": "interrupted (Ctrl-C or SIGTERM)"})
        raise
    except BaseException as error:
        reason = describe_failure(error) or f"{type(error).__name__}: {error}"
        _end_active_run("FAILED", {"harness.state": "failed", "harness.error": reason[:4000]})
        raise
    mlflow.set_tag("harness.state", "finished")
    mlflow.end_run("FINISHED")


def _end_active_run(status: str, tags: dict[str, str]) -> None:
    """End the active run after a failure, which may be the tracking store's own (locked, unreachable): retried
    for a while so that the run does not stay RUNNING, then given up without hiding the failure being raised."""
    active = mlflow.active_run()
    if active is None:
        return
    run_id = active.info.run_id
    try:
        mlflow.set_tags(tags)
        mlflow.end_run(status)
        return
    except Exception:
        _forget_active_run(run_id)
    client = MlflowClient()
    with contextlib.suppress(Exception):  # the store still fails: give up, the failure being raised says why
        for attempt in retries.attempts(retry_on=(Exception,), seconds=STORE_RETRY_SECONDS, wait_seconds=2.0):
            with attempt:
                for key, value in tags.items():
                    client.set_tag(run_id, key, value)
                client.set_terminated(run_id, status)


def _forget_active_run(run_id: str) -> None:
    """Let this process go on (and start other runs) although the store did not hear that the run ended: off
    MLflow's stack of active runs, its system-metrics thread stopped (it would log to the failing store)."""
    from mlflow.tracking import fluent

    stack = fluent._active_run_stack.get()
    if stack and stack[-1].info.run_id == run_id:
        stack.pop()
    monitor = fluent.run_id_to_system_metrics_monitor.pop(run_id, None)
    if monitor is not None:
        with contextlib.suppress(Exception):
            monitor.finish()


def _param_value(value: Any) -> str:
    return json.dumps(value) if isinstance(value, list | dict | tuple) else str(value)


def create_study_run(task_name: str, study_name: str, *, tags: dict[str, str]) -> str:
    """A study's parent run, which its trials' runs nest under."""
    run = MlflowClient().create_run(
        experiment_for(task_name), run_name=study_name, tags={**tags, "harness.kind": "study"}
    )
    return str(run.info.run_id)


def resume_study_run(run_id: str, study_name: str) -> None:
    """A study's parent run, RUNNING again while workers run its trials."""
    client = MlflowClient()
    try:
        run = client.get_run(run_id)
    except mlflow.exceptions.MlflowException:
        raise HarnessError(
            f"study {study_name!r} records its MLflow run {run_id}, which"
            f" {without_password(mlflow.get_tracking_uri())} does not have:"
            " every worker of a study must use the tracking store it started with (--tracking-uri)"
        ) from None
    if run.info.status != "RUNNING":
        client.update_run(run_id, status="RUNNING")


def end_run_if_running(run_id: str, status: str) -> None:
    """End a run a stopped process left RUNNING (FINISHED, FAILED or KILLED); leave any other status as it is."""
    client = MlflowClient()
    if client.get_run(run_id).info.status == "RUNNING":
        client.set_terminated(run_id, status)


def finish_study_run(run_id: str, status: str) -> None:
    """End the parent run truthfully: FINISHED, FAILED or KILLED."""
    MlflowClient().set_terminated(run_id, status)


def log_to_run(run_id: str, *, metrics: dict[str, float] | None = None, tags: dict[str, str] | None = None) -> None:
    """Log to a run that is not the active one (the study's parent run)."""
    client = MlflowClient()
    for key, value in (metrics or {}).items():
        client.log_metric(run_id, key, float(value))
    for key, text in (tags or {}).items():
        client.set_tag(run_id, key, text)


def log_table_to_run(run_id: str, rows: list[dict[str, Any]], artifact_file: str) -> None:
    """Log rows as an MLflow table (the UI shows it as one); logging it again replaces it, where MLflow's
    `log_table` would append the new rows to the old ones (a resumed study's leaderboard listed trials twice)."""
    client = MlflowClient()
    logged = json.loads(client.get_run(run_id).data.tags.get("mlflow.loggedArtifacts", "[]"))
    if {"path": artifact_file, "type": "table"} not in logged:
        client.log_table(run_id, data=pd.DataFrame(rows), artifact_file=artifact_file)
        return
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / Path(artifact_file).name
        pd.DataFrame(rows).to_json(path, orient="split", index=False, date_format="iso")  # as log_table writes it
        folder = str(Path(artifact_file).parent)
        client.log_artifact(run_id, str(path), artifact_path=None if folder == "." else folder)


def load_table_from_run(run_id: str, artifact_file: str) -> list[dict[str, Any]]:
    """A table logged with `log_table_to_run` (MLflow's {"columns", "data"} JSON), as rows; empty when absent."""
    with tempfile.TemporaryDirectory() as directory:
        try:
            path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact_file, dst_path=directory)
        except (mlflow.exceptions.MlflowException, OSError):
            return []
        table = json.loads(Path(path).read_text(encoding="utf-8"))
    # NaN is how pandas fills a column a row lacks (a pruned trial has no f1 figures): None says it plainly.
    return [
        {k: (None if isinstance(v, float) and v != v else v) for k, v in zip(table["columns"], row, strict=True)}
        for row in table["data"]
    ]


def run_metrics(run_id: str) -> dict[str, float]:
    return dict(MlflowClient().get_run(run_id).data.metrics)


def fail_run(run_id: str, reason: str) -> None:
    """Mark a run whose process died as FAILED, so no run stays RUNNING forever."""
    client = MlflowClient()
    if client.get_run(run_id).info.status == "RUNNING":
        client.set_tag(run_id, "harness.state", "failed")
        client.set_tag(run_id, "harness.error", reason)
        client.set_terminated(run_id, "FAILED")


def log_directory_to_run(run_id: str, directory: Path, artifact_path: str) -> None:
    MlflowClient().log_artifacts(run_id, str(directory), artifact_path)


def run_params(run_id: str) -> dict[str, str]:
    try:
        return dict(MlflowClient().get_run(run_id).data.params)
    except mlflow.exceptions.MlflowException as error:
        raise HarnessError(f"no MLflow run {run_id!r} at {mlflow.get_tracking_uri()}: {error.message}") from None


def run_info(run_id: str) -> dict[str, Any]:
    """A run's tags, status and wall time (to its end, or to now while it runs)."""
    run = MlflowClient().get_run(run_id)
    end = run.info.end_time or int(time.time() * 1000)
    return {
        "tags": dict(run.data.tags),
        "status": run.info.status,
        "started": run.info.start_time / 1000,  # seconds since the epoch
        "duration_seconds": round((end - run.info.start_time) / 1000, 1),
    }


def download_run_artifacts(run_id: str, artifact_path: str, destination: Path) -> Path:
    """Copy a run's artifact directory (a trial's `adapter`, say) to a local directory."""
    destination.mkdir(parents=True, exist_ok=True)
    return Path(
        mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact_path, dst_path=str(destination))
    )


def find_run_by_tag(task_name: str, key: str, value: str) -> str | None:
    """The id of the task's run tagged `key` = `value` (a tag its process was given before it started), if any."""
    experiment = mlflow.get_experiment_by_name(task_name)
    if experiment is None:
        return None
    found = MlflowClient().search_runs(
        [experiment.experiment_id], filter_string=f"tags.`{key}` = '{value}'", max_results=1
    )
    return str(found[0].info.run_id) if found else None


def find_study_run(task_name: str, study_name: str) -> str | None:
    experiment = mlflow.get_experiment_by_name(task_name)
    if experiment is None:
        return None
    found = MlflowClient().search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`harness.study` = '{study_name}' and tags.`harness.kind` = 'study'",
        max_results=1,
    )
    return str(found[0].info.run_id) if found else None


def latest_study_name(task_name: str, profile: str) -> str:
    """The study a command means when none is named: `<task>-<profile>` if the task's experiment has it, else the
    study whose run started last (say, `legal-smoke` after a `--profile smoke` search), else `<task>-<profile>`."""
    default = f"{task_name}-{profile}"
    experiment = mlflow.get_experiment_by_name(task_name)
    if experiment is None or find_study_run(task_name, default):
        return default
    latest = MlflowClient().search_runs(
        [experiment.experiment_id],
        filter_string="tags.`harness.kind` = 'study'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return str(latest[0].data.tags["harness.study"]) if latest else default


def log_decision_run(
    task_name: str, *, run_name: str, params: dict[str, Any], metrics: dict[str, float], tags: dict[str, str]
) -> str:
    """A finished run recording a decision (a promotion), so it shows in the experiment beside the trials."""
    client = MlflowClient()
    run = client.create_run(experiment_for(task_name), run_name=run_name, tags=tags)
    for key, value in params.items():
        client.log_param(run.info.run_id, key, _param_value(value))
    for key, number in metrics.items():
        client.log_metric(run.info.run_id, key, float(number))
    client.set_terminated(run.info.run_id, "FINISHED")
    return str(run.info.run_id)
