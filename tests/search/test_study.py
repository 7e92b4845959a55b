"""A study's identity and name: which study a command means when none is named. Real journal files."""

from __future__ import annotations

import time

import optuna
import pytest

from harness.search.storage import open_storage
from harness.search.study import TASK_ATTR, latest_study_name, study_names

pytestmark = pytest.mark.fast


def make_study(storage_url: str, name: str, task: str) -> None:
    study = optuna.create_study(study_name=name, storage=open_storage(storage_url))
    study.set_user_attr(TASK_ATTR, task)
    study.tell(study.ask(), 0.5)  # a study's start is its first trial's
    time.sleep(0.01)


def test_without_a_study_name_a_command_takes_the_profiles_study_else_the_tasks_latest(tmp_path):
    storage_url = str(tmp_path / "optuna-journal.log")
    assert latest_study_name("legal", "cpu", storage=storage_url) == "legal-cpu"  # none yet: the default's error
    make_study(storage_url, "legal-smoke", "legal")
    make_study(storage_url, "contracts-cpu", "contracts")
    assert latest_study_name("legal", "cpu", storage=storage_url) == "legal-smoke"
    make_study(storage_url, "legal-tried-again", "legal")
    assert latest_study_name("legal", "cpu", storage=storage_url) == "legal-tried-again"
    make_study(storage_url, "legal-cpu", "legal")
    make_study(storage_url, "legal-later", "legal")
    assert latest_study_name("legal", "cpu", storage=storage_url) == "legal-cpu"
    assert study_names(storage_url, task_name="contracts") == ["contracts-cpu"]
