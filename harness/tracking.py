"""MLflow: where runs are stored, one run per trial, and everything logged to it. The only module importing MLflow.

State lives in `<mlruns>`: `./mlruns` unless `HARNESS_MLRUNS` says otherwise. The tracking URI defaults to
`sqlite:///<mlruns>/mlflow.db` and each task's artifacts go under `<mlruns>/artifacts/<task>`.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# Set before MLflow is imported: no usage telemetry leaves the machine.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no progress bar per download
# A tracking server that stops answering fails a call after about 30 s of retries (1+2+4+8+16), not MLflow's
# default of several minutes, in which a search looks hung.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "5")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")

import mlflow
import pandas as pd
from mlflow.tracking import MlflowClient

from harness.errors import HarnessError, TrialStopped, causes, describe_machine_failure, without_password

UI_STARTUP_SECONDS = 120
STORE_RETRY_SECONDS = 60  # how long a failed run's end is retried against a store that fails (a lock lifting)
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
    client, deadline = MlflowClient(), time.monotonic() + STORE_RETRY_SECONDS
    while time.monotonic() < deadline:
        time.sleep(2)
        try:
            for key, value in tags.items():
                client.set_tag(run_id, key, value)
            client.set_terminated(run_id, status)
            return
        except Exception:
            continue


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


# The model registry: one registered model per task, versions moved between aliases by the promotion gate.


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


def log_and_register_model(
    run_id: str,
    model: Any,
    tokenizer: Any,
    *,
    registered_name: str,
    input_example: str,
    output_example: str,
    alias: str,
    version_tags: dict[str, str],
) -> int:
    """Log a merged model on a run (transformers flavor, text-generation), register it as a new version
    of `registered_name` with its tags, and point `alias` at it; returns the version number.

    All or nothing: the weights are logged before the version exists, the version is created with its tags in one
    call, and if pointing the alias fails or is interrupted (Ctrl-C, SIGTERM) the version is deleted again, so the
    registry never shows a version without weights, tags or alias. A run that logged weights but registered
    nothing is harmless: registering again logs a new copy."""
    from mlflow.models import infer_signature

    client = MlflowClient()
    status = client.get_run(run_id).info.status
    with mlflow.start_run(run_id=run_id, log_system_metrics=False):
        logged = mlflow.transformers.log_model(
            # A model and tokenizer, not a checkpoint path: MLflow 3.17's path branch fails on transformers 5.
            transformers_model={"model": model, "tokenizer": tokenizer},
            name="model",
            task="text-generation",
            signature=infer_signature([input_example], [output_example]),
            input_example=[input_example],
            # Stated, not inferred: MLflow's inference imports torchvision, which a text model does not need.
            pip_requirements=[
                f"{p}=={importlib.metadata.version(p)}" for p in ("torch", "transformers", "safetensors")
            ],
        )
    client.set_terminated(run_id, status)  # resuming the run to log must not change how it ended
    created = mlflow.register_model(logged.model_uri, registered_name, await_registration_for=60, tags=version_tags)
    version = int(created.version)
    try:
        client.set_registered_model_alias(registered_name, alias, str(version))
    except BaseException:
        client.delete_model_version(registered_name, str(version))
        raise
    return version


def model_version(registered_name: str, *, alias: str | None = None, version: int | None = None) -> Any:
    """A registered version by alias or number; None when the alias is not set or the name is unknown."""
    client = MlflowClient()
    try:
        found = (
            client.get_model_version_by_alias(registered_name, alias)
            if alias
            else client.get_model_version(registered_name, str(version))
        )
    except mlflow.exceptions.MlflowException:
        return None
    return found


def model_versions(registered_name: str) -> list[Any]:
    """Every version of a registered model, newest first; empty when the name is unknown."""
    found = MlflowClient().search_model_versions(f"name = '{registered_name}'")
    return sorted(found, key=lambda v: -int(v.version))


def model_aliases(registered_name: str) -> dict[str, int]:
    client = MlflowClient()
    try:
        model = client.get_registered_model(registered_name)
    except mlflow.exceptions.MlflowException:
        return {}
    return {alias: int(version) for alias, version in model.aliases.items()}


def set_model_alias(registered_name: str, alias: str, version: int) -> None:
    MlflowClient().set_registered_model_alias(registered_name, alias, str(version))


def tag_model_version(registered_name: str, version: int, tags: dict[str, str]) -> None:
    client = MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(registered_name, str(version), key, value)


def download_model_version(registered_name: str, version: int) -> Path:
    """A registered version's weights in a local transformers directory, downloaded once per tracking store."""
    return _cached(
        cache_dir("models", registered_name, f"v{version}"),
        lambda into: _download_transformers_model(f"models:/{registered_name}/{version}", into),
    )


