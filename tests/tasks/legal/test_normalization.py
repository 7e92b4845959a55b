"""legal's words (its YAML's `normalization`): the ways its decisions write legal forms and amounts all score as the
gold value."""

from __future__ import annotations

import pytest

from evaluators.normalization import normalize_string, parse_number

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
def test_legal_forms_are_one_token_in_any_spelling_english_or_russian(legal, raw, expected):
    assert normalize_string(raw, legal.vocabulary) == expected


def test_legal_form_words_inside_a_name_are_left_alone(legal):
    assert normalize_string('LLC "Aorta"', legal.vocabulary) == "llc aorta"
    assert normalize_string('LLC "Kama-AO"', legal.vocabulary) == "llc kama-ao"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
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
def test_amounts_read_with_every_word_the_decisions_write_them_with(legal, raw, expected):
    """Digits and separators are the generic normaliser's (tests/test_normalization.py); the words are legal's."""
    assert parse_number(raw, legal.vocabulary) == pytest.approx(expected)
