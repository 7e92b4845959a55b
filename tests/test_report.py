"""A study's report: one self-contained HTML file with every section, its PNGs, logged on the study's run."""

from __future__ import annotations

import re

import pytest
from mlflow.tracking import MlflowClient

from harness.errors import HarnessError
from harness.report import SECTIONS, build_report


@pytest.fixture
def study_store(smoke_store):
    """The shared smoke study (two trials, the best registered as v1), in a copy: a report is logged on its run."""


def test_the_report_has_every_section_with_its_figures_inlined(smoke_study, study_store, tmp_path):
    report = build_report(smoke_study.task, study_name="legal-smoke", out_dir=tmp_path / "report")
    page = report.html_path.read_text()
    assert re.findall(r"<h2>(.*?)</h2>", page) == list(SECTIONS)
    assert 'src="http' not in page and "src='http" not in page  # self-contained: nothing fetched
    inlined = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,', page)
    assert {"fields", "optimization_history", "param_importances", "parallel_coordinate", "memory_and_time"} <= set(
        inlined
    )
    assert {p.name for p in report.pngs} >= {"fields.png", "memory_and_time.png", "optimization_history.png"}
    leaderboard = page[page.index("<h2>Leaderboard</h2>") : page.index("<h2>Zero-shot")]
    assert leaderboard.count("<td>COMPLETE</td>") == 2 and "<td>yes</td>" in leaderboard  # the seed recipe's row
    versions = page[page.index("<h2>Registered and promoted versions</h2>") :]
    assert "legal-extractor v1" in versions and "@challenger" in versions  # registered from this study


def test_the_report_is_logged_on_the_studys_run(smoke_study, study_store, tmp_path):
    report = build_report(smoke_study.task, study_name="legal-smoke", out_dir=tmp_path / "report")
    logged = {f.path for f in MlflowClient().list_artifacts(report.run_id, "report")}
    assert {"report/report.html", "report/fields.png", "report/memory_and_time.png"} <= logged


def test_a_report_of_an_unknown_study_says_to_search_first(legal, study_store, tmp_path):
    with pytest.raises(HarnessError, match=r"no study 'legal-gpu' in experiment legal: run `harness search` first"):
        build_report(legal, study_name="legal-gpu", out_dir=tmp_path)