def download_run_directory(run_id: str, artifact_path: str) -> Path:
    """A run's artifact directory (a trial's `adapter`) in a local directory, downloaded once per tracking store."""
    return _cached(
        cache_dir("runs", run_id, artifact_path),
        lambda into: download_run_artifacts(run_id, artifact_path, into),
    )


def download_logged_model(uri: str) -> Path:
    """A logged transformers model (`runs:/RUN_ID/model`) in a local directory, downloaded once per URI."""
    try:
        return _cached(
            cache_dir("logged", re.sub(r"[^A-Za-z0-9_.-]+", "-", uri)),
            lambda into: _download_transformers_model(uri, into),
        )
    except mlflow.exceptions.MlflowException as error:
        raise HarnessError(f"cannot download {uri} from {mlflow.get_tracking_uri()}: {error.message}") from None


def cache_dir(*parts: str) -> Path:
    """Where local copies of what the tracking store holds are kept: `<mlruns>/cache/<store>/...`, `<store>` naming
    the tracking and registry URIs, so that `models:/legal-extractor/1` of one server is never taken for another's."""
    tracking_uri, registry_uri = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    readable = re.sub(r"[^A-Za-z0-9]+", "-", without_password(tracking_uri)).strip("-")[-40:]
    digest = hashlib.sha256(f"{tracking_uri}\n{registry_uri}".encode()).hexdigest()[:12]
    return mlruns_dir() / "cache" / f"{readable}-{digest}" / Path(*parts)


def _cached(destination: Path, download: Callable[[Path], Path]) -> Path:
    """`destination/<what download returns, relative to where it downloaded>`, downloaded once: into a temporary
    directory beside it, renamed into place when complete, so a download cut short (Ctrl-C, a full disk, a dropped
    connection) never leaves a copy that a later call would take for the whole."""
    marker = destination / ".complete"  # holds the path of the result, relative to destination
    if marker.exists():
        return destination / marker.read_text(encoding="utf-8")
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{destination.name}.partial-", dir=destination.parent))
    try:
        result = download(partial).relative_to(partial)
        (partial / ".complete").write_text(str(result), encoding="utf-8")
        try:
            partial.rename(destination)
        except OSError:
            if not marker.exists():  # not another process's complete copy, renamed in first: a real failure
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return destination / str(result)


def _download_transformers_model(uri: str, destination: Path) -> Path:
    root = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(destination)))
    # The transformers flavor keeps weights and config in `model/` and the tokenizer (with its chat template) in
    # `components/tokenizer/`: one directory with both is what transformers and vLLM load.
    model_dir = root / "model"
    for file in (root / "components" / "tokenizer").glob("*"):
        shutil.copy(file, model_dir / file.name)
    return model_dir


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


# The MLflow UI over the same store the search wrote.


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
    log_path.parent.mkdir(parents=True, exist_ok=True)
    environment = {
        **os.environ,
        # Through the environment, not the command line: `ps` shows command lines, and the URI may hold a password.
        "MLFLOW_BACKEND_STORE_URI": store,
        # MLflow's job runner (GenAI features: a dozen worker processes) has nothing to do for fine-tuning runs.
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    with log_path.open("wb") as log:
        # A session of its own: the server's worker processes are stopped with it (`stop_mlflow_server`, kill -- -PID).
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=environment, start_new_session=True
        )
    deadline = time.monotonic() + UI_STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-10:])
            raise HarnessError(
                f"the MLflow server exited with code {process.returncode} while starting ({log_path}):\n{tail}"
            )
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/health", timeout=5) as response:
                if response.status == 200:
                    return process
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(1)
    stop_mlflow_server(process)
    raise HarnessError(
        f"the MLflow server did not answer on {host}:{port} within {UI_STARTUP_SECONDS} s; see {log_path}"
    )


def stop_mlflow_server(process: subprocess.Popen[bytes]) -> None:
    """Stop the MLflow server and its worker processes (its whole process group)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def experiment_page(base_url: str, task_name: str, *, metrics: list[str], params: list[str]) -> str:
    """The runs page of the task's experiment with every run flattened, ranked by `metrics[0]` (best first) and
    `metrics` and `params` as columns: what a person should see first. MLflow's UI opens a view stored on the
    experiment as a `mlflow.sharedViewState.<key>` tag when the URL names its key; harness writes that view.
    Also marks the experiment as model training (experiments made before harness set it lack the tag)."""
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
