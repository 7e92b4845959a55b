"""Field types, each defined once: one schema serves gold-record validation, `schema_valid_rate` and constrained
decoding; one normaliser per type serves scoring."""

from __future__ import annotations

import jsonschema
import pytest

from evaluators.field_types import FIELD_TYPES, is_schema_valid, normalize_value, record_schema, value_problem
from evaluators.normalization import NO_WORDS, Vocabulary
from harness.config import FieldSpec

pytestmark = pytest.mark.fast  # the fast tier: no process started, no training (make test-fast)


def test_string_lists_become_sets_of_normalised_strings():
    spec, words = FieldSpec(type="string_list"), Vocabulary(synonyms={"llc": ["ooo"]})
    assert normalize_value(spec, ['LLC "A"', "OOO «A»", "IE Petrov A.V."], words) == frozenset(
        {"llc a", "ie petrov a v"}
    )
    assert normalize_value(spec, "LLC A", words) == frozenset({"llc a"})  # a lone string still scores as one item


def test_schema_validity_is_stricter_than_scoring():
    number = FieldSpec(type="number")
    assert is_schema_valid(number, 1250000) and is_schema_valid(number, None)
    assert not is_schema_valid(number, "1 250 000")  # scores as a number, but is not a JSON number
    assert not is_schema_valid(number, True)
    enum = FieldSpec(type="enum", values=("a", "b"))
    assert is_schema_valid(enum, "a") and not is_schema_valid(enum, "A")
    date = FieldSpec(type="date")
    assert is_schema_valid(date, "2025-03-01") and not is_schema_valid(date, "01.03.2025")
    string_list = FieldSpec(type="string_list")
    assert is_schema_valid(string_list, ["a"]) and not is_schema_valid(string_list, "a")


def test_a_date_must_be_a_real_day_in_iso_form_wherever_it_is_checked():
    date = FieldSpec(type="date")
    for impossible in ("2025-13-45", "2025-02-29", "2025-3-1", "20250301"):
        assert not is_schema_valid(date, impossible), impossible
        assert value_problem(date, impossible) == "expected an ISO date YYYY-MM-DD"
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(
                {"date": impossible}, record_schema({"date": date}), format_checker=jsonschema.FormatChecker()
            )
    assert is_schema_valid(date, "2024-02-29") and value_problem(date, "2024-02-29") is None


def test_every_field_type_has_a_schema_a_gold_check_and_a_normaliser_that_agree():
    examples = {"string": "LLC A", "number": 1250.5, "enum": "a", "date": "2025-03-01", "string_list": ["a"]}
    assert set(examples) == set(FIELD_TYPES)  # a new type gets an example here
    for name, value in examples.items():
        spec = FieldSpec(type=name, values=("a", "b") if name == "enum" else None)
        assert is_schema_valid(spec, value) and value_problem(spec, value) is None
        assert normalize_value(spec, value, NO_WORDS) is not None
        assert not is_schema_valid(spec, {"an": "object"}) and value_problem(spec, {"an": "object"})
        assert (
            is_schema_valid(spec, None) and normalize_value(spec, None, NO_WORDS) is None
        )  # null: "not in the document"


def test_an_enum_value_outside_the_declared_ones_names_them():
    enum = FieldSpec(type="enum", values=("satisfied", "dismissed"))
    assert value_problem(enum, "won") == "not a declared value; expected one of satisfied, dismissed"
