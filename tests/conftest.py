"""Shared fixtures: the real `legal` task, and a way to write variants of it into tmp dirs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from harness.config import SEARCH_SPACES_DIR, TaskConfig, load_task

LEGAL_YAML = SEARCH_SPACES_DIR / "legal.yaml"


@pytest.fixture(scope="session")
def legal() -> TaskConfig:
    return load_task("legal")


@pytest.fixture
def task_copy(tmp_path: Path):
    """Write a modified copy of legal.yaml (and its eval set) to tmp; returns (yaml path, eval set path)."""

    def make(edit=None, *, text: str | None = None) -> tuple[Path, Path]:
        (tmp_path / "evaluators" / "legal").mkdir(parents=True, exist_ok=True)
        eval_set = tmp_path / "evaluators" / "legal" / "test-v1.jsonl"
        shutil.copy(SEARCH_SPACES_DIR.parent / "evaluators" / "legal" / "test-v1.jsonl", eval_set)
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
