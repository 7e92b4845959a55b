"""`harness ui`, `server`, `report` and `results`: looking at the runs, a team's tracking server, and a study's
evidence written down."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from harness.cli.app import ProfileOption, StudyOption, TaskArgument, TrackingUriOption, app, console, errors
from harness.errors import without_password


@app.command()
def ui(
    task: TaskArgument = "legal",
    host: Annotated[str, typer.Option(help="Interface to bind; 0.0.0.0 exposes the UI to the network.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the MLflow UI.")] = 5000,
    detach: Annotated[bool, typer.Option("--detach", help="Leave the UI running in the background.")] = False,
    tracking_uri: TrackingUriOption = None,
) -> None:
    """Start the MLflow UI on the store the search wrote; prints the page that ranks the task's trials.

    With --tracking-uri http://... (a team's `harness server`) the server is the UI: nothing is started."""
    from harness import tracking
    from harness.config import load_task

    config = load_task(task)
    uri = tracking.configure(tracking_uri)
    objective = config.search.objective.metric
    columns = [objective, *(f"f1_{name}" for name in config.fields), "exact_match", "json_valid_rate"]
    served = uri.startswith(("http://", "https://"))
    page = tracking.save_ranked_view(
        uri.rstrip("/") if served else f"http://{host}:{port}",
        config.task.name,
        metrics=list(dict.fromkeys(columns)),
        params=["lora.r", "lora.alpha", "lora.target_modules", "train.learning_rate", "quantization"],
    )
    if served:
        console.print(f"Trials ranked by {objective} on the tracking server {uri}, best first:", highlight=False)
        print(page)
        return
    log_path = tracking.mlruns_dir() / "ui" / f"mlflow-ui-{port}.log"
    process = tracking.start_mlflow_server(host, port, log_path)
    console.print(f"MLflow UI pid {process.pid}, log {log_path}", highlight=False, soft_wrap=True)
    console.print(f"Trials ranked by {objective}, best first, with their metrics and recipes as columns:")
    print(page)
    _wait_or_detach(process, detach=detach)


@app.command()
def server(
    backend_store_uri: Annotated[
        str | None,
        typer.Option(
            help="Where runs and the model registry live: postgresql://USER:PASS@HOST:PORT/DB for a team"
            " (default: <mlruns>/mlflow.db)."
        ),
    ] = None,
    artifacts_destination: Annotated[
        str | None,
        typer.Option(help="Where the server stores the artifacts workers upload (default: <mlruns>/artifacts)."),
    ] = None,
    host: Annotated[str, typer.Option(help="Interface to bind; 0.0.0.0 for workers on other machines.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port workers and browsers reach it on.")] = 5000,
    server_workers: Annotated[int, typer.Option("--workers", help="Request-handling processes.")] = 2,
    detach: Annotated[bool, typer.Option("--detach", help="Leave the server running in the background.")] = False,
) -> None:
    """Start an MLflow tracking server for a team: runs in a database, artifacts uploaded through the server.

    Workers then pass --tracking-uri http://HOST:PORT to `harness search`; its web page is the UI."""
    from harness import tracking

    store = backend_store_uri or tracking.default_tracking_uri()
    artifacts = artifacts_destination or str(tracking.mlruns_dir() / "artifacts")
    if "://" not in artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
    log_path = tracking.mlruns_dir() / "server" / f"mlflow-server-{port}.log"
    process = tracking.start_mlflow_server(
        host, port, log_path, backend_store_uri=store, artifacts_destination=artifacts, workers=server_workers
    )
    console.print(f"MLflow tracking server pid {process.pid}, log {log_path}", highlight=False, soft_wrap=True)
    console.print(f"backend store {without_password(store)}; artifacts in {artifacts}", highlight=False)
    console.print(f"Workers: harness search TASK --tracking-uri http://{host}:{port} --storage postgresql://...")
    print(f"http://{host}:{port}")
    _wait_or_detach(process, detach=detach)


def _wait_or_detach(process: Any, *, detach: bool) -> None:
    """Leave an MLflow server running in the background, or serve until Ctrl-C and stop it with its workers."""
    from harness import tracking

    if detach:
        console.print(f"Detached; stop it with `kill -- -{process.pid}` (the server and its workers).")
        return
    try:
        process.wait()
    except KeyboardInterrupt:
        tracking.stop_mlflow_server(process)


@app.command()
def report(
    task: TaskArgument,
    study: StudyOption = None,
    profile: ProfileOption = "auto",
    out: Annotated[Path | None, typer.Option(help="Directory for report.html and its PNGs.")] = None,
    tracking_uri: TrackingUriOption = None,
) -> None:
    """Write a study's self-contained HTML report (and PNGs), and log it on the study's run."""
    from harness import tracking
    from harness.config import load_task
    from harness.machine import choose_profile
    from harness.report import build_report

    config = load_task(task)
    chosen, _ = choose_profile(config, profile)
    tracking.configure(tracking_uri)
    study_name = study or tracking.latest_study_name(config.task.name, chosen)
    built = build_report(config, study_name=study_name, out_dir=out or tracking.mlruns_dir() / "reports" / study_name)
    console.print(f"Report: {built.html_path} ({len(built.pngs)} PNGs beside it); logged on run {built.run_id}")


@app.command()
def results(
    task: TaskArgument,
    study: StudyOption = None,
    profile: ProfileOption = "auto",
    out: Annotated[Path, typer.Option(help="Directory for <study>.md, <study>.json and the PNGs.")] = Path("results"),
    tracking_uri: TrackingUriOption = None,
) -> None:
    """The study's evidence: the ladder (zero-shot, rule baseline, seed recipe, best trial, registered model) on
    every stored eval set, with each stage's time, tokens and memory and the leaderboard, as <study>.md/.json."""
    from harness import tracking
    from harness.config import load_task
    from harness.machine import choose_profile
    from harness.results import write_results

    config = load_task(task)
    chosen, _ = choose_profile(config, profile)
    tracking.configure(tracking_uri)
    written = write_results(
        config,
        study_name=study or tracking.latest_study_name(config.task.name, chosen),
        out_dir=out,
        on_progress=lambda line: errors.print(line, markup=False, highlight=False),
    )
    console.print(f"Results: {written.markdown} and {written.figures} ({len(written.pngs)} PNGs beside them)")
