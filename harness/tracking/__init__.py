"""MLflow: where runs are stored, one run per trial, everything logged to it, the model registry and the MLflow
servers. This package is the only code that imports MLflow; callers use `tracking.<function>` from here.

State lives in `<mlruns>`: `./mlruns` unless `HARNESS_MLRUNS` says otherwise. The tracking URI defaults to
`sqlite:///<mlruns>/mlflow.db` and each task's artifacts go under `<mlruns>/artifacts/<task>`.

Each part's file is named in docs/architecture.md.
"""

import os

# Set before MLflow is first imported (by the modules below): no usage telemetry leaves the machine.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no progress bar per download
# A tracking server that stops answering fails a call after about 30 s of retries (1+2+4+8+16), not MLflow's
# default of several minutes, in which a search looks hung.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "5")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")

from harness.tracking.model_store import (
    cache_dir,
    download_logged_model,
    download_model_version,
    download_run_directory,
    log_and_register_model,
    model_aliases,
    model_version,
    model_versions,
    set_model_alias,
    tag_model_version,
)
from harness.tracking.runs import (
    RunLog,
    create_study_run,
    download_run_artifacts,
    end_run_if_running,
    fail_run,
    find_run_by_tag,
    find_study_run,
    finish_study_run,
    latest_study_name,
    load_table_from_run,
    log_decision_run,
    log_directory_to_run,
    log_table_to_run,
    log_to_run,
    resume_study_run,
    run_info,
    run_metrics,
    run_params,
    trial_run,
)
from harness.tracking.servers import (
    save_ranked_view,
    start_mlflow_server,
    stop_mlflow_server,
)
from harness.tracking.store import (
    configure,
    default_tracking_uri,
    describe_failure,
    experiment_for,
    import_first_run_modules,
    mlruns_dir,
    tracking_uri,
)

__all__ = [
    "RunLog",
    "cache_dir",
    "configure",
    "create_study_run",
    "default_tracking_uri",
    "describe_failure",
    "download_logged_model",
    "download_model_version",
    "download_run_artifacts",
    "download_run_directory",
    "end_run_if_running",
    "experiment_for",
    "fail_run",
    "find_run_by_tag",
    "find_study_run",
    "finish_study_run",
    "import_first_run_modules",
    "latest_study_name",
    "load_table_from_run",
    "log_and_register_model",
    "log_decision_run",
    "log_directory_to_run",
    "log_table_to_run",
    "log_to_run",
    "mlruns_dir",
    "model_aliases",
    "model_version",
    "model_versions",
    "resume_study_run",
    "run_info",
    "run_metrics",
    "run_params",
    "save_ranked_view",
    "set_model_alias",
    "start_mlflow_server",
    "stop_mlflow_server",
    "tag_model_version",
    "tracking_uri",
    "trial_run",
]
