"""The results page: the ladder on every stored eval set, each stage's cost, the leaderboard, written from a study,
and cached on the runs so that writing it again evaluates nothing."""

from __future__ import annotations

import json
import re

import pytest
from mlflow.tracking import MlflowClient

from harness.errors import HarnessError
from harness.results import registered_summary, write_results
from tests.conftest import SMOKE_TEST_EXAMPLES


@pytest.fixture
def registered_study(smoke_study, smoke_store):
    """The shared smoke study (two trials, the best registered), in a copy: the page caches evaluations on runs."""
    return smoke_study.task, smoke_study.summary


def test_the_page_shows_the_ladder_on_every_stored_set_and_the_leaderboard(registered_study, tmp_path):
    task, summary = registered_study
    heard: list[str] = []
    out_dir = tmp_path / "results"
    written = write_results(task, study_name=summary.study_name, out_dir=out_dir, on_progress=heard.append)
    figures = json.loads(written.figures.read_text())
    # Each evaluation is announced before it runs and its result said after.
    assert heard[0] == "zero-shot on test-head-v1: ..."
    said = [line for line in heard if "f1_micro" in line]
    stages = ("zero-shot", "seed recipe", "best trial", "registered")
    assert [line.split(":")[0] for line in said] == [f"{stage} on test-head-v1" for stage in stages]
    registered_f1 = figures["ladder"]["registered"]["test-head-v1"]["f1_micro"]
    assert said[-1].startswith(f"registered on test-head-v1: f1_micro {registered_f1:.3f} (")
    assert list(figures["ladder"]) == ["zero-shot", "rule baseline", "seed recipe", "best trial", "registered"]
    for stage in figures["ladder"].values():
        assert set(stage) == {"test-head-v1"} and stage["test-head-v1"]["n"] == SMOKE_TEST_EXAMPLES
    # The rule baseline is computed, not stored: it reads the decisions and finds real values.
    assert figures["ladder"]["rule baseline"]["test-head-v1"]["f1_micro"] > 0.3
    assert figures["registered:legal-extractor/1"] == figures["ladder"]["registered"]
    assert {"search", "seed recipe trial", "best trial", "refit and registration"} <= set(figures["stages"])
    assert figures["stages"]["search"]["trials"] == 2 and figures["stages"]["search"]["train_tokens"] > 0
    assert [row["trial"] for row in sorted(figures["leaderboard"], key=lambda r: r["trial"])] == [0, 1]
    assert figures["machine"]["cores"] >= 1 and "avx512_bf16" in figures["machine"]

    page = written.markdown.read_text()
    assert "### test-head-v1" in page and re.search(r"\| rule baseline +\|", page) and "## Leaderboard" in page
    assert all(png.exists() and png.name in page for png in written.pngs)


def test_writing_the_page_again_reads_the_cached_evaluations(registered_study, tmp_path):
    task, summary = registered_study
    write_results(task, study_name=summary.study_name, out_dir=tmp_path / "first")
    seed_run = next(r["mlflow_run_id"] for r in summary.rows if r["seed_recipe"])
    cached = MlflowClient().get_run(seed_run).data.metrics
    assert "stored/test-head-v1/f1_micro" in cached and "stored/test-head-v1/seconds" in cached
    second = write_results(task, study_name=summary.study_name, out_dir=tmp_path / "second")
    first_figures = json.loads((tmp_path / "first" / second.figures.name).read_text())
    assert json.loads(second.figures.read_text())["ladder"] == first_figures["ladder"]
    assert "## At the full budget" not in second.markdown.read_text()  # nothing refit beside it yet


def test_the_page_quotes_the_full_budget_refits_written_beside_it(registered_study, tmp_path):
    """bench/full_budget.py writes `<study>-full-budget.json` next to the page; the page quotes it and links it."""
    task, summary = registered_study
    out_dir = tmp_path / "results"
    out_dir.mkdir()
    machine = {"cpu": "a CPU", "avx512_bf16": True}
    run = {"name": "axolotl-qlora", "seed": 0, "eval": {"test-head-v1": {"f1_micro": 0.8125}}}
    sibling = {"command": "bench/full_budget.py", "eval_sets": ["test-head-v1"], "machine": machine, "runs": [run]}
    (out_dir / f"{summary.study_name}-full-budget.json").write_text(json.dumps(sibling))
    page = write_results(task, study_name=summary.study_name, out_dir=out_dir).markdown.read_text()
    section = page.split("## At the full budget", 1)[1]
    assert f"({summary.study_name}-full-budget.md)" in section
    assert re.search(r"\| axolotl-qlora +\| 0 +\| 0\.812 +\|", section)


def test_a_studys_registered_figure_is_read_from_what_registration_recorded(registered_study, tmp_path):
    """Other study seeds beside a full page: what registration scored on the stored test set, nothing evaluated
    again, and the same figure the page gives the registered model."""
    task, summary = registered_study
    recorded = registered_summary(task, summary.study_name)
    assert recorded["source"].startswith("legal-extractor v1 recorded ")
    figures = json.loads(write_results(task, study_name=summary.study_name, out_dir=tmp_path).figures.read_text())
    assert recorded["registered"] == {"test-head-v1": figures["ladder"]["registered"]["test-head-v1"]["f1_micro"]}
    assert recorded["to_registered_seconds"] == figures["stages"]["search"]["to_registered_seconds"] > 0
    assert recorded["cpu_generation"] == figures["machine"]["cpu_generation"]
    with pytest.raises(HarnessError, match="study 'legal-nope' of task legal has no registered version"):
        registered_summary(task, "legal-nope")
