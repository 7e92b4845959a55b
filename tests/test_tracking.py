"""The MLflow side people look at (`harness ui` serves the store the search wrote, with a page that ranks trials),
and the store failing under a run."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from harness import tracking
from harness.errors import HarnessError
from tests.conftest import free_port

HARNESS = str(Path(sys.executable).parent / "harness")


def api(port: int, path: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/2.0/mlflow/{path}", data=data, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_harness_ui_serves_the_store_and_prints_the_page_ranking_runs_by_the_objective(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_MLRUNS", str(tmp_path / "mlruns"))
    tracking.configure()
    for name, f1 in (("weak", 0.2), ("strong", 0.7)):
        tracking.log_decision_run("legal", run_name=name, params={}, metrics={"f1_micro": f1}, tags={})

    port = free_port()
    result = subprocess.run(
        [HARNESS, "ui", "legal", "--port", str(port), "--detach"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HARNESS_MLRUNS": str(tmp_path / "mlruns"), "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    pid = int(re.search(r"MLflow UI pid (\d+)", result.stdout).group(1))
    try:
        experiment = api(port, "experiments/get-by-name?experiment_name=legal")["experiment"]
        page = f"http://127.0.0.1:{port}/#/experiments/{experiment['experiment_id']}/runs"
        assert f"{page}?viewStateShareKey=harness-ranked-by-f1_micro" in result.stdout
        tags = {t["key"]: t["value"] for t in experiment["tags"]}
        assert tags["mlflow.experimentKind"] == "custom_model_development"  # the model-training view, not GenAI
        # The view that URL opens: ranked by the objective, metrics and recipe values as columns.
        view = json.loads(tags["mlflow.sharedViewState.harness-ranked-by-f1_micro"])
        assert (view["orderByKey"], view["orderByAsc"]) == ("metrics.`f1_micro`", False)
        assert view["selectedColumns"][:2] == ["metrics.`f1_micro`", "metrics.`f1_plaintiff`"]
        assert "params.`lora.r`" in view["selectedColumns"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as response:
            assert response.status == 200 and b"<html" in response.read()
        # What the page asks the server for: runs ordered by f1_micro, best first.
        runs = api(
            port,
            "runs/search",
            {"experiment_ids": [experiment["experiment_id"]], "order_by": ["metrics.f1_micro DESC"]},
        )["runs"]
        assert [r["info"]["run_name"] for r in runs] == ["strong", "weak"]
    finally:
        os.killpg(pid, signal.SIGTERM)
    for _ in range(30):
        if not group_alive(pid):
            break
        time.sleep(1)
    assert not group_alive(pid)  # the server and every worker it started are gone


def test_logging_a_table_again_replaces_it_and_the_ui_still_lists_it_as_a_table(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("HARNESS_MLRUNS", str(tmp_path / "mlruns"))
    tracking.configure()
    run_id = tracking.create_study_run("legal", "legal-tables", tags={})
    tracking.log_table_to_run(run_id, [{"trial": 0, "f1_micro": 0.1}], "leaderboard.json")
    both_trials = [{"trial": 0, "f1_micro": 0.1}, {"trial": 1, "f1_micro": 0.4}]
    tracking.log_table_to_run(run_id, both_trials, "leaderboard.json")
    assert tracking.load_table_from_run(run_id, "leaderboard.json") == [
        {"trial": 0, "f1_micro": 0.1},
        {"trial": 1, "f1_micro": 0.4},
    ]
    experiment = MlflowClient().get_run(run_id).info.experiment_id
    assert len(MlflowClient().load_table(experiment, "leaderboard.json", run_ids=[run_id])) == 2


# The tracking store failing: one line saying what failed and what to do, and no run left RUNNING.


def test_an_unreachable_tracking_server_is_a_clear_error_before_anything_starts():
    nobody = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(HarnessError, match=rf"the MLflow tracking server at {nobody} is not reachable \(.*refused"):
        tracking.configure(nobody)
    tracking.configure()


def test_a_tracking_store_locked_by_another_process_is_one_line_and_leaves_no_run_running(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_MLRUNS", str(tmp_path / "mlruns"))
    tracking.configure()
    experiment = tracking.experiment_for("legal")  # the store exists, with the task's experiment
    database = tmp_path / "mlruns" / "mlflow.db"
    holder = sqlite3.connect(database, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process writing, and not letting go
    try:
        result = subprocess.run(
            [HARNESS, "train", "legal", "--profile", "smoke"],
            env={**os.environ, "HARNESS_MLRUNS": str(tmp_path / "mlruns")},
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.returncode == 2, result.stderr[-2000:]
    message = result.stderr.replace("\n", " ")
    assert f"error: the tracking store sqlite:///{database} stayed locked by another process" in message
    assert "Traceback" not in result.stderr
    runs = MlflowClient().search_runs([experiment])
    assert [r.info.status for r in runs if r.info.status == "RUNNING"] == []


def test_without_a_study_name_report_and_results_take_the_profiles_study_else_the_latest(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_MLRUNS", str(tmp_path / "mlruns"))
    tracking.configure()
    assert tracking.latest_study_name("legal", "cpu") == "legal-cpu"  # nothing yet: the default, to say it is missing
    tracking.create_study_run("legal", "legal-smoke", tags={"harness.study": "legal-smoke"})
    assert tracking.latest_study_name("legal", "cpu") == "legal-smoke"  # right after a `--profile smoke` search
    time.sleep(0.01)
    tracking.create_study_run("legal", "legal-again", tags={"harness.study": "legal-again"})
    assert tracking.latest_study_name("legal", "cpu") == "legal-again"
    tracking.create_study_run("legal", "legal-cpu", tags={"harness.study": "legal-cpu"})
    tracking.create_study_run("legal", "legal-later", tags={"harness.study": "legal-later"})
    assert tracking.latest_study_name("legal", "cpu") == "legal-cpu"
