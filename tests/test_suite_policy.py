"""The suite's own rules: where CI runs it, a test whose component is missing fails instead of skipping; in
pytest-xdist workers each computes on its share of the cores; the slow tests run first."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_pytest(*arguments: str, **variables: str) -> subprocess.CompletedProcess[str]:
    """pytest on files outside tests/, with the suite's conftest loaded as a plugin (its hooks apply), as if started
    by hand (without what this suite's own workers set), with `variables` added to its environment."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest", *arguments]
    unset = ("OMP_NUM_THREADS", "PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID")
    environment = {key: value for key, value in os.environ.items() if key not in unset} | variables
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300, env=environment)


@pytest.mark.parametrize(
    ("ci", "outcome"), [("", "1 skipped"), ("0", "1 skipped"), ("true", "1 failed"), ("1", "1 failed")]
)
def test_a_missing_component_skips_on_a_developer_machine_and_fails_under_ci(tmp_path, ci, outcome):
    test = tmp_path / "test_needs_a_widget.py"
    test.write_text(
        "from tests.conftest import component_missing\n\n\ndef test_needs_a_widget():\n"
        "    component_missing('no widget installed')\n"
    )
    result = run_pytest("-rsf", str(test), CI=ci)
    assert outcome in result.stdout, result.stdout[-2000:]
    assert "no widget installed" in result.stdout


def test_each_of_two_workers_computes_on_its_share_of_the_cores(tmp_path):
    report = tmp_path / "threads.txt"
    test = tmp_path / "test_threads.py"
    test.write_text(
        "import os\n\nimport torch\n\n\ndef test_one():\n"
        f"    with open({str(report)!r}, 'a') as out:\n"
        "        out.write(f\"{os.environ['PYTEST_XDIST_WORKER']} {torch.get_num_threads()}\\n\")\n\n\n"
        "def test_two():\n    test_one()\n"
    )
    result = run_pytest("-n", "2", str(test))
    assert "2 passed" in result.stdout, result.stdout[-2000:]
    share = max(1, len(os.sched_getaffinity(0)) // 2)
    assert sorted(report.read_text().splitlines()) == [f"gw0 {share}", f"gw1 {share}"]


def test_the_slow_tests_are_collected_first_those_needing_the_smoke_study_last_of_them(tmp_path):
    test = tmp_path / "test_order.py"
    test.write_text(
        "import pytest\n\n\n@pytest.fixture\ndef smoke_study():\n    return None\n\n\n"
        "def test_quick():\n    pass\n\n\n"
        "@pytest.mark.slow\ndef test_slow_on_the_smoke_study(smoke_study):\n    pass\n\n\n"
        "@pytest.mark.slow\ndef test_slow():\n    pass\n\n\n"
        "def test_quick_too():\n    pass\n"
    )
    result = run_pytest("--collect-only", str(test))
    collected = [line.split("::")[1] for line in result.stdout.splitlines() if "::" in line]
    assert collected == ["test_slow", "test_slow_on_the_smoke_study", "test_quick", "test_quick_too"], result.stdout
