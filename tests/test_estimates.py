"""What a search will cost, said before it starts: the shares of trials each pruning fate takes, and the estimate
corrected by what finished trials really took."""

from __future__ import annotations

import pytest

from harness.config import BudgetSpec, PruningSpec
from harness.estimates import Forecast, Machine, TokenCounts, Workload, search_estimate, trial_fates, trial_seconds
from harness.memory import ModelShape

SMOLLM2 = ModelShape(parameters=134_515_008, embedding_parameters=28_311_552, hidden_size=576,
                     intermediate_size=1536, layers=30, vocab_size=49152, kv_size=192)  # fmt: skip
BUDGET = BudgetSpec(train_examples=160, epochs=1, batch_size=4, max_seq_length=576, validation_examples=32)
REFIT = BudgetSpec(train_examples=1200, epochs=1, batch_size=4, max_seq_length=576, validation_examples=100)


def workload(flops: float = 390e9) -> Workload:
    return Workload(Machine("cpu", "2 cores", flops), SMOLLM2, TokenCounts(prompt=330, answer=77))


def test_successive_halving_lets_one_in_reduction_factor_trials_past_each_rung():
    fates = trial_fates(40, PruningSpec(first_rung=0.125, reduction_factor=3))
    assert [steps for steps, _ in fates] == [5, 15, 40]
    assert [share for _, share in fates] == pytest.approx([2 / 3, 2 / 9, 1 / 9])
    assert trial_fates(40, None) == [(40, 1.0)]


def test_a_training_token_costs_what_the_cpu_measurements_say():
    # Calibration: 420 training tokens/s for SmolLM2 on 2 AVX-512-bf16 cores whose bf16 matmuls run at 390 GFLOP/s.
    tokens_per_second = 160 * 407 / workload().train_seconds(160)
    assert tokens_per_second == pytest.approx(420, rel=0.15)


def test_pruning_makes_a_search_cheaper_and_the_estimate_grows_with_trials():
    def estimate(trials, pruning):
        return search_estimate(workload(), BUDGET, REFIT, trials=trials, total_steps=40, refit_steps=300,
                               pruning=pruning, zero_shot=True, test_examples=200,
                               generation_batch_size=16)  # fmt: skip

    pruned, unpruned = estimate(30, PruningSpec()), estimate(30, None)
    assert pruned.trial_seconds < 0.5 * unpruned.trial_seconds
    assert estimate(10, PruningSpec()).trial_seconds < pruned.trial_seconds
    assert pruned.refit_seconds == unpruned.refit_seconds > 0
    assert "30 trials ≈" in pruned.describe() and "in all" in pruned.describe()


def test_the_time_left_scales_with_what_finished_trials_took():
    estimate = search_estimate(workload(), BUDGET, REFIT, trials=30, total_steps=40, refit_steps=300,
                               pruning=PruningSpec(), zero_shot=False, test_examples=200,
                               generation_batch_size=16)  # fmt: skip
    forecast = Forecast(estimate, workload(), BUDGET, (5, 15), 16)
    before = forecast.seconds_left(29)
    predicted = trial_seconds(workload(), BUDGET, steps=5, complete=False, rungs_passed=1, generation_batch_size=16)
    forecast.trial_finished(seconds=2 * predicted, steps=5, complete=False)  # this machine is twice as slow
    assert forecast.factor == pytest.approx(2.0)
    assert forecast.seconds_left(29) == pytest.approx(2 * before)
