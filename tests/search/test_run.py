"""The search on the smoke profile: real Optuna studies in SQLite, real MLflow runs, real processes killed."""

from __future__ import annotations

import itertools
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.storages.journal import JournalFileBackend, JournalStorage

from harness import tracking
from harness.config import load_task
from harness.errors import HarnessError
from harness.search import space
from harness.search.options import SearchOptions
from harness.search.run import run_search
from tests.conftest import trial_processes


@pytest.fixture
def mlruns(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_MLRUNS", str(tmp_path / "mlruns"))
    tracking.configure()
    return tmp_path / "mlruns"


def study_of(mlruns: Path, name: str = "legal-smoke") -> optuna.Study:
    """The study in the default local storage, `<mlruns>/optuna-journal.log`."""
    return optuna.load_study(study_name=name, storage=JournalStorage(JournalFileBackend(str(journal(mlruns)))))


def journal(mlruns: Path) -> Path:
    return mlruns / "optuna-journal.log"


def running_trial_has_run(mlruns: Path) -> bool:
    """Whether the worker runs a trial whose MLflow run exists (the journal file is safe to read meanwhile)."""
    if not journal(mlruns).exists():
        return False
    try:
        trials = study_of(mlruns).get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    except KeyError:
        return False
    return any("mlflow_run_id" in t.user_attrs for t in trials)


def runs(state: str | None = None):
    client = MlflowClient()
    experiment = client.get_experiment_by_name("legal")
    found = client.search_runs([experiment.experiment_id], max_results=100)
    return [r for r in found if state is None or r.info.status == state]


def test_a_smoke_search_tracks_every_trial_and_resumes_to_its_total(legal, mlruns):
    summary = run_search(legal, SearchOptions(trials=3, profile="smoke", pruner="none"))
    study = study_of(mlruns)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 3
    assert study.trials[0].params == {
        "lora.r": 16, "lora.alpha_ratio": 2.0, "lora.target_modules": "attn", "train.learning_rate": 2e-4,
        "quantization": "nf4",
    }  # fmt: skip
    parents = [r for r in runs() if r.data.tags.get("harness.kind") == "study"]
    trials = [r for r in runs() if r.data.tags.get("harness.kind") == "trial"]
    assert len(parents) == 1 and len(trials) == 3
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert {k: parent.data.tags[f"harness.{k}"] for k in ("study", "sampler", "pruner", "profile", "model")} == {
        "study": "legal-smoke", "sampler": "tpe", "pruner": "none", "profile": "smoke", "model": "tiny:llama",
    }  # fmt: skip
    assert "zero_shot_f1_micro" in parent.data.metrics and "best_value" in parent.data.metrics
    for trial in study.trials:  # cross-referenced both ways
        run = MlflowClient().get_run(trial.user_attrs["mlflow_run_id"])
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["harness.trial_number"] == str(trial.number)
    assert summary.best is not None and summary.seed_recipe["trial"] == 0
    leaderboard = MlflowClient().load_table(parent.info.experiment_id, "leaderboard.json", [parent.info.run_id])
    assert len(leaderboard) == 3
    plots = {a.path for a in MlflowClient().list_artifacts(parent.info.run_id, "plots")}
    for name in ("optimization_history", "param_importances", "parallel_coordinate", "slice"):
        assert {f"plots/{name}.html", f"plots/{name}.png"} <= plots

    run_search(legal, SearchOptions(trials=5, profile="smoke", pruner="none"))
    study = study_of(mlruns)
    assert len(study.trials) == 5
    assert len([r for r in runs() if r.data.tags.get("harness.kind") == "study"]) == 1
    assert len([r for r in runs() if r.data.tags.get("harness.kind") == "trial"]) == 5


def test_a_trial_whose_process_is_killed_is_failed_in_both_and_the_study_goes_on(legal, mlruns):
    # What the system's out-of-memory killer does to a trial: SIGKILL, mid-training, without a word.
    killed: list[int] = []

    def kill_the_second_trial() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not killed:
            experiment = MlflowClient().get_experiment_by_name("legal")  # None until the search creates it
            if experiment and any(r.info.run_name == "trial-1" for r in runs("RUNNING")):
                for process in trial_processes():
                    process.kill()
                    killed.append(process.pid)
            time.sleep(0.1)

    killer = threading.Thread(target=kill_the_second_trial, daemon=True)
    killer.start()
    run_search(legal, SearchOptions(trials=2, profile="smoke", pruner="none"))
    killer.join()
    assert len(killed) == 1 and killed[0] != os.getpid()
    states = [t.state.name for t in study_of(mlruns).trials]
    assert states == ["COMPLETE", "FAIL", "COMPLETE"]
    failed = study_of(mlruns).trials[1]
    reason = "the trial's process was killed by SIGKILL (the system's out-of-memory killer sends SIGKILL)"
    assert failed.user_attrs["harness.error"] == reason
    run = MlflowClient().get_run(failed.user_attrs["mlflow_run_id"])
    assert (run.info.status, run.data.tags["harness.error"]) == ("FAILED", reason)
    assert not trial_processes()  # none left behind


def test_a_pruned_trial_is_pruned_in_optuna_and_killed_in_mlflow(legal, mlruns, monkeypatch):
    # A pruner that prunes everything: the reported value is a negated loss, always below zero.
    monkeypatch.setattr(space, "pruner", lambda options, task, steps: optuna.pruners.ThresholdPruner(lower=0.0))
    summary = run_search(legal, SearchOptions(trials=1, profile="smoke"))
    (trial,) = study_of(mlruns).trials
    assert trial.state == optuna.trial.TrialState.PRUNED and trial.intermediate_values
    run = MlflowClient().get_run(trial.user_attrs["mlflow_run_id"])
    assert (run.info.status, run.data.tags["harness.state"]) == ("KILLED", "pruned")
    # The leaderboard says what the pruner saw: the validation loss itself (positive), at the rung it stopped at.
    ((step, reported),) = trial.intermediate_values.items()
    (row,) = summary.rows
    assert row["steps"] == step and row[f"rung_loss.{step}"] == -reported > 0


def test_a_changed_search_space_on_an_existing_study_is_a_clear_error(legal, mlruns, task_copy):
    run_search(legal, SearchOptions(trials=1, profile="smoke"))
    path, _ = task_copy(lambda d: d["search"]["params"]["lora.r"].update(choices=[8, 16]))
    changed = load_task(str(path))
    with pytest.raises(HarnessError, match=r"study 'legal-smoke' .* was made for other trials") as refused:
        run_search(changed, SearchOptions(trials=2, profile="smoke"))
    assert "params: stored" in str(refused.value) and "--study NAME" in str(refused.value)
    run_search(changed, SearchOptions(trials=1, profile="smoke", study_name="legal-smoke-small-r"))
    assert len(study_of(mlruns, "legal-smoke-small-r").trials) == 1


@pytest.mark.parametrize(
    ("edit", "differs"),
    [
        (lambda d: d["profiles"]["smoke"]["budget"].update(train_examples=6), "budget: stored"),
        (lambda d: d["profiles"]["smoke"].update(model="tiny:llama-other"), "base model: stored tiny:llama, now"),
        (lambda d: d["data"].update(seed=18), "training data: stored sha256:"),
        (lambda d: d["recipe"]["train"].update(warmup_ratio=0.1), "recipe: stored"),
        (lambda d: d["search"]["objective"].update(metric="exact_match"), "objective: stored"),
    ],
)
def test_resuming_a_study_with_anything_that_makes_trials_comparable_changed_is_refused(
    legal, mlruns, task_copy, edit, differs
):
    run_search(legal, SearchOptions(trials=1, profile="smoke", pruner="none"))
    path, _ = task_copy(edit)
    with pytest.raises(HarnessError, match="was made for other trials") as refused:
        run_search(load_task(str(path)), SearchOptions(trials=2, profile="smoke", pruner="none"))
    message = str(refused.value)
    assert differs in message and "--study NAME" in message
    assert "params: stored" not in message  # only what changed is named (the space did not)
    assert len(study_of(mlruns).trials) == 1  # nothing ran on the refused study


def test_a_space_without_the_seed_recipe_is_refused(mlruns, task_copy):
    path, _ = task_copy(lambda d: d["search"]["params"]["lora.r"].update(choices=[4, 8]))
    with pytest.raises(HarnessError, match=r"the seed recipe's lora.r=16 is outside the search space \(4, 8\)"):
        run_search(load_task(str(path)), SearchOptions(trials=1, profile="smoke"))


@pytest.mark.slow
def test_a_search_killed_mid_trial_is_resumed_and_leaves_no_run_running(mlruns, tmp_path):
    env = {**os.environ, "HARNESS_MLRUNS": str(mlruns)}
    command = [str(Path(sys.executable).parent / "harness"), "search", "legal", "--trials", "2", "--profile",
               "smoke", "--pruner", "none", "--quiet", "--no-register"]  # fmt: skip
    worker = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not running_trial_has_run(mlruns):
        time.sleep(1)  # until a trial runs and its MLflow run exists; then kill the worker mid-trial
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    assert [r for r in runs("RUNNING") if r.data.tags.get("harness.kind") == "trial"]

    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    study = study_of(mlruns)
    states = [t.state.name for t in study.trials]
    assert states.count("COMPLETE") == 2 and states[0] == "FAIL"
    assert not runs("RUNNING")
    killed = MlflowClient().get_run(study.trials[0].user_attrs["mlflow_run_id"])
    assert killed.info.status == "FAILED"
    assert killed.data.tags["harness.error"].startswith(f"worker {socket.gethostname()}:{worker.pid} died")
    assert study.trials[1].system_attrs.get("failed_trial") == 0  # the stale trial was retried


# SIGTERM only: `harness` turns it into the KeyboardInterrupt that Ctrl-C raises, so from there on both take the
# same path (one process pair less in the suite; SIGINT itself is delivered in tests/test_registry.py).
@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGTERM], ids=["sigterm"])
def test_ctrl_c_or_preemption_kills_the_trial_and_the_study_run_and_the_same_command_resumes(mlruns, stop):
    env = {**os.environ, "HARNESS_MLRUNS": str(mlruns), "COLUMNS": "200"}  # tables wide enough not to wrap
    command = [str(Path(sys.executable).parent / "harness"), "search", "legal", "--trials", "2", "--profile",
               "smoke", "--pruner", "none", "--no-register"]  # fmt: skip
    narrow = {k: v for k, v in env.items() if k != "COLUMNS"}  # as a CI log runs it: no COLUMNS (Rich: 80)
    worker = subprocess.Popen(
        command, env=narrow, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # As from a terminal: a test run started in the background (`cmd &` in a script) ignores SIGINT, and its
        # children would inherit that.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not running_trial_has_run(mlruns):
        time.sleep(0.5)
    worker.send_signal(stop)  # SIGTERM: what Kubernetes, Slurm and `docker stop` send
    _, stderr = worker.communicate(timeout=120)
    assert worker.returncode == 130
    assert "interrupted: the current run is marked KILLED" in stderr and "Traceback" not in stderr
    # Its output is a pipe, not a terminal: progress as log lines (no live view to redraw), as it stood.
    assert "estimate on this machine:" in stderr and "finished 0/2, running trial 0, step 0 of 2, best -" in stderr
    # Each one whole on its line (not broken at 80 columns, as a CI log shows it), and printed when it changed.
    assert re.search(r"^estimate on this machine: 2 trials ≈ .{60,} in all$", stderr, re.MULTILINE), stderr[-2000:]
    progress = [line for line in stderr.splitlines() if line.startswith("finished")]
    assert progress and all(line.endswith(" left") for line in progress), progress
    assert all(a != b for a, b in itertools.pairwise(progress)), progress
    study = study_of(mlruns)
    assert [t.state.name for t in study.trials] == ["FAIL"]
    interrupted = MlflowClient().get_run(study.trials[0].user_attrs["mlflow_run_id"])
    assert (interrupted.info.status, interrupted.data.tags["harness.state"]) == ("KILLED", "killed")
    parents = [r for r in runs() if r.data.tags.get("harness.kind") == "study"]
    assert len(parents) == 1, [(r.info.run_id, r.data.tags, r.info.status, r.info.start_time) for r in parents]
    assert parents[0].info.status == "KILLED"

    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    resumed = study_of(mlruns).trials
    assert [t.state.name for t in resumed] == ["FAIL", "COMPLETE", "COMPLETE"]
    assert resumed[1].params == resumed[0].params and resumed[1].user_attrs["harness.seed_recipe"]  # queued again
    assert re.search(r"finished 2/2, best \d\.\d{4} \(trial [12]\)", rerun.stderr), rerun.stderr[-2000:]
    assert "top trials by f1_micro" in rerun.stdout
    assert "zero-shot" in rerun.stdout and "seed recipe" in rerun.stdout
    assert not runs("RUNNING")


@pytest.mark.slow
def test_preemption_during_the_registration_registers_nothing_and_the_same_command_registers(mlruns, legal_test_head):
    env = {**os.environ, "HARNESS_MLRUNS": str(mlruns), "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}
    command = [str(Path(sys.executable).parent / "harness"), "search", str(legal_test_head(8)), "--trials", "1",
               "--profile", "smoke", "--pruner", "none"]  # fmt: skip
    worker = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert worker.stdout is not None
    for line in worker.stdout:
        if line.startswith("Registering the best trial"):
            worker.send_signal(signal.SIGTERM)  # the refit has just started
            break
    _, stderr = worker.communicate(timeout=120)
    assert worker.returncode == 130, stderr[-2000:]
    assert "interrupted during the registration: nothing was registered" in stderr and "Traceback" not in stderr
    assert tracking.model_versions("legal-extractor") == []
    assert not runs("RUNNING")

    # The claim was given back: the same command (the study is complete) registers, where it would otherwise say
    # "another worker registers".
    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "Registering the best trial (0)" in rerun.stdout
    assert tracking.model_aliases("legal-extractor") == {"challenger": 1}


def test_a_search_whose_trials_keep_failing_stops_with_the_cause_and_keeps_the_finished_ones(legal, mlruns):
    run_search(legal, SearchOptions(trials=2, profile="smoke", pruner="none"))
    # A real fault in every later trial: a memory limit no trial fits (refused before it loads anything).
    with pytest.raises(HarnessError) as stopped:
        run_search(legal, SearchOptions(trials=6, profile="smoke", pruner="none", max_memory_mb=1, max_failures=3))
    message = str(stopped.value)
    assert "3 trials in a row failed" in message and "trial 4: HarnessError: estimated peak" in message
    assert "2 finished trials are kept" in message and "--max-failures" in message
    assert [t.state.name for t in study_of(mlruns).trials] == ["COMPLETE", "COMPLETE", "FAIL", "FAIL", "FAIL"]
    parents = [r for r in runs() if r.data.tags.get("harness.kind") == "study"]
    assert [r.info.status for r in parents] == ["FAILED"]
    assert not runs("RUNNING")
