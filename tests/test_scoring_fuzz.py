"""The scorer under anything a model can emit: property-based fuzzing (hypothesis) over `score_outputs` and the
normalisation functions, and the named outputs that once raised. It returns per-field counts for every input and
never raises: a bad answer scores 0, it does not fail a trial."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evaluators.field_types import normalize_value
from evaluators.normalization import parse_date, parse_number
from evaluators.scoring import MAX_OUTPUT_CHARS, extract_json_object, score_outputs
from tests.test_scoring import FIELDS, GOLD, WORDS  # the same five field types, gold record and words

pytestmark = pytest.mark.fast  # the fast tier: no process started, no training (make test-fast)

GOLD_ITEMS = {"party": 1, "amount": 1, "outcome": 1, "date": 1, "tags": 2}  # non-null gold values a field counts

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Numbers a model may write: integers past float's range, floats of every kind, and digit strings of any length.
adversarial_numbers = st.one_of(
    st.integers(min_value=-(10**500), max_value=10**500),
    st.floats(allow_nan=True, allow_infinity=True),
    st.from_regex(r"[+-]?\d{1,600}([.,]\d{0,50})?( ?(rub|k|million|kopecks))?", fullmatch=True),
)
json_values = st.recursive(
    st.none() | st.booleans() | adversarial_numbers | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=30,
)
# A prediction with the task's keys (or some of them), holding any JSON value.
predictions = st.dictionaries(st.sampled_from([*FIELDS, "extra"]), json_values, max_size=6)


def dump(value) -> str:
    """JSON as a model would write it; Python's `NaN`/`Infinity` spellings included (its decoder reads them)."""
    return json.dumps(value, ensure_ascii=False)


def check_scores(scores, n: int) -> None:
    """What must hold for every scored batch, whatever the outputs were."""
    assert scores.metrics["n"] == n
    for name, value in scores.metrics.items():
        if name != "n":
            assert 0.0 <= value <= 1.0, (name, value)
    for name, counts in scores.counts.items():
        assert min(counts.true_positives, counts.false_positives, counts.false_negatives) >= 0
        # every gold value is either found or missed, once
        assert counts.true_positives + counts.false_negatives == GOLD_ITEMS[name] * n, name


@FUZZ
@given(st.lists(st.text(), min_size=1, max_size=4))
def test_arbitrary_text_is_scored_never_raised(outputs):
    ids = [str(i) for i in range(len(outputs))]
    check_scores(score_outputs(FIELDS, [GOLD] * len(outputs), outputs, ids, vocabulary=WORDS), len(outputs))


@FUZZ
@given(predictions, st.sampled_from(["{}", "Here: {} thanks", "```json\n{}\n```", "{} {}"]))
def test_arbitrary_json_values_are_scored_never_raised(prediction, wrapping):
    output = wrapping.replace("{}", dump(prediction), 1)
    scores = score_outputs(FIELDS, [GOLD], [output], ["x"], vocabulary=WORDS)
    check_scores(scores, 1)
    assert scores.records[0].json_valid  # an object was there to find


@FUZZ
@given(json_values)
def test_any_json_value_normalises_to_its_type_or_none(value):
    for spec in FIELDS.values():
        normalized = normalize_value(spec, value, WORDS)
        if spec.type == "number" and normalized is not None:
            assert math.isfinite(normalized)
        if value is None:
            assert normalized is None  # absent, whatever the type
        elif spec.type == "string_list":
            assert isinstance(normalized, frozenset)
        elif normalized is not None:
            assert isinstance(normalized, float if spec.type == "number" else str)


@FUZZ
@given(adversarial_numbers)
def test_adversarial_numbers_parse_to_a_finite_float_or_none(value):
    number = parse_number(value, WORDS)
    assert number is None or (isinstance(number, float) and math.isfinite(number))


@FUZZ
@given(st.text(max_size=60))
def test_dates_parse_to_iso_or_none(text):
    date = parse_date(text)
    assert date is None or (len(date) == 10 and parse_date(date) == date)


@FUZZ
@given(st.integers(min_value=1, max_value=200_000), st.sampled_from(["[", '{"a":', '{"a": [1,']))
def test_any_nesting_depth_is_scored_never_raised(depth, opening):
    output = opening * depth + "1" + "]" * depth
    check_scores(score_outputs(FIELDS, [GOLD], [output], ["x"], vocabulary=WORDS), 1)


NAMED_OUTPUTS = {
    "a 400-digit amount": '{"amount": ' + "9" * 400 + "}",
    "a 5,000-digit amount (past Python's int digit limit)": '{"amount": ' + "9" * 5000 + "}",
    "1e999": '{"amount": 1e999}',
    "NaN": '{"amount": NaN}',
    "-Infinity as a string": '{"amount": "-Infinity"}',
    "a 600-digit amount as text": '{"amount": "' + "1" * 600 + ' rubles"}',
    "50,000 nested objects": '{"a":' * 50_000,
    "100,000 nested arrays": "[" * 100_000,
    "lone surrogates": '{"party": "\\ud800\\udfff\\udc00", "tags": ["\\ud83d"]}',
    "two megabytes of braces": "x{" * (MAX_OUTPUT_CHARS + 1),
    "a JSON array instead of an object": '[{"party": "LLC Vostok"}]',
    "a JSON array of scalars": '[1250000, "won", null]',
    "a string instead of an object": '"LLC Vostok"',
    "lists where scalars belong": '{"party": ["LLC"], "amount": [1], "outcome": ["won"], "date": [1], "tags": 5}',
    "objects everywhere": '{"party": {}, "amount": {}, "outcome": {}, "date": {}, "tags": {"a": 1}}',
}


def test_named_outputs_that_once_raised_are_scored():
    outputs = list(NAMED_OUTPUTS.values())
    scores = score_outputs(FIELDS, [GOLD] * len(outputs), outputs, list(NAMED_OUTPUTS), vocabulary=WORDS)
    check_scores(scores, len(outputs))
    by_id = {record.id: record for record in scores.records}
    # Unreadable amounts were predicted: each is a false positive, not a match and not a crash.
    assert not by_id["a 400-digit amount"].correct["amount"]
    assert by_id["a 400-digit amount"].json_valid
    assert not by_id["50,000 nested objects"].json_valid
    # The first object anywhere is the answer, inside an array too; an array with none is no answer.
    assert by_id["a JSON array instead of an object"].correct["party"]
    assert not by_id["a JSON array of scalars"].json_valid
    assert by_id["lists where scalars belong"].json_valid and not by_id["lists where scalars belong"].schema_valid
    assert scores.counts["amount"].false_positives >= 6


def test_an_object_after_the_bounds_is_not_searched_for():
    """The bounds are what they say: an object within them is found, one past them is not."""
    assert extract_json_object("{" * 255 + ' {"amount": 1}') == {"amount": 1}
    assert extract_json_object("{" * 256 + ' {"amount": 1}') is None
    assert extract_json_object(" " * (MAX_OUTPUT_CHARS - 20) + '{"amount": 1}') == {"amount": 1}
    assert extract_json_object(" " * MAX_OUTPUT_CHARS + '{"amount": 1}') is None
