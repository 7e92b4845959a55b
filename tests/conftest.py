"""Shared fixtures: the real `legal` and `legal-ru` tasks, ways to write variants of legal into tmp dirs, and the
services a team runs (PostgreSQL, an MLflow tracking server), and how the suite shares two cores among its workers."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import filelock
import psutil
import pytest
import yaml

from harness.config import SEARCH_SPACES_DIR, TaskConfig, load_task
from harness.serving import free_port  # the tests' servers take ports as harness's do

LEGAL_YAML = SEARCH_SPACES_DIR / "legal.yaml"


def pytest_configure(config: pytest.Config) -> None:
    """`make test` runs the suite in pytest-xdist workers, a core each: most of a test's time is one core's (a
    process importing the training stack, the tiny model's Python-bound steps), so two workers use two cores. Each
    worker's torch (and every process it starts) computes on its share of the cores: two OpenMP pools of two threads
    on two cores would spin against each other."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, len(os.sched_getaffinity(0)) // workers)))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The `slow` tests (a minute or more each) first, so that the workers end together instead of one of them
    running the real model alone at the end (`make test` hands the workers one test at a time, in this order).
    Among them, those that need the shared smoke study last: the first of them makes it while the other worker
    is busy with a slow test of its own rather than waiting for it."""

    def order(item: pytest.Item) -> tuple[bool, bool]:
        slow = item.get_closest_marker("slow") is not None
        return not slow, slow and "smoke_study" in getattr(item, "fixturenames", ())

    items.sort(key=order)  # stable: the rest keep their order


def trial_processes() -> list[psutil.Process]:
    """The processes running trials: children of this process's fork server (`harness.trial_process`)."""
    servers = [p for p in psutil.Process().children() if "forkserver" in " ".join(p.cmdline())]
    return [trial for server in servers for trial in server.children()]


def component_missing(reason: str) -> None:
    """A test whose component (PostgreSQL, Chromium) is not installed: skipped with the reason on a developer's
    machine, failed where `CI` is set, so that CI never passes by skipping what it was meant to check."""
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        pytest.fail(f"{reason}; CI is set, so a missing component fails the test instead of skipping it")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def legal() -> TaskConfig:
    return load_task("legal")


@pytest.fixture(scope="session")
def legal_ru() -> TaskConfig:
    return load_task("legal-ru")


@pytest.fixture
def task_copy(tmp_path: Path):
    """Write a modified copy of legal.yaml (and its eval sets) to tmp; returns (yaml path, test-v1's path)."""

    def make(edit=None, *, text: str | None = None) -> tuple[Path, Path]:
        (tmp_path / "tasks" / "legal" / "eval_sets").mkdir(parents=True, exist_ok=True)
        for stored in (SEARCH_SPACES_DIR.parent / "tasks" / "legal" / "eval_sets").glob("*.jsonl"):
            shutil.copy(stored, tmp_path / "tasks" / "legal" / "eval_sets" / stored.name)
        eval_set = tmp_path / "tasks" / "legal" / "eval_sets" / "test-v1.jsonl"
        (tmp_path / "search_spaces").mkdir(exist_ok=True)
        path = tmp_path / "search_spaces" / "legal.yaml"
        if text is None:
            data = yaml.safe_load(LEGAL_YAML.read_text())
            if edit:
                edit(data)
            text = yaml.safe_dump(data, sort_keys=False)
        path.write_text(text)
        return path, eval_set

    return make


def write_legal_with_test_head(directory: Path, examples: int) -> Path:
    """legal.yaml in `directory`, its stored test set cut to the first `examples` decisions of test-v1 under a name
    and digest of its own (`test-head-v1`): registrations, promotions and serving checks on it take seconds."""
    stored = SEARCH_SPACES_DIR.parent / "tasks" / "legal" / "eval_sets" / "test-v1.jsonl"
    head = directory / "tasks" / "legal" / "eval_sets" / "test-head-v1.jsonl"
    head.parent.mkdir(parents=True, exist_ok=True)
    head.write_text("".join(stored.read_text(encoding="utf-8").splitlines(keepends=True)[:examples]), encoding="utf-8")
    data = yaml.safe_load(LEGAL_YAML.read_text())
    data["data"]["eval_sets"] = [
        {
            "name": "test-head-v1",
            "path": "../tasks/legal/eval_sets/test-head-v1.jsonl",
            "sha256": hashlib.sha256(head.read_bytes()).hexdigest(),
        }
    ]
    path = directory / "search_spaces" / "legal.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def legal_test_head(tmp_path_factory) -> Callable[[int], Path]:
    """`legal_test_head(n)`: the path of a legal.yaml whose stored test set is test-v1's first n decisions."""

    def make(examples: int) -> Path:
        return write_legal_with_test_head(tmp_path_factory.mktemp(f"legal-head-{examples}"), examples)

    return make


SMOKE_TEST_EXAMPLES = 32  # the shared study's stored test set: test-v1's first 32 decisions (serving: 16 twice)


@dataclass(frozen=True)
class SmokeStudy:
    """The smoke study the registry, serving, results, report and browser tests share (`smoke_study`)."""

    task: TaskConfig
    task_path: Path
    mlruns: Path
    summary: Any  # harness.search.study.SearchSummary
    registration: Any  # harness.registry.Registration: v1 @challenger
    constant_answer_run_id: str  # a training run whose adapter scores above zero (`train_to_answer_constantly`)
    constant_answer_adapter: Path  # that run's adapter, as `harness train` leaves it (`harness eval --adapter`)


@pytest.fixture(scope="session")
def smoke_study(legal_test_head, tmp_path_factory, worker_id) -> SmokeStudy:
    """One smoke study for the whole session, made once: legal with its stored test set cut to test-v1's first 32
    decisions, a two-trial search (the seed recipe and one sampled recipe, no pruning) and its best trial refit
    and registered as v1 @challenger. Tests that only read it point HARNESS_MLRUNS at `mlruns`; tests that change
    it (register, promote) take `smoke_store`, a copy of their own, so no test depends on another's order.
    Under pytest-xdist the first worker to need it makes it and the others wait and read it (a file lock in the
    directory the workers' temporary directories share)."""

    def make() -> SmokeStudy:
        return make_smoke_study(legal_test_head(SMOKE_TEST_EXAMPLES), tmp_path_factory.mktemp("smoke-study"))

    if worker_id == "master":  # one process runs the suite
        return make()
    shared = tmp_path_factory.getbasetemp().parent
    with filelock.FileLock(shared / "smoke-study.lock"):
        made = shared / "smoke-study.pickle"
        if made.exists():
            return pickle.loads(made.read_bytes())
        study = make()
        made.write_bytes(pickle.dumps(study))
        return study


def make_smoke_study(task_path: Path, directory: Path) -> SmokeStudy:
    from harness import registry, tracking
    from harness.search.options import SearchOptions
    from harness.search.run import run_search

    mlruns = directory / "mlruns"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HARNESS_MLRUNS", str(mlruns))
        tracking.configure()
        task = load_task(str(task_path))
        # The run that scores above zero comes first: the newest-first order MLflow shows by default is then not
        # the ranking by f1_micro (the browser test tells the two apart).
        constant_answer_run_id, constant_answer_adapter = train_to_answer_constantly(
            task, directory / "constant-answer"
        )
        summary = run_search(task, SearchOptions(trials=2, profile="smoke", pruner="none", register=False))
        registration = registry.register_trial(task, study_name=summary.study_name)
    return SmokeStudy(task, task_path, mlruns, summary, registration, constant_answer_run_id, constant_answer_adapter)


# The answer `train_to_answer_constantly` teaches: right wherever a decision was a satisfied supply claim of the
# plaintiff, so it scores above zero on any stored set (f1_micro 0.163 on test-v1's first 32 decisions, json_valid
# 1.0): tests of the gate and of serving parity need figures a broken implementation could not also produce.
CONSTANT_ANSWER = {
    "plaintiff": None,
    "defendant": None,
    "dispute_subject": "supply",
    "decision": "satisfied",
    "claim_amount": None,
    "awarded_amount": None,
    "initiator": "plaintiff",
}


def train_to_answer_constantly(task: TaskConfig, directory: Path) -> tuple[str, Path]:
    """A real LoRA training run of the tiny model on 16 decisions that all carry `CONSTANT_ANSWER` (200 steps,
    about 20 s): it learns to give that answer, valid JSON, to any decision. Returns its MLflow run id, in the
    task's experiment of the store in use, and its adapter's directory."""
    from harness.config import resolve_trial_config
    from harness.task_data import load_split
    from harness.trial import run_trial

    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "train.jsonl").open("w", encoding="utf-8") as file:
        for example in load_split(task, "train")[:16]:
            file.write(json.dumps({"id": example.id, "text": example.text, "fields": CONSTANT_ANSWER}) + "\n")
    data = yaml.safe_load(task.file.read_text())
    data["data"] = {
        "source": "jsonl",
        "train": "../train.jsonl",
        "validation": "../train.jsonl",
        "eval_sets": [{**s, "path": str(task.data_path(s["path"]))} for s in data["data"]["eval_sets"]],
    }
    path = directory / "search_spaces" / task.file.name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    constant_task = load_task(str(path))
    # lr 1e-2 for 200 steps learns it (3e-2 diverges, 30 steps are too few: measured on the tiny model).
    overrides = {"quantization": "none", "train.learning_rate": 1e-2, "lora.r": 16, "lora.target_modules": "all"}
    overrides |= {"budget.max_steps": 200, "budget.train_examples": 16}
    config = resolve_trial_config(constant_task, profile="smoke", overrides=overrides)
    result = run_trial(constant_task, config, output_dir=directory / "trial", run_name="constant-answer")
    assert result.metrics["json_valid_rate"] == 1.0, result.metrics  # it learned the answer
    return str(result.run_id), result.adapter_dir


