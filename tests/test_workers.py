"""Many workers on one study: real processes on a real PostgreSQL and MLflow tracking server, or on a journal file
with `--n-workers`; one of them killed mid-trial. The study still reaches its total, once, with nothing lost."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

from harness import workers
from harness.errors import HarnessError
from tests.conftest import POSTGRES_PASSWORD

HARNESS = str(Path(sys.executable).parent / "harness")
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def smoke_search(task: str, *extra: str) -> list[str]:
    return [HARNESS, "search", task, "--trials", "6", "--profile", "smoke", "--quiet", *extra]


def environment(mlruns: Path, **variables: str) -> dict[str, str]:
    """Each worker its own local directory, as on separate machines: the storage and the server are all they share."""
    return {**os.environ, "HARNESS_MLRUNS": str(mlruns), "COLUMNS": "200", **variables}


def loader(storage: str, name: str = "legal-smoke") -> Callable[[], optuna.Study | None]:
    def load() -> optuna.Study | None:
        if "://" not in storage and not Path(storage).exists():
            return None  # not created yet: leave its creation to the workers
        backend = storage if "://" in storage else JournalStorage(JournalFileBackend(storage))
        try:
            return optuna.load_study(study_name=name, storage=backend)
        except KeyError:
            return None

    return load


def worker_pid(trial: optuna.trial.FrozenTrial) -> int:
    return int(str(trial.user_attrs["harness.worker"]).rsplit(":", 1)[1])


def wait_for_second_trial_of_one_worker(
    load: Callable[[], optuna.Study | None], pids: set[int] | None = None
) -> tuple[int, int]:
    """Until a worker (one of `pids`) has finished a trial and runs another with its MLflow run: (pid, number)."""
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline:
        study = load()
        trials = study.get_trials(deepcopy=False) if study else []
        for trial in trials:
            if trial.state != TrialState.RUNNING or "mlflow_run_id" not in trial.user_attrs:
                continue
            pid = worker_pid(trial)
            done_before = [t for t in trials if t.state in FINISHED and worker_pid(t) == pid]
            if (pids is None or pid in pids) and done_before:
                return pid, trial.number
        time.sleep(0.5)
    raise AssertionError("no worker reached its second trial in 400 s")


def assert_one_study_of_six(study: optuna.Study, client: MlflowClient) -> dict[str, object]:
    """The guarantees every way of running workers keeps; returns the runs by id for further checks."""
    trials = study.get_trials(deepcopy=False)
    finished = [t for t in trials if t.state in FINISHED]
    assert len(finished) == 6, [(t.number, t.state.name) for t in trials]
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    params = {json.dumps(t.params, sort_keys=True) for t in finished}
    assert len(params) == 6, "a parameter set was evaluated twice"
    assert len({t.user_attrs["harness.worker"] for t in finished}) == 2, "both workers ran trials"

    experiment = client.get_experiment_by_name("legal")
    runs = client.search_runs([experiment.experiment_id], filter_string="tags.`harness.study` = 'legal-smoke'")
    parents = [r for r in runs if r.data.tags.get("harness.kind") == "study"]
    nested = [r for r in runs if r.data.tags.get("harness.kind") == "trial" and "harness.refit" not in r.data.tags]
    assert len(parents) == 1, "exactly one parent run per study"
    (parent,) = parents
    assert parent.info.status == "FINISHED"
    assert study.user_attrs["harness.mlflow_parent_run_id"] == parent.info.run_id
    assert not [r for r in runs if r.info.status == "RUNNING"]
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in nested)
    tried = [t for t in trials if "mlflow_run_id" in t.user_attrs]
    assert sorted(r.info.run_id for r in nested) == sorted(t.user_attrs["mlflow_run_id"] for t in tried)
    by_id = {r.info.run_id: r for r in nested}
    for trial in finished:  # cross-referenced both ways, and what each finished trial logged is there
        run = by_id[trial.user_attrs["mlflow_run_id"]]
        assert run.data.tags["harness.trial_number"] == str(trial.number)
        assert run.data.tags["harness.worker"] == trial.user_attrs["harness.worker"]
        # The loss the pruner saw at each rung, in Optuna (negated: the study maximises) and in the trial's run: a
        # cross-reference of non-zero figures (the tiny model's f1_micro is 0 in both places whatever is logged).
        rung_losses = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "validation_loss")}
        assert rung_losses and all(loss > 0 for loss in rung_losses.values())
        assert rung_losses == {step: -value for step, value in trial.intermediate_values.items()}
        if trial.state == TrialState.COMPLETE:
            assert run.info.status == "FINISHED"
            assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"adapter", "predictions.json"}
    return by_id


@pytest.mark.slow
def test_workers_on_postgresql_share_one_study_and_one_parent_run_and_register_once(
    postgres, tracking_server, legal_test_head, tmp_path
):
    storage = postgres.create_database("optuna_two_workers")
    command = smoke_search(str(legal_test_head(8)), "--storage", storage, "--tracking-uri", tracking_server)
    started = [
        subprocess.Popen(command, env=environment(tmp_path / f"machine-{i}"), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]  # fmt: skip
    outputs = [worker.communicate(timeout=900) for worker in started]
    for worker, (_, stderr) in zip(started, outputs, strict=True):
        assert worker.returncode == 0, stderr[-3000:]

    client = MlflowClient(tracking_uri=tracking_server)
    assert_one_study_of_six(loader(storage)(), client)
    stdout = "".join(out for out, _ in outputs)
    assert stdout.count("Registering the best trial") == 1 and stdout.count("Not registering here") == 1
    assert [v.version for v in client.search_model_versions("name = 'legal-extractor'")] == ["1"]
    experiment = client.get_experiment_by_name("legal")
    for run in client.search_runs([experiment.experiment_id]):  # the storage URL's password never reaches MLflow
        assert POSTGRES_PASSWORD not in json.dumps([run.data.params, run.data.tags])
    parent = client.get_run(loader(storage)().user_attrs["harness.mlflow_parent_run_id"])
    assert parent.data.tags["harness.storage"].startswith("postgresql://harness:***@127.0.0.1:")
    refits = client.search_runs([experiment.experiment_id], filter_string="tags.`harness.refit` = 'true'")
    assert len(refits) == 1 and refits[0].data.tags["mlflow.parentRunId"] == parent.info.run_id

    # `harness ui` on a tracking server prints the ranked page of that server and starts nothing.
    ui = subprocess.run([HARNESS, "ui", "legal", "--tracking-uri", tracking_server], capture_output=True, text=True,
                        env=environment(tmp_path / "machine-0"), timeout=120)  # fmt: skip
    assert ui.returncode == 0, ui.stderr
    assert f"{tracking_server}/#/experiments/{experiment.experiment_id}/runs?viewStateShareKey=" in ui.stdout


@pytest.mark.slow
def test_a_worker_killed_mid_trial_on_postgresql_is_failed_by_heartbeat_and_retried_by_the_other(
    postgres, tracking_server, tmp_path
):
    storage = postgres.create_database("optuna_killed_worker")
    command = smoke_search("legal", "--storage", storage, "--tracking-uri", tracking_server, "--no-register")
    started = [
        subprocess.Popen(command, env=environment(tmp_path / f"machine-{i}", HARNESS_HEARTBEAT_SECONDS="5"),
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]  # fmt: skip
    load = loader(storage)
    pid, killed_number = wait_for_second_trial_of_one_worker(load, {w.pid for w in started})
    victim = next(w for w in started if w.pid == pid)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    survivor = next(w for w in started if w is not victim)
    _, stderr = survivor.communicate(timeout=900)
    assert survivor.returncode == 0, stderr[-3000:]

    study = load()
    client = MlflowClient(tracking_uri=tracking_server)
    runs = assert_one_study_of_six(study, client)
    killed = study.trials[killed_number]
    assert killed.state == TrialState.FAIL
    failed_run = client.get_run(killed.user_attrs["mlflow_run_id"])
    assert failed_run.info.status == "FAILED" and "heartbeats" in failed_run.data.tags["harness.error"]
    (retry,) = [t for t in study.trials if t.system_attrs.get("failed_trial") == killed_number]
    assert retry.state in FINISHED and retry.params == killed.params and worker_pid(retry) == survivor.pid
    # What the killed worker finished before it died is all there (checked run by run above).
    assert [t for t in study.trials if t.state in FINISHED and worker_pid(t) == pid]
    assert len(runs) == 7  # six finished trials and the killed one


@pytest.mark.slow
def test_n_workers_share_a_journal_file_and_take_over_a_killed_worker_trial(tmp_path):
    mlruns = tmp_path / "mlruns"
    pool = subprocess.Popen(
        [HARNESS, "search", "legal", "--trials", "6", "--profile", "smoke", "--n-workers", "2"],
        env=environment(mlruns), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    load = loader(str(mlruns / "optuna-journal.log"))
    pid, killed_number = wait_for_second_trial_of_one_worker(load)  # a worker process, a child of the pool
    os.kill(pid, signal.SIGKILL)
    stdout, stderr = pool.communicate(timeout=900)
    assert pool.returncode == 0, stderr[-3000:]
    assert f"(pid {pid}) was killed by SIGKILL; the other workers take over its trial" in stderr
    assert "worker 0: " in stdout and "top trials by f1_micro" in stdout
    # The workers only searched; the pool's process, which sees all of the machine's GPUs, registered the winner.
    assert stdout.count("Registering the best trial") == 1 and "Not registering here" not in stdout

    study = load()
    tracking_uri = f"sqlite:///{mlruns / 'mlflow.db'}"
    assert_one_study_of_six(study, MlflowClient(tracking_uri=tracking_uri))
    killed = study.trials[killed_number]
    assert killed.state == TrialState.FAIL
    failed_run = MlflowClient(tracking_uri=tracking_uri).get_run(killed.user_attrs["mlflow_run_id"])
    assert failed_run.info.status == "FAILED"
    assert failed_run.data.tags["harness.error"].startswith(f"worker {socket.gethostname()}:{pid} died")
    (retry,) = [t for t in study.trials if t.system_attrs.get("failed_trial") == killed_number]
    assert retry.state in FINISHED and retry.params == killed.params and worker_pid(retry) != pid
    client = MlflowClient(tracking_uri=tracking_uri)
    (version,) = client.search_model_versions("name='legal-extractor'")
    assert client.get_model_version_by_alias("legal-extractor", "challenger").version == version.version


def test_workers_get_a_gpu_each_round_robin():
    slots = workers.plan_workers(3, gpus=["0", "1"], cpus={0, 1, 2, 3})
    assert [s.environment["CUDA_VISIBLE_DEVICES"] for s in slots] == ["0", "1", "0"]
    assert [s.environment["HARNESS_WORKER_INDEX"] for s in slots] == ["0", "1", "2"]
    assert all(not s.cpus for s in slots)


def test_workers_whose_trials_split_over_two_gpus_get_two_each():
    slots = workers.plan_workers(3, gpus=["0", "1", "2", "3", "4"], cpus={0}, gpus_per_worker=2)
    assert [s.environment["CUDA_VISIBLE_DEVICES"] for s in slots] == ["0,1", "2,3", "0,1"]  # GPU 4 left idle
    with pytest.raises(HarnessError, match=r"over 2 GPUs .* shows 1"):
        workers.plan_workers(1, gpus=["0"], cpus={0}, gpus_per_worker=2)


def test_workers_without_a_gpu_split_the_cores():
    slots = workers.plan_workers(2, gpus=[], cpus={0, 1, 2, 3, 4})
    assert [sorted(s.cpus) for s in slots] == [[0, 1, 2], [3, 4]]
    assert [s.environment["OMP_NUM_THREADS"] for s in slots] == ["3", "2"]
    assert all(s.environment["CUDA_VISIBLE_DEVICES"] == "" for s in slots)
    crowded = workers.plan_workers(3, gpus=[], cpus={0, 1})
    assert [sorted(s.cpus) for s in crowded] == [[0], [1], [0]]
    with pytest.raises(ValueError, match="at least 1"):
        workers.plan_workers(0, gpus=[], cpus={0})


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"JOB_COMPLETION_INDEX": "3"}, 3),  # a Kubernetes indexed Job
        ({"SLURM_ARRAY_TASK_ID": "7"}, 7),
        ({"HARNESS_WORKER_INDEX": "1", "SLURM_ARRAY_TASK_ID": "7"}, 1),
        ({}, None),
    ],
)
def test_a_worker_reads_its_index_from_the_scheduler(monkeypatch, variables, expected):
    for name in workers.INDEX_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert workers.worker_index_from_environment() == expected


def test_several_local_workers_on_sqlite_are_refused_with_the_way_out(tmp_path):
    result = subprocess.run(
        [HARNESS, "search", "legal", "--n-workers", "2", "--storage", f"sqlite:///{tmp_path / 'o.db'}"],
        capture_output=True, text=True, env=environment(tmp_path / "mlruns"), timeout=120,
    )  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--n-workers 2 needs a storage several processes can write" in result.stderr
    assert "--storage postgresql://" in result.stderr


def test_an_unreachable_postgresql_storage_is_a_clear_error(postgres, tmp_path):
    wrong = postgres.url("postgres").replace(POSTGRES_PASSWORD, "wrong-password")
    result = subprocess.run(
        [HARNESS, "search", "legal", "--profile", "smoke", "--storage", wrong],
        capture_output=True, text=True, env=environment(tmp_path / "mlruns"), timeout=120,
    )  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "cannot open the Optuna storage postgresql://harness:***@127.0.0.1" in result.stderr
    assert "wrong-password" not in result.stderr


DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def search_help() -> str:
    result = subprocess.run([HARNESS, "search", "--help"], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "COLUMNS": "250"})  # fmt: skip
    return result.stdout


def test_the_kubernetes_job_runs_indexed_workers_with_options_harness_accepts():
    job = yaml.safe_load((DEPLOY / "kubernetes-job.yaml").read_text())
    assert job["kind"] == "Job" and job["spec"]["completionMode"] == "Indexed"  # JOB_COMPLETION_INDEX per pod
    assert "JOB_COMPLETION_INDEX" in workers.INDEX_VARIABLES
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"][:3] == ["harness", "search", "legal"]
    usage = search_help()
    for option in [a for a in container["command"] if a.startswith("--")]:
        assert option in usage
    for variable in container["env"]:
        assert f"env var: {variable['name']}" in usage


def test_the_slurm_array_runs_one_worker_per_task_with_options_harness_accepts():
    script = (DEPLOY / "slurm-array.sh").read_text()
    assert subprocess.run(["bash", "-n", str(DEPLOY / "slurm-array.sh")]).returncode == 0
    assert "#SBATCH --array=" in script and "SLURM_ARRAY_TASK_ID" in workers.INDEX_VARIABLES
    (command,) = [line for line in script.splitlines() if line.startswith("exec ")]
    usage = search_help()
    for option in [a for a in command.split() if a.startswith("--")]:
        assert option in usage
    for variable in ("HARNESS_STORAGE", "HARNESS_TRACKING_URI"):
        assert f"export {variable}=" in script and f"env var: {variable}" in usage


def open_storage(url: str) -> str:
    from harness.search.storage import open_storage

    open_storage(url)
    return "opened"


def test_workers_starting_together_on_an_empty_database_all_open_it(postgres):
    # They race to create Optuna's tables; before harness retried, the losers failed with a unique violation.
    import multiprocessing

    url = postgres.create_database("optuna_empty_race")
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        assert pool.map(open_storage, [url] * 4) == ["opened"] * 4
