"""Shared fixtures: the real `legal` task, and a way to write variants of it into tmp dirs."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
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
    """Write a modified copy of legal.yaml (and its eval sets) to tmp; returns (yaml path, test-v1's path)."""

    def make(edit=None, *, text: str | None = None) -> tuple[Path, Path]:
        (tmp_path / "evaluators" / "legal").mkdir(parents=True, exist_ok=True)
        for stored in (SEARCH_SPACES_DIR.parent / "evaluators" / "legal").glob("*.jsonl"):
            shutil.copy(stored, tmp_path / "evaluators" / "legal" / stored.name)
        eval_set = tmp_path / "evaluators" / "legal" / "test-v1.jsonl"
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
    stored = SEARCH_SPACES_DIR.parent / "evaluators" / "legal" / "test-v1.jsonl"
    head = directory / "evaluators" / "legal" / "test-head-v1.jsonl"
    head.parent.mkdir(parents=True, exist_ok=True)
    head.write_text("".join(stored.read_text(encoding="utf-8").splitlines(keepends=True)[:examples]), encoding="utf-8")
    data = yaml.safe_load(LEGAL_YAML.read_text())
    data["data"]["eval_sets"] = [
        {
            "name": "test-head-v1",
            "path": "../evaluators/legal/test-head-v1.jsonl",
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


@pytest.fixture(scope="session")
def two_trial_study(legal, tmp_path_factory) -> Path:
    """A finished two-trial smoke search (seed recipe + one sampled) in its own mlruns, for the tests that only
    read a study (report, browser); they point HARNESS_MLRUNS at the returned directory."""
    from harness import tracking
    from harness.search import SearchOptions, run_search

    mlruns = tmp_path_factory.mktemp("two-trial-study") / "mlruns"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HARNESS_MLRUNS", str(mlruns))
        tracking.configure()
        run_search(legal, SearchOptions(trials=2, profile="smoke"))
    return mlruns
