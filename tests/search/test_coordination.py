"""Workers sharing a study: claims that exactly one worker wins, dead workers' trials retried, surplus trials.
Real journal files, SQLite databases and processes; no training."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest

from harness.search import coordination
from harness.search.storage import open_storage


@pytest.fixture
def mlruns(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_MLRUNS", str(tmp_path / "mlruns"))
    return tmp_path / "mlruns"


def journal(mlruns: Path) -> Path:
    return mlruns / "optuna-journal.log"


def test_a_registration_claim_whose_worker_was_killed_is_taken_over_but_a_done_one_is_not(legal, mlruns):
    study, _ = journal_study(mlruns, legal)
    study.tell(study.ask(), 0.5)
    study.tell(study.ask(), 0.6)
    storage = str(journal(mlruns))
    # A worker that claims the registration at 1 trial and ends without registering or giving the claim back (as
    # if killed), then claims it at 2 trials and registers (done); then it is gone.
    worker = (
        "import sys\nfrom harness.search import coordination as search\n"
        "print(search.claim_registration('legal-smoke', 1, storage=sys.argv[1]))\n"
        "with search.registration_claim('legal-smoke', 2, storage=sys.argv[1]) as claim:\n    print(claim)\n"
    )
    gone = subprocess.run([sys.executable, "-c", worker, storage], capture_output=True, text=True, check=True)
    assert gone.stdout.count("(True,") == 2
    with coordination.registration_claim("legal-smoke", 1, storage=storage) as (claimed, why):
        assert (claimed, why) == (True, "this worker finished the study last")
    claimed, why = coordination.claim_registration("legal-smoke", 2, storage=storage)
    assert not claimed and why.startswith(f"another worker ({socket.gethostname()}:")


@pytest.mark.fast
def test_a_registration_that_fails_gives_its_claim_back(legal, mlruns):
    study, _ = journal_study(mlruns, legal)
    study.tell(study.ask(), 0.5)
    storage = str(journal(mlruns))
    with (
        pytest.raises(OSError, match="No space left"),
        coordination.registration_claim("legal-smoke", 1, storage=storage) as (claimed, _),
    ):
        assert claimed
        raise OSError(28, "No space left on device")
    assert coordination.claim_registration("legal-smoke", 1, storage=storage)[0]


def journal_study(mlruns: Path, task) -> tuple[optuna.Study, object]:
    storage = open_storage(str(journal(mlruns)))
    study = optuna.create_study(study_name="legal-smoke", storage=storage, direction="maximize")
    return study, storage


@pytest.mark.fast
def test_a_journal_trial_whose_worker_process_is_gone_is_failed_and_queued_again(legal, mlruns):
    study, storage = journal_study(mlruns, legal)
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(finished.stdout)
    gone = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    gone.set_user_attr("harness.worker", f"{socket.gethostname()}:{dead_pid}")
    alive = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    alive.set_user_attr("harness.worker", coordination.worker_id())
    alive.set_user_attr("harness.worker_started", coordination.process_start(os.getpid()))
    reused = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    reused.set_user_attr("harness.worker", coordination.worker_id())  # this pid, but started at another time
    reused.set_user_attr("harness.worker_started", "1")

    coordination.fail_dead_workers(study, storage)
    states = {t.number: t.state.name for t in study.trials}
    assert (states[gone.number], states[alive.number], states[reused.number]) == ("FAIL", "RUNNING", "FAIL")
    retries = [t for t in study.trials if t.state.name == "WAITING"]
    assert sorted(t.system_attrs["failed_trial"] for t in retries) == [gone.number, reused.number]
    assert all("harness.worker" not in t.user_attrs for t in retries)  # the retry is nobody's yet


@pytest.mark.fast
def test_a_trial_no_worker_took_up_is_failed_after_the_grace_period(legal, mlruns, monkeypatch):
    study, storage = journal_study(mlruns, legal)
    orphan = study.ask()  # as if its process stopped between creating it and its first line
    coordination.fail_dead_workers(study, storage)
    assert study.trials[orphan.number].state.name == "RUNNING"  # still within the grace period
    monkeypatch.setattr(coordination, "ORPHAN_SECONDS", 0)
    time.sleep(0.01)
    coordination.fail_dead_workers(study, storage)
    assert study.trials[orphan.number].state.name == "FAIL"


@pytest.mark.fast
def test_a_trial_the_total_does_not_need_is_surplus(legal, mlruns):
    study, _ = journal_study(mlruns, legal)
    first, second = study.ask(), study.ask()  # two workers found room for the last missing trial at once
    assert not coordination.is_surplus(study, first.number, total=1)
    assert coordination.is_surplus(study, second.number, total=1)
    assert not coordination.is_surplus(study, second.number, total=2)


def claim_in_a_new_process(storage_url: str) -> bool:
    study = optuna.load_study(study_name="legal-smoke", storage=open_storage(storage_url))
    return coordination.claim(storage_url, study, "zero-shot")[0]


@pytest.mark.parametrize("kind", ["journal", "sqlite"])
def test_of_workers_claiming_at_once_exactly_one_wins_and_no_study_list_shows_the_claim(mlruns, kind):
    import multiprocessing

    mlruns.mkdir(parents=True)
    storage_url = str(journal(mlruns)) if kind == "journal" else f"sqlite:///{mlruns / 'optuna.db'}"
    optuna.create_study(study_name="legal-smoke", storage=open_storage(storage_url))
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        won = pool.map(claim_in_a_new_process, [storage_url] * 4)
    assert sorted(won) == [False, False, False, True]
    assert optuna.get_all_study_names(open_storage(storage_url)) == ["legal-smoke"]


@pytest.mark.fast
@pytest.mark.parametrize("kind", ["journal", "sqlite"])
def test_a_claim_is_per_study_so_a_study_made_again_under_its_name_claims_afresh(mlruns, kind):
    mlruns.mkdir(parents=True)
    storage_url = str(journal(mlruns)) if kind == "journal" else f"sqlite:///{mlruns / 'optuna.db'}"

    def create() -> optuna.Study:  # as `open_study` creates a study: with a uid of its own
        study = optuna.create_study(study_name="legal-smoke", storage=open_storage(storage_url))
        study.set_user_attr(coordination.STUDY_UID_ATTR, uuid.uuid4().hex)
        return study

    first = create()
    assert coordination.claim(storage_url, first, "zero-shot") == (True, coordination.worker_id())
    assert coordination.claim(storage_url, first, "zero-shot") == (False, coordination.worker_id())
    optuna.delete_study(study_name="legal-smoke", storage=open_storage(storage_url))
    again = create()  # SQLite gives it the deleted study's id again
    assert coordination.claim(storage_url, again, "zero-shot")[0]


@pytest.mark.fast
def test_a_claim_made_as_a_marker_study_by_an_older_harness_still_holds(mlruns):
    storage_url = str(journal(mlruns))
    study = optuna.create_study(study_name="legal-smoke", storage=open_storage(storage_url))
    marker = optuna.create_study(study_name="harness-claim:legal-smoke:register:30", storage=open_storage(storage_url))
    marker.set_user_attr("worker", "other-host:4242")
    marker.set_user_attr("done", True)
    assert coordination.claim(storage_url, study, "register:30", take_over_dead_holder=True) == (
        False,
        "other-host:4242",
    )