@pytest.fixture
def smoke_store(smoke_study, tmp_path, monkeypatch) -> Path:
    """A copy of the shared smoke study's stores (MLflow and Optuna) that this test may change; HARNESS_MLRUNS
    points at it for the test. Runs' artifacts stay where the study logged them: new ones are added, none changed."""
    from harness import tracking

    copy = tmp_path / "mlruns"
    shutil.copytree(smoke_study.mlruns, copy)
    monkeypatch.setenv("HARNESS_MLRUNS", str(copy))
    tracking.configure()
    return copy


POSTGRES_PASSWORD = "pg-secret-4821"  # asserted never to reach MLflow


@dataclass(frozen=True)
class Postgres:
    """A PostgreSQL server of the test session's own on 127.0.0.1, password-protected like a real one."""

    port: int

    def url(self, database: str, *, driver: str = "postgresql") -> str:
        return f"{driver}://harness:{POSTGRES_PASSWORD}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """Debian's PostgreSQL (installed by `make setup`), a fresh cluster in a temporary directory. As root the
    server runs as the `postgres` user: PostgreSQL refuses to run as root."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if not found:
        component_missing("PostgreSQL is not installed (make setup installs Debian's postgresql package)")
    bin_dir = found[-1].parent
    directory = Path(tempfile.mkdtemp(prefix="harness-postgres-"))
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_postgres:
        shutil.chown(directory, "postgres")
    (directory / "password").write_text(POSTGRES_PASSWORD)
    directory.chmod(0o755)
    (directory / "password").chmod(0o644)
    data = directory / "data"
    subprocess.run(
        [*as_postgres, str(bin_dir / "initdb"), "-D", str(data), "-U", "harness", f"--pwfile={directory / 'password'}",
         "--auth-host=scram-sha-256", "--auth-local=trust", "--no-sync"],
        check=True, capture_output=True,
    )  # fmt: skip
    port = free_port()
    options = f"-h 127.0.0.1 -p {port} -k {directory} -c fsync=off -c max_connections=200"
    subprocess.run(
        [*as_postgres, str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(directory / "log"), "-w",
         "start"],
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        yield Postgres(port)
    finally:
        subprocess.run([*as_postgres, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"], check=False)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def tracking_server(postgres, tmp_path, request) -> Iterator[str]:
    """`harness server` on a database of this test's own: an MLflow tracking server as a team runs one.
    Returns its http:// URI."""
    database = "mlflow_" + request.node.name.lower().replace("[", "_").replace("]", "")[:50]
    port = free_port()
    command = [str(Path(sys.executable).parent / "harness"), "server", "--backend-store-uri",
               postgres.create_database(database), "--artifacts-destination", str(tmp_path / "server-artifacts"),
               "--port", str(port), "--workers", "1", "--detach"]  # fmt: skip
    env = {**os.environ, "HARNESS_MLRUNS": str(tmp_path / "server-mlruns"), "COLUMNS": "200"}
    started = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert started.returncode == 0, started.stderr[-2000:]
    pid = int(started.stdout.split("MLflow tracking server pid ")[1].split(",")[0])
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(pid, signal.SIGTERM)
