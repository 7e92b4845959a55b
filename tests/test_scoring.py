"""The scorer: raw text in, field-level counts and the named metrics out; never a crash on bad output."""

from __future__ import annotations

import json

import pytest

from evaluators.normalization import Vocabulary
from evaluators.scoring import extract_json_object, score_outputs
from harness.config import FieldSpec, metric_names

pytestmark = pytest.mark.fast  # the fast tier: no process started, no training (make test-fast)

FIELDS = {
    "party": FieldSpec(type="string"),
    "amount": FieldSpec(type="number"),
    "outcome": FieldSpec(type="enum", values=("won", "lost")),
    "date": FieldSpec(type="date"),
    "tags": FieldSpec(type="string_list"),
}
# The task's words (a task's YAML `normalization`): the scorer knows none by itself.
WORDS = Vocabulary(
    synonyms={"llc": ["limited liability company", "ooo"]},
    currency=["rubles", "rub"],
    subunits={"kopecks": 0.01},
    multipliers={"million": 1e6, "k": 1e3},
)
GOLD = {"party": 'LLC "Vostok"', "amount": 1250000, "outcome": "won", "date": "2025-03-01", "tags": ["a", "b"]}


def score_one(output: str, gold=GOLD):
    return score_outputs(FIELDS, [gold], [output], ["x"], vocabulary=WORDS)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a": 1}', {"a": 1}),
        ('Sure! Here it is: {"a": 1} Hope this helps.', {"a": 1}),
        ('```json\n{"a": 1}\n```', {"a": 1}),
        ('```\n{"a": {"b": 2}}\n```', {"a": {"b": 2}}),
        ('{broken {"a": 1}', {"a": 1}),  # the first parsable object wins
        ('[1, 2] then {"a": 1}', {"a": 1}),  # arrays are not objects
        ('{"a": 1', None),  # truncated
        ("no json here", None),
        ("", None),
    ],
)
def test_extract_json_object_tolerates_fences_and_prose(text, expected):
    assert extract_json_object(text) == expected


def test_a_perfect_prediction_scores_one_on_every_metric():
    metrics = score_one(json.dumps(GOLD)).metrics
    assert set(metrics) == set(metric_names(FIELDS))
    assert all(value == 1.0 for name, value in metrics.items() if name != "n")
    assert metrics["n"] == 1


def test_equivalent_spellings_score_as_correct():
    output = json.dumps(
        {
            "party": "OOO «Vostok»",
            "amount": "1 250 000 rubles",
            "outcome": "Won",
            "date": "01.03.2025",
            "tags": ["B", "a"],
        }
    )
    scores = score_one(output)
    assert scores.metrics["f1_micro"] == 1.0
    assert scores.metrics["schema_valid_rate"] == 0.0  # string amount, capitalised enum, non-ISO date


def test_unparsable_output_counts_every_field_missing_and_never_crashes():
    scores = score_one("I cannot help with that.")
    counts = scores.counts
    assert all(c.true_positives == 0 and c.false_positives == 0 for c in counts.values())
    assert counts["party"].false_negatives == 1 and counts["tags"].false_negatives == 2
    assert scores.metrics["f1_micro"] == 0.0 and scores.metrics["json_valid_rate"] == 0.0


def test_a_wrong_value_is_both_a_false_positive_and_a_false_negative():
    scores = score_one(json.dumps({**GOLD, "amount": 999}))
    amount = scores.counts["amount"]
    assert (amount.true_positives, amount.false_positives, amount.false_negatives) == (0, 1, 1)
    assert scores.metrics["f1_amount"] == 0.0
    assert scores.records[0].correct == {"party": True, "amount": False, "outcome": True, "date": True, "tags": True}
    assert scores.metrics["exact_match"] == 0.0


def test_a_null_prediction_is_only_a_false_negative():
    amount = score_one(json.dumps({**GOLD, "amount": None})).counts["amount"]
    assert (amount.true_positives, amount.false_positives, amount.false_negatives) == (0, 0, 1)


def test_predicting_a_value_where_gold_is_null_is_a_false_positive():
    amount = score_one(json.dumps({**GOLD, "amount": 5}), gold={**GOLD, "amount": None}).counts["amount"]
    assert (amount.true_positives, amount.false_positives, amount.false_negatives) == (0, 1, 0)


def test_string_lists_count_each_item():
    tags = score_one(json.dumps({**GOLD, "tags": ["a", "c", "d"]})).counts["tags"]
    assert (tags.true_positives, tags.false_positives, tags.false_negatives) == (1, 2, 1)
    assert tags.precision == pytest.approx(1 / 3) and tags.recall == pytest.approx(1 / 2)


def test_an_undeclared_enum_value_is_wrong_and_schema_invalid():
    scores = score_one(json.dumps({**GOLD, "outcome": "draw"}))
    assert scores.metrics["acc_outcome"] == 0.0 and scores.counts["outcome"].false_positives == 1
    assert scores.metrics["schema_valid_rate"] == 0.0


def test_missing_or_extra_keys_make_the_record_schema_invalid():
    assert score_one(json.dumps({k: v for k, v in GOLD.items() if k != "tags"})).metrics["schema_valid_rate"] == 0
    assert score_one(json.dumps({**GOLD, "extra": 1})).metrics["schema_valid_rate"] == 0


def test_micro_f1_pools_counts_over_fields_and_records():
    golds = [GOLD, GOLD]
    outputs = [json.dumps(GOLD), json.dumps({**GOLD, "party": "someone", "amount": None})]
    metrics = score_outputs(FIELDS, golds, outputs, ["a", "b"], vocabulary=WORDS).metrics
    # 6 items per record (4 scalars + 2 tags): a is all right; b has party FP+FN, amount FN -> tp 10, fp 1, fn 2.
    assert metrics["f1_micro"] == pytest.approx(2 * 10 / (2 * 10 + 1 + 2))
    assert metrics["f1_party"] == 0.5  # tp 1, fp 1, fn 1
    assert metrics["exact_match"] == 0.5


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="must be equal"):
        score_outputs(FIELDS, [GOLD], [], ["x"], vocabulary=WORDS)
