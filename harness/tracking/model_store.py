"""The model registry and local copies of what the tracking store holds: one registered model per task, versions
created all or nothing, aliases moved by the promotion gate, downloads cached per store."""

from __future__ import annotations

import hashlib
import importlib.metadata
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient

from harness.errors import HarnessError, without_password
from harness.tracking.runs import download_run_artifacts
from harness.tracking.store import mlruns_dir


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
