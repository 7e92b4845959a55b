"""Cost per document and per token from measured throughput, and the form picked under a constraint."""

from __future__ import annotations

import pytest

from harness.costs import (
    Constraint,
    Load,
    Prices,
    choose_load,
    cost,
    pareto_front,
    pick,
    self_hosted_per_million_output,
)
from harness.errors import HarnessError

# 100 documents of 500 prompt tokens and 100 answer tokens, in 50 s at concurrency 16; prefill alone reads 5,000
# tokens a second, so 10 of the 50 s read prompts and 40 wrote answers.
SIXTEEN = Load(concurrency=16, documents=100, seconds=50.0, input_tokens=50_000, output_tokens=10_000,
               p50_seconds=7.0, p95_seconds=9.0)  # fmt: skip
ONE = Load(concurrency=1, documents=16, seconds=32.0, input_tokens=8_000, output_tokens=1_600,
           p50_seconds=1.9, p95_seconds=2.4)  # fmt: skip


def test_a_thousand_documents_cost_the_hours_they_take_at_the_stated_utilisation():
    # 2 documents a second: 1,000 take 500 s; at $3.60 an hour that is $0.50, and $1.00 when busy half the time.
    assert cost(SIXTEEN, 5000.0, Prices(per_hour=3.6)).per_1000_documents == pytest.approx(0.50)
    assert cost(SIXTEEN, 5000.0, Prices(per_hour=3.6, utilisation=0.5)).per_1000_documents == pytest.approx(1.00)


def test_input_and_output_prices_split_the_hour_by_the_measured_prefill_and_add_up_to_the_document():
    figures = cost(SIXTEEN, 5000.0, Prices(per_hour=3.6))
    # $0.001 a second: 1M prompt tokens take 200 s ($0.20); 10,000 answer tokens took 40 s, so 1M take 4,000 ($4).
    assert figures.per_million_input == pytest.approx(0.20)
    assert figures.per_million_output == pytest.approx(4.00)
    per_document = (500 * figures.per_million_input + 100 * figures.per_million_output) / 1_000_000
    assert per_document * 1000 == pytest.approx(figures.per_1000_documents)


def test_the_api_costs_the_same_documents_tokens_at_its_prices_and_the_ratio_says_how_much_cheaper():
    figures = cost(SIXTEEN, 5000.0, Prices(per_hour=3.6, api_in=2.5, api_out=10.0))
    # A document: 500 x $2.50 + 100 x $10 per 1M = $0.00225; 1,000 of them $2.25 against $0.50 self-hosted.
    assert figures.api_per_1000_documents == pytest.approx(2.25)
    assert figures.cheaper_than_api == pytest.approx(4.5)
    assert cost(SIXTEEN, 5000.0, Prices(per_hour=3.6)).api_per_1000_documents is None


def test_the_seeds_single_stream_arithmetic():
    """47 tokens/s all hour is 169,200 tokens: at $2 an hour, $11.82 per 1M output tokens."""
    assert self_hosted_per_million_output(2.0, 47.0) == pytest.approx(11.82, abs=0.005)


def test_the_throughput_is_the_busiest_concurrency_that_meets_the_latency_target():
    assert choose_load([ONE, SIXTEEN], None) is SIXTEEN
    assert choose_load([ONE, SIXTEEN], 10.0) is SIXTEEN
    assert choose_load([ONE, SIXTEEN], 3.0) is ONE
    assert choose_load([ONE, SIXTEEN], 2.0) is None


@pytest.mark.parametrize(
    ("prices", "message"),
    [
        (dict(per_hour=-1.0), "--price-per-hour must be 0 or more"),
        (dict(per_hour=1.0, utilisation=0.0), r"--utilisation is the busy share of the paid hours, in \(0, 1\]"),
        (dict(per_hour=1.0, utilisation=1.5), "got 1.5"),
        (dict(per_hour=1.0, api_in=2.5), "give both --api-price-in and --api-price-out"),
    ],
)
def test_prices_that_cannot_be_are_refused_naming_the_option(prices, message):
    with pytest.raises(HarnessError, match=message):
        Prices(**prices)


def test_a_prefill_rate_that_leaves_no_decoding_time_is_an_error_not_a_negative_price():
    with pytest.raises(HarnessError, match=r"leaves no time for decoding in a run of 50\.0 s"):
        cost(SIXTEEN, 500.0, Prices(per_hour=1.0))


FORMS = [
    {"form": "merged bf16", "f1_micro": 0.975, "size_mb": 270.0, "p95_seconds": 9.0, "cost_per_1000": 0.40},
    {"form": "gguf q8_0", "f1_micro": 0.975, "size_mb": 145.0, "p95_seconds": 6.0, "cost_per_1000": 0.30},
    {"form": "gguf q4_0", "f1_micro": 0.946, "size_mb": 78.0, "p95_seconds": 4.0, "cost_per_1000": 0.25},
    {"form": "lora", "f1_micro": 0.970, "size_mb": 295.0, "p95_seconds": 12.0, "cost_per_1000": 0.60},
]


def test_the_pick_is_the_best_f1_among_the_forms_that_meet_every_limit():
    assert pick(FORMS, Constraint())["form"] == "gguf q8_0"  # ties with merged on f1, smaller
    assert pick(FORMS, Constraint(max_size_mb=100))["form"] == "gguf q4_0"
    assert pick(FORMS, Constraint(max_p95_seconds=5.0, max_cost_per_1000=0.26))["form"] == "gguf q4_0"
    assert pick(FORMS, Constraint(max_size_mb=50)) is None


def test_a_constraint_says_why_a_form_misses_it():
    constraint = Constraint(max_p95_seconds=5.0, max_size_mb=200, max_cost_per_1000=0.5)
    assert constraint.misses(FORMS[0]) == ["p95 9.00 s > 5.00 s", "size 270 MB > 200 MB"]
    assert constraint.misses({"f1_micro": 0.9}) == ["no p95_seconds measured", "no size_mb measured",
                                                     "no cost_per_1000 measured"]  # fmt: skip


def test_the_pareto_front_keeps_the_forms_nothing_beats_on_quality_and_cost_cheapest_first():
    front = pareto_front(FORMS, lambda c: c["size_mb"])
    assert [c["form"] for c in front] == ["gguf q4_0", "gguf q8_0"]
    assert [c["form"] for c in pareto_front(FORMS, lambda c: c["p95_seconds"])] == ["gguf q4_0", "gguf q8_0"]
