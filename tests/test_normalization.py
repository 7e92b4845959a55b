"""Normalisation rules, one test per rule: equal meanings compare equal, unreadable values become None. The words
of a language come from the task (here a made-up German one); legal's are tested with the task."""

from __future__ import annotations

import pytest

from evaluators.normalization import (
    NO_WORDS,
    Vocabulary,
    normalize_enum,
    normalize_string,
    numbers_equal,
    parse_date,
    parse_number,
)

pytestmark = pytest.mark.fast  # the fast tier: no process started, no training (make test-fast)


# A task's words, as its YAML's `normalization` gives them: the normalisers know none by themselves.
WORDS = Vocabulary(
    synonyms={"gmbh": ["gesellschaft mit beschränkter haftung"], "ag": ["aktiengesellschaft"]},
    currency=["euro", "eur", "€"],
    subunits={"cent": 0.01},
    multipliers={"millionen": 1e6, "mio": 1e6, "tsd": 1e3},
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('GmbH "Nord-Bau"', "gmbh nord-bau"),
        ("gmbh  NORD-BAU", "gmbh nord-bau"),  # case and whitespace
        ("GmbH «Nord-Bau»", "gmbh nord-bau"),  # guillemets
        ("GmbH “Nord-Bau”", "gmbh nord-bau"),  # curly quotes
        ('Gesellschaft mit beschränkter Haftung "Nord-Bau"', "gmbh nord-bau"),  # a spelling of the token
        ('"Nord-Bau" GmbH', "gmbh nord-bau"),  # the token goes first
        ("Aktiengesellschaft Süd", "ag süd"),
    ],
)
def test_strings_fold_case_quotes_whitespace_and_the_tasks_synonyms(raw, expected):
    assert normalize_string(raw, WORDS) == expected


def test_a_synonym_inside_a_name_is_left_alone():
    assert normalize_string('GmbH "Agora"', WORDS) == "gmbh agora"
    assert normalize_string('GmbH "Kama-AG"', WORDS) == "gmbh kama-ag"


def test_without_a_tasks_words_only_case_quotes_and_spacing_fold():
    assert normalize_string('GmbH "Nord"', NO_WORDS) == "gmbh nord"
    assert normalize_string('"Nord" GmbH', NO_WORDS) == "nord gmbh"  # no token is known, so none moves
    assert normalize_string("Gesellschaft mit beschränkter Haftung Nord", NO_WORDS) != "gmbh nord"
    assert parse_number("1 250 000,50", NO_WORDS) == 1250000.5  # digits and separators need no words
    assert parse_number("1,25 Millionen", NO_WORDS) is None  # a word the task did not give is unreadable
    assert parse_number("1 250 000 EUR", NO_WORDS) is None


# Umlauts written out (Müller, Mueller), as a task's `fold` declares them.
FOLDED = Vocabulary(
    synonyms={"gmbh": ["gesellschaft mit beschränkter haftung"]},
    currency=["gülden"],
    multipliers={"millionen": 1e6},
    fold={"ü": "ue", "Ä": "ae"},
)


def test_fold_characters_compare_as_their_replacement_in_values_and_in_the_tasks_words():
    assert normalize_string("GmbH Müller", FOLDED) == normalize_string("GmbH Mueller", FOLDED) == "gmbh mueller"
    assert normalize_string("GMBH MÜLLER", FOLDED) == "gmbh mueller"  # case folded first
    assert normalize_string("Gesellschaft mit beschraenkter Haftung Nord", FOLDED) == "gmbh nord"  # a key in upper case
    assert parse_number("1,5 Millionen Gulden", FOLDED) is None  # u is not ü
    assert parse_number("1,5 Millionen Guelden", FOLDED) == parse_number("1,5 Millionen Gülden", FOLDED) == 1500000.0


def test_without_fold_the_two_spellings_differ():
    assert normalize_string("Müller", WORDS) != normalize_string("Mueller", WORDS)


def test_empty_and_non_string_values_are_absent():
    assert normalize_string("  «» ", WORDS) is None
    assert normalize_string(42, WORDS) is None


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
        ("1,25 Millionen", 1250000.0),  # the task's multipliers
        ("EUR 1,25 Mio.", 1250000.0),
        ("450 Tsd. Euro", 450000.0),
        ("1 250 000 EUR", 1250000.0),  # the task's currency words
        ("455 562 Euro 84 Cent", 455562.84),  # and its subunits
        ("€ 100", 100.0),
    ],
)
def test_numbers_read_every_written_format(raw, expected):
    assert parse_number(raw, WORDS) == pytest.approx(expected)


@pytest.mark.parametrize("raw", ["n/a", "", "twelve", "1 250 apples", True, None, [1], float("nan")])
def test_unreadable_numbers_are_none(raw):
    assert parse_number(raw, WORDS) is None


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
        ("удовлетворить частично", "удовлетворить частично"),
        ("Удовлетворить_частично", "удовлетворить частично"),
        ("ЗАЁМ", "заем"),  # the vocabulary folds ё to е
        ("частично", None),
    ],
)
def test_enum_values_may_hold_spaces_and_the_vocabularys_fold_applies(raw, expected):
    vocabulary = Vocabulary(fold={"ё": "е"})
    assert normalize_enum(raw, ("удовлетворить", "удовлетворить частично", "заем"), vocabulary) == expected


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
