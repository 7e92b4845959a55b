"""legal-ru's words (its YAML's `normalization`): the gold written the other ways its decisions write it scores as
the gold itself — legal forms long or short in any grammatical case, «» or "" quotes, е for ё, and sums with spaces,
commas, руб. / коп. / рублей / копеек."""

from __future__ import annotations

import json

import pytest

from evaluators.normalization import normalize_string, parse_number
from harness.predictions import score_answers
from harness.task_data import load_split
from tasks.legal_ru import russian
from tasks.legal_ru.generator import LEGAL_FORMS

pytestmark = pytest.mark.fast  # the fast tier: no process started, no training (make test-fast)


def test_the_yaml_lists_every_case_form_of_every_long_legal_form(legal_ru):
    """The synonyms were written from pymorphy3's inflections: the same inflections, made again, are all there."""
    synonyms = legal_ru.normalization.synonyms
    for short, long in LEGAL_FORMS.items():
        forms = {russian.inflect_phrase(long, case) for case in russian.CASES}
        assert len(forms) == 5  # the accusative of an общество is its nominative, of a предприниматель its genitive
        assert forms == set(synonyms[short.casefold()]), short


@pytest.mark.parametrize("short", list(LEGAL_FORMS))
@pytest.mark.parametrize("case", russian.CASES)
def test_a_long_legal_form_in_any_case_is_its_short_form(legal_ru, short, case):
    name = "Петров А.В." if short == "ИП" else "«Восток-Трейд»"
    long = russian.inflect_phrase(LEGAL_FORMS[short], case)
    assert normalize_string(f"{long} {name}", legal_ru.vocabulary) == normalize_string(
        f"{short} {name}", legal_ru.vocabulary
    )
    assert normalize_string(f"{long.upper()} {name}", legal_ru.vocabulary) == normalize_string(
        f"{short} {name}", legal_ru.vocabulary
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ООО «Восток-Трейд»", "ооо восток-трейд"),
        ('ООО "Восток-Трейд"', "ооо восток-трейд"),  # straight quotes
        ("ООО “Восток-Трейд”", "ооо восток-трейд"),  # curly quotes
        ("ооо  ВОСТОК-ТРЕЙД", "ооо восток-трейд"),  # case and spacing
        ("«Восток-Трейд» ООО", "ооо восток-трейд"),  # the form after the name
        ("Общества с ограниченной ответственностью «Восток-Трейд»", "ооо восток-трейд"),
        ("публичному акционерному обществу «Север»", "пао север"),
        ("акционерным обществом «Север»", "ао север"),
        ("индивидуального предпринимателя Петров А. В.", "ип петров а в"),
        ("ИП Семёнов А.В.", "ип семенов а в"),  # ё is е
        ("ООО «Берёзка»", "ооо березка"),
    ],
)
def test_parties_fold_quotes_case_forms_and_yo(legal_ru, raw, expected):
    assert normalize_string(raw, legal_ru.vocabulary) == expected


def test_the_public_form_is_not_the_plain_one_and_forms_inside_names_are_left_alone(legal_ru):
    words = legal_ru.vocabulary
    assert normalize_string("ПАО «Север»", words) != normalize_string("АО «Север»", words)
    assert normalize_string("публичное акционерное общество «Север»", words) == "пао север"
    assert normalize_string("ООО «Ипподром»", words) == "ооо ипподром"
    assert normalize_string("ООО «Кама-АО»", words) == "ооо кама-ао"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("145 030 руб. 20 коп.", 145030.2),
        ("145 030 руб.", 145030.0),
        ("822 179,49 руб.", 822179.49),
        ("28 265 рублей 96 копеек", 28265.96),
        ("1 234 рубля 22 копейки", 1234.22),
        ("21 рубль 01 копейка", 21.01),
        ("22000000 руб.", 22000000.0),
        ("22 000 000,00 рублей", 22000000.0),
        ("1\u00a0200\u00a0000 руб.", 1200000.0),  # non-breaking spaces
        ("1,2 млн руб.", 1200000.0),
        ("450 тыс. руб.", 450000.0),
        ("2 млрд рублей", 2e9),
        ("1 200 000 ₽", 1200000.0),
    ],
)
def test_sums_read_in_every_way_the_decisions_write_them(legal_ru, raw, expected):
    """Digits and separators are the generic normaliser's (tests/test_normalization.py); the words are legal-ru's."""
    assert parse_number(raw, legal_ru.vocabulary) == pytest.approx(expected)


def _rubles(value: float) -> str:
    whole, kopecks = divmod(round(value * 100), 100)
    return f"{whole:,}".replace(",", " ") + f" руб. {kopecks:02d} коп."


def _long_form(party: str, case: str) -> str:
    short, name = party.split(" ", 1)
    quoted = name.replace("«", '"').replace("»", '"')
    return f"{russian.inflect_phrase(LEGAL_FORMS[short], case)} {quoted}"


@pytest.mark.parametrize("case", ["nomn", "gent", "datv"])
def test_the_gold_rewritten_the_decisions_ways_scores_as_the_gold(legal_ru, case):
    examples = load_split(legal_ru, "test-v2")
    answers = []
    for example in examples:
        fields = dict(example.fields)
        fields["plaintiff"] = _long_form(fields["plaintiff"], case)
        fields["defendant"] = fields["defendant"].replace("ё", "е").upper()
        fields["claim_amount"] = _rubles(fields["claim_amount"])
        fields["awarded_amount"] = f"{fields['awarded_amount']:,.2f}".replace(",", " ").replace(".", ",") + " рублей"
        answers.append(json.dumps(fields, ensure_ascii=False))
    metrics = score_answers(legal_ru, examples, answers).metrics
    assert metrics["f1_micro"] == 1.0
    assert {name: metrics[f"f1_{name}"] for name in ("plaintiff", "defendant", "claim_amount", "awarded_amount")} == {
        "plaintiff": 1.0,
        "defendant": 1.0,
        "claim_amount": 1.0,
        "awarded_amount": 1.0,
    }
