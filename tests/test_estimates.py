"""What a search will cost, said before it starts: the shares of trials each pruning fate takes, and the estimate
corrected by what finished trials really took."""

from __future__ import annotations

import pytest

from harness.config import BudgetSpec, PruningSpec
from harness.estimates import (
    Forecast,
    Machine,
    TokenCounts,
    Workload,
    promotion_share,
    search_estimate,
    trial_fates,
    trial_seconds,
)
from harness.memory import ModelShape

pytestmark = pytest.mark.fast  # the fast tier: no process started, no training (make test-fast)

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
    # Calibration: 258 training tokens/s for SmolLM2 on 2 AVX-512-bf16 cores whose bf16 matmuls run at 390 GFLOP/s,
    # the mean over the recipes of a legal-cpu search's complete trials (quantized bases and mlp adapters included).
    tokens_per_second = 160 * 407 / workload().train_seconds(160)
    assert tokens_per_second == pytest.approx(258, rel=0.1)


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


def forecast_of_30_trials() -> Forecast:
    estimate = search_estimate(workload(), BUDGET, REFIT, trials=30, total_steps=40, refit_steps=300,
                               pruning=PruningSpec(first_rung=0.125), zero_shot=False, test_examples=200,
                               generation_batch_size=16)  # fmt: skip
    return Forecast(estimate, workload(), BUDGET, (5, 15), 16)


def finish(forecast: Forecast, *, steps: int, complete: bool, slower: float, times: int = 1) -> None:
    predicted = trial_seconds(workload(), BUDGET, steps=steps, complete=complete,
                              rungs_passed=sum(1 for rung in (5, 15) if rung <= steps),
                              generation_batch_size=16)  # fmt: skip
    for _ in range(times):
        forecast.trial_finished(seconds=slower * predicted, steps=steps, complete=complete)


def test_a_machine_twice_as_slow_as_the_model_says_doubles_the_time_left():
    forecast = forecast_of_30_trials()
    before = forecast.seconds_left(3)
    # 27 trials in halving's own proportions (18 stopped at the first rung, 6 at the second, 3 complete), each
    # taking twice what the model predicts.
    finish(forecast, steps=5, complete=False, slower=2, times=18)
    finish(forecast, steps=15, complete=False, slower=2, times=6)
    finish(forecast, steps=40, complete=True, slower=2, times=3)
    assert forecast.factor == pytest.approx(2.0)
    assert forecast.seconds_left(3) == pytest.approx(2 * before)


def test_trials_that_pruning_lets_through_more_often_than_expected_lengthen_the_time_left():
    forecast = forecast_of_30_trials()
    before = forecast.seconds_left(20)
    finish(forecast, steps=40, complete=True, slower=1, times=10)  # a sampler that found a good region
    assert forecast.factor == pytest.approx(1.0)  # as fast as predicted...
    full = forecast.estimate.per_full_trial_seconds
    assert before < forecast.seconds_left(20) < 20 * full + forecast.estimate.refit_seconds  # ...but longer trials
    finish(forecast, steps=40, complete=True, slower=1, times=90)
    assert forecast.seconds_left(20) == pytest.approx(20 * full + forecast.estimate.refit_seconds, rel=0.05)


def test_a_sampler_that_learns_is_expected_to_pass_more_trials_through_each_rung():
    pruning = PruningSpec(first_rung=0.125, reduction_factor=3)
    assert promotion_share("random", pruning) == pytest.approx(1 / 3)
    assert promotion_share("tpe", pruning) > 1 / 3 and promotion_share("tpe", None) is None
    learning = trial_fates(40, pruning, promoted=promotion_share("tpe", pruning))
    assert learning[-1][1] > trial_fates(40, pruning)[-1][1]  # more trials complete
    assert sum(share for _, share in learning) == pytest.approx(1.0)


def test_the_refit_is_predicted_at_the_best_trials_measured_training_speed():
    forecast = forecast_of_30_trials()
    estimate = forecast.estimate
    before = forecast.seconds_left(0)
    assert before == pytest.approx(estimate.refit_seconds) and 0 < estimate.refit_train_seconds < before
    # The best recipe trains half as fast as the FLOP count says (mlp adapters on a 4-bit base, say).
    forecast.refit_tokens_per_second = estimate.refit_train_tokens / (2 * estimate.refit_train_seconds)
    assert forecast.seconds_left(0) == pytest.approx(before + estimate.refit_train_seconds)
