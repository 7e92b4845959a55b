"""Normalisation rules, one test per rule: equal meanings compare equal, unreadable values become None."""

from __future__ import annotations

import pytest

from evaluators.normalization import (
    normalize_enum,
    normalize_string,
    numbers_equal,
    parse_date,
    parse_number,
)

pytestmark = pytest.mark.fast  # the fast tier: no process started, no training (make test-fast)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('LLC "Vostok-Trade"', "llc vostok-trade"),
        ("llc  VOSTOK-TRADE", "llc vostok-trade"),  # case and whitespace
        ("LLC «Vostok-Trade»", "llc vostok-trade"),  # guillemets
        ("LLC “Vostok-Trade”", "llc vostok-trade"),  # curly quotes
        ('Limited Liability Company "Vostok-Trade"', "llc vostok-trade"),
        ('OOO "Vostok-Trade"', "llc vostok-trade"),
        ('ООО "Vostok-Trade"', "llc vostok-trade"),  # Cyrillic OOO
        ('"Vostok-Trade" LLC', "llc vostok-trade"),  # form after the name
        ('Joint-Stock Company "Sever"', "jsc sever"),
        ('AO "Sever"', "jsc sever"),
        ('Public Joint-Stock Company "Sever"', "pjsc sever"),
        ('PAO "Sever"', "pjsc sever"),
        ("Individual Entrepreneur Petrov A.V.", "ie petrov a v"),
        ("sole proprietor Petrov A. V.", "ie petrov a v"),
        ("IE Petrov A.V.", "ie petrov a v"),
    ],
)
def test_strings_fold_case_quotes_whitespace_and_legal_forms(raw, expected):
    assert normalize_string(raw) == expected


def test_legal_form_words_inside_a_name_are_left_alone():
    assert normalize_string('LLC "Aorta"') == "llc aorta"
    assert normalize_string('LLC "Kama-AO"') == "llc kama-ao"


def test_empty_and_non_string_values_are_absent():
    assert normalize_string("  «» ") is None
    assert normalize_string(42) is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (1250000, 1250000.0),
        (1250000.5, 1250000.5),
        ("1250000", 1250000.0),
        ("1 250 000", 1250000.0),  # space groups
        ("1\u00a0250\u00a0000", 1250000.0),  # non-breaking space groups
        ("1,250,000.50", 1250000.5),  # comma groups, decimal point
        ("1.250.000,50", 1250000.5),  # point groups, decimal comma
        ("1 250 000,50", 1250000.5),  # decimal comma
        ("1250,5", 1250.5),  # a lone comma before 1-2 digits is decimal
        ("1,250", 1250.0),  # a lone comma before 3 digits groups thousands
        ("1.25", 1.25),
        ("1.25 million", 1250000.0),
        ("1.25 mln", 1250000.0),
        ("RUB 1.25 million", 1250000.0),
        ("2 billion", 2e9),
        ("450 thousand rubles", 450000.0),
        ("5k", 5000.0),
        ("RUB 1,250,000.50", 1250000.5),
        ("1 250 000 rubles", 1250000.0),
        ("1 250 000 rub.", 1250000.0),
        ("455 562 rubles 84 kopecks", 455562.84),
        ("₽ 100", 100.0),
    ],
)
def test_numbers_read_every_written_format(raw, expected):
    assert parse_number(raw) == pytest.approx(expected)


@pytest.mark.parametrize("raw", ["n/a", "", "twelve", "1 250 apples", True, None, [1], float("nan")])
def test_unreadable_numbers_are_none(raw):
    assert parse_number(raw) is None


def test_numbers_match_to_the_kopeck():
    assert numbers_equal(100.004, 100.0)
    assert not numbers_equal(100.01, 100.0)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("partially_satisfied", "partially_satisfied"),
        ("Partially satisfied", "partially_satisfied"),
        ("partially-satisfied", "partially_satisfied"),
        ("  DISMISSED ", "dismissed"),
        ("won", None),
        (3, None),
    ],
)
def test_enums_fold_case_and_separators_and_reject_undeclared_values(raw, expected):
    assert normalize_enum(raw, ("satisfied", "partially_satisfied", "dismissed")) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2025-03-01", "2025-03-01"),
        ("01.03.2025", "2025-03-01"),
        ("2025/03/01", "2025-03-01"),
        ("1 March 2025", "2025-03-01"),
        ("March 1, 2025", "2025-03-01"),
        ("1 Mar 2025", "2025-03-01"),
        ("2025-02-30", None),
        ("yesterday", None),
    ],
)
def test_dates_become_iso(raw, expected):
    assert parse_date(raw) == expected
