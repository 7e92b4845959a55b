"""A rule-based reference for the `legal-ru` task: regular expressions, no learning.

It is a row in every report, and it keeps the data honest: if these few rules scored well, the generated
decisions would be too templated for the search to mean anything. The rules read what a hurried clerk would: the
first two parties named in the nominative or by their short form, the first sum demanded, keywords for the rest.
"""

from __future__ import annotations

import json
import re

from evaluators.normalization import Vocabulary, parse_number

_NAME = r"(?:«[^»]+»|\"[^\"]+\")"
_PARTY = re.compile(
    rf"(?:ООО|АО|ПАО|[Оо]бщество с ограниченной ответственностью|(?:[Пп]убличное )?[Аа]кционерное общество)\s+{_NAME}"
    r"|(?:ИП|[Ии]ндивидуальный предприниматель)\s+[А-ЯЁ][а-яё]+ [А-ЯЁ]\.\s?[А-ЯЁ]\."
)
_AMOUNT = (
    r"(\d[\d ]*(?:,\d{1,2})?\s*(?:млн\s*)?(?:руб\.|рублей|рубля|рубль)(?:\s*\d{2}\s*(?:коп\.|копеек|копейки|копейка))?)"
)
# The words `_AMOUNT` matches, for reading the amounts it finds.
_AMOUNT_WORDS = Vocabulary(
    currency=["руб", "рублей", "рубля", "рубль"],
    subunits={"коп": 0.01, "копеек": 0.01, "копейки": 0.01, "копейка": 0.01},
    multipliers={"млн": 1e6},
)
_CLAIMED = re.compile(r"(?:о взыскании|просит взыскать|составляют|в части взыскания|во взыскании)\s+" + _AMOUNT)
_AWARDED = re.compile(r"(?:в пользу [^.]*?|в размере|дополнительно|на)\s+" + _AMOUNT)
_SUBJECT_WORDS = {
    "поставка": r"поставк|товар",
    "аренда": r"аренд|найм",
    "услуги": r"услуг",
    "подряд": r"подряд|строительств|ремонт|монтаж",
    "заем": r"займ|заем|кредит",
    "перевозка": r"перевоз|груз|фрахт|экспедиц",
    "страхование": r"страхов",
    "интеллектуальные права": r"товарный знак|исключительн|лиценз|произведени",
}


def extract(text: str) -> dict[str, object]:
    """Guess the seven `legal-ru` fields of one decision."""
    parties = _PARTY.findall(text)
    subject_hits = [(m.start(), name) for name, words in _SUBJECT_WORDS.items() if (m := re.search(words, text))]
    if re.search(r"частично", text):
        decision = "удовлетворить частично"
    elif re.search(r"отказать|без удовлетворения|отклонить", text):
        decision = "отказать"
    else:
        decision = "удовлетворить"
    claimed = _CLAIMED.search(text)
    claim_amount = parse_number(claimed.group(1), _AMOUNT_WORDS) if claimed else None
    if decision == "отказать":
        awarded_amount: float | None = 0.0
    elif decision == "удовлетворить":
        awarded_amount = claim_amount
    else:
        awarded = _AWARDED.search(text)
        awarded_amount = parse_number(awarded.group(1), _AMOUNT_WORDS) if awarded else None
    defendant_acts = re.search(r"встречн\w+ иск|жалоб\w+ ответчика|ответчик обжалует", text)
    return {
        "plaintiff": parties[0] if parties else None,
        "defendant": parties[1] if len(parties) > 1 else None,
        "dispute_subject": min(subject_hits)[1] if subject_hits else None,
        "decision": decision,
        "claim_amount": claim_amount,
        "awarded_amount": awarded_amount,
        "initiator": "ответчик" if defendant_acts else "истец",
    }


def predict(text: str) -> str:
    """The baseline's raw output, as a model's would be: one JSON object."""
    return json.dumps(extract(text), ensure_ascii=False)
