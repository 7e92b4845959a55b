"""The suite's own rules: where CI runs it, a test whose component is missing fails instead of skipping."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("ci", "outcome"), [("", "1 skipped"), ("0", "1 skipped"), ("true", "1 failed"), ("1", "1 failed")]
)
def test_a_missing_component_skips_on_a_developer_machine_and_fails_under_ci(tmp_path, ci, outcome):
    test = tmp_path / "test_needs_a_widget.py"
    test.write_text(
        "from tests.conftest import component_missing\n\n\ndef test_needs_a_widget():\n"
        "    component_missing('no widget installed')\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rsf", "-p", "no:cacheprovider", str(test)],
        capture_output=True, text=True, cwd=ROOT, timeout=120, env={**os.environ, "CI": ci},
    )  # fmt: skip
    assert outcome in result.stdout, result.stdout[-2000:]
    assert "no widget installed" in result.stdout
