"""How a trial's failure is told and counted (the trial itself runs in tests/search/test_run.py)."""

from __future__ import annotations

import optuna
import pytest

from harness.search.objective import FailuresInARow

pytestmark = pytest.mark.fast


def test_a_trial_that_finishes_resets_the_count_of_failures_in_a_row():
    failures = FailuresInARow(2)
    failed = optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL, user_attrs={"harness.error": "boom"})
    pruned = optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED)
    assert [failures.record(failed), failures.record(pruned), failures.record(failed)] == [False, False, False]
    assert failures.record(failed) and failures.reasons[-1].endswith("boom")
