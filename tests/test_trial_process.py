"""A trial in a process of its own, on the tiny model: it reports to the search as a trial in the search's own
process would, stops when told to, and its failures come back as the reasons its MLflow run records."""

from __future__ import annotations

import os
from pathlib import Path

import psutil
import pytest
from mlflow.tracking import MlflowClient

from harness import machine, tracking
from harness.config import resolve_trial_config
from harness.errors import HarnessError, TrialStopped
from harness.trial_process import ATTEMPT_TAG, TrialFailed, run_trial_in_own_process, run_trial_on_its_gpus
from tests.conftest import trial_processes


@pytest.fixture
def mlruns(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_MLRUNS", str(tmp_path / "mlruns"))
    tracking.configure()
    return tmp_path / "mlruns"


class RecordingReporter:
    """Records each call, with the trial processes alive when training begins; says stop after `stop_after` steps."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.calls: list[tuple] = []
        self.processes: list[int] = []  # forked by the fork server
        self.spawned: list[int] = []  # started as fresh interpreters by this process
        self.spawned_gpus: list[str | None] = []
        self.stop_after = stop_after

    def on_train_begin(self, total_steps: int) -> None:
        self.calls.append(("on_train_begin", total_steps))
        self.processes = [p.pid for p in trial_processes()]
        spawned = [p for p in psutil.Process().children() if "spawn_main" in " ".join(p.cmdline())]
        self.spawned = [p.pid for p in spawned]
        self.spawned_gpus = [p.environ().get("CUDA_VISIBLE_DEVICES") for p in spawned]  # what each was shown

    def on_log(self, step: int, metrics: dict[str, float]) -> None:
        self.calls.append(("on_log", step))

    def on_evaluate(self, step: int, validation_loss: float) -> None:
        self.calls.append(("on_evaluate", step, validation_loss))

    def should_stop(self, step: int) -> bool:
        self.calls.append(("should_stop", step))
        return self.stop_after is not None and step >= self.stop_after

    def on_train_end(self) -> None:
        self.calls.append(("on_train_end",))


def test_a_trial_in_its_own_process_reports_and_returns_as_one_in_the_search_process_would(legal, mlruns, tmp_path):
    reporter, started = RecordingReporter(), []
    config = resolve_trial_config(legal, profile="smoke", overrides={})
    result = run_trial_in_own_process(
        legal, config, output_dir=tmp_path / "trial", reporter=reporter, evaluate_at_steps=(1,),
        run_name="own-process", on_run_started=started.append,
    )  # fmt: skip
    assert len(reporter.processes) == 1 and reporter.processes[0] != os.getpid()  # it trained elsewhere
    assert reporter.calls[0] == ("on_train_begin", 2) and reporter.calls[-1] == ("on_train_end",)
    ((_, step, loss),) = [c for c in reporter.calls if c[0] == "on_evaluate"]
    assert step == 1 and loss > 0
    assert ("should_stop", 2) in reporter.calls
    assert started == [result.run_id]
    run = MlflowClient().get_run(result.run_id)
    assert run.info.status == "FINISHED" and run.data.metrics["f1_micro"] == result.metrics["f1_micro"]
    assert result.metrics["peak_memory_mb"] == run.data.metrics["peak_memory_mb"] > 0
    assert (result.adapter_dir / "adapter_model.safetensors").is_file()  # written where the caller said
    assert not trial_processes()


def test_a_trial_told_to_stop_is_stopped_and_its_run_killed(legal, mlruns, tmp_path):
    started: list[str] = []
    config = resolve_trial_config(legal, profile="smoke", overrides={})
    with pytest.raises(TrialStopped, match="stopped at step 1 on request"):
        run_trial_in_own_process(
            legal, config, output_dir=tmp_path / "trial", reporter=RecordingReporter(stop_after=1),
            evaluate_at_steps=(1,), on_run_started=started.append,
        )  # fmt: skip
    run = MlflowClient().get_run(started[0])
    assert (run.info.status, run.data.tags["harness.state"]) == ("KILLED", "pruned")


def test_a_failure_in_the_trial_comes_back_as_the_reason_its_run_records(legal, mlruns, tmp_path):
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    started: list[str] = []
    config = resolve_trial_config(legal, profile="smoke", overrides={})
    with pytest.raises(TrialFailed) as failed:
        run_trial_in_own_process(legal, config, output_dir=not_a_directory, on_run_started=started.append)
    run = MlflowClient().get_run(started[0])
    assert run.info.status == "FAILED"
    assert str(failed.value) == run.data.tags["harness.error"]
    assert str(failed.value).startswith(("NotADirectoryError", "FileExistsError")) and str(not_a_directory) in str(
        failed.value
    )


def test_a_problem_the_user_can_fix_stays_a_harness_error_with_its_message(legal, mlruns, tmp_path):
    config = resolve_trial_config(legal, profile="smoke", overrides={})
    with pytest.raises(HarnessError, match=r"estimated peak memory \d+ MB exceeds --max-memory 1 MB"):
        run_trial_in_own_process(legal, config, output_dir=Path(tmp_path / "trial"), max_memory_mb=1)


def test_where_there_is_a_gpu_trials_start_as_fresh_interpreters_and_report_the_same(legal, mlruns, tmp_path):
    # A CUDA context does not survive a fork, so a GPU machine spawns its trials: the same path, here on a CPU.
    reporter = RecordingReporter()
    config = resolve_trial_config(legal, profile="smoke", overrides={})
    result = run_trial_in_own_process(
        legal, config, output_dir=tmp_path / "trial", reporter=reporter, evaluate_at_steps=(1,), start_method="spawn"
    )
    assert len(reporter.spawned) == 1 and not reporter.processes  # this process's own child, not the fork server's
    assert reporter.calls[0] == ("on_train_begin", 2) and any(c[0] == "on_evaluate" for c in reporter.calls)
    assert MlflowClient().get_run(result.run_id).info.status == "FINISHED"
    assert (result.adapter_dir / "adapter_model.safetensors").is_file()


def test_a_commands_trial_runs_in_its_own_process_where_it_sees_no_more_gpus_than_it_uses(legal, mlruns, tmp_path):
    reporter = RecordingReporter()
    config = resolve_trial_config(legal, profile="smoke", overrides={})
    result = run_trial_on_its_gpus(legal, config, output_dir=tmp_path / "trial", reporter=reporter)
    assert not reporter.spawned and not reporter.processes  # here, on the CPU, and wherever one GPU is all it sees
    assert ATTEMPT_TAG not in MlflowClient().get_run(result.run_id).data.tags


def test_a_commands_trial_on_a_machine_with_more_gpus_than_it_uses_sees_only_its_own(
    legal, mlruns, tmp_path, monkeypatch
):
    """`harness train` on a machine of two GPUs with a one-GPU profile: a fresh interpreter shown the first GPU
    (not this one's, which sees both: Trainer would wrap the model in DataParallel, which TRL refuses)."""
    monkeypatch.setattr(machine, "has_cuda", lambda: True)
    monkeypatch.setattr(machine, "visible_gpus", lambda: ["0", "1"])
    reporter = RecordingReporter()
    config = resolve_trial_config(legal, profile="smoke", overrides={})
    assert config.gpus == 1
    result = run_trial_on_its_gpus(legal, config, output_dir=tmp_path / "trial", reporter=reporter)
    assert len(reporter.spawned) == 1 and reporter.spawned_gpus == ["0"]
    assert reporter.calls[0] == ("on_train_begin", 2) and reporter.calls[-1] == ("on_train_end",)
    assert MlflowClient().get_run(result.run_id).info.status == "FINISHED"
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    with pytest.raises(HarnessError, match=r"^the trial failed: (NotADirectoryError|FileExistsError)"):
        run_trial_on_its_gpus(legal, config, output_dir=not_a_directory)  # the reason, not a traceback
