"""A rule-based reference for the `legal` task: regular expressions, no learning.

It is a row in every report, and it keeps the data honest: if these few rules scored well, the generated
decisions would be too templated for the search to mean anything.
"""

from __future__ import annotations

import json
import re

from evaluators.normalization import Vocabulary, parse_number

_PARTY = re.compile(
    r"(?:LLC|JSC|PJSC|OOO|AO|PAO|Limited Liability Company|(?:Public )?Joint-Stock Company)\s+[\"«][^\"»]+[\"»]"
    r"|(?:Individual Entrepreneur|individual entrepreneur|IE|sole proprietor)\s+[A-Z][a-z]+ [A-Z]\.[A-Z]\."
)
_AMOUNT = r"((?:RUB\s*)?\d[\d ,.]*\d(?:\s*(?:million|thousand))?(?:\s*(?:rubles|rub\.))?)"
# The words `_AMOUNT` matches, for reading the amounts it finds.
_AMOUNT_WORDS = Vocabulary(currency=["rubles", "rub"], multipliers={"million": 1e6, "thousand": 1e3})
_CLAIMED = re.compile(r"(?:claimed|recover|claim is|claim for|demanding|contesting|part of|as to)\s+" + _AMOUNT)
_AWARDED = re.compile(
    r"(?:recover|amount of|partially, in the amount of)\s+" + _AMOUNT + r"|" + _AMOUNT + " is awarded"
)
_SUBJECT_WORDS = {
    "supply": r"suppl|deliver",
    "lease": r"lease|rent",
    "services": r"services",
    "construction": r"construction|works",
    "loan": r"loan|borrow",
    "transport": r"carriage|freight|transport|shipment",
    "insurance": r"insur",
    "intellectual_property": r"trademark|copyright|exclusive rights|patent|licen",
}


def extract(text: str) -> dict[str, object]:
    """Guess the seven `legal` fields of one decision."""
    parties = _PARTY.findall(text)
    subject_hits = [(m.start(), name) for name, words in _SUBJECT_WORDS.items() if (m := re.search(words, text))]
    if re.search(r"in part|partially|partly", text):
        decision = "partially_satisfied"
    elif re.search(r"dismiss|reject|refuse|deny", text):
        decision = "dismissed"
    else:
        decision = "satisfied"
    claimed = _CLAIMED.search(text)
    claim_amount = parse_number(claimed.group(1), _AMOUNT_WORDS) if claimed else None
    awarded = _AWARDED.search(text)
    if decision == "dismissed":
        awarded_amount: float | None = 0.0
    elif decision == "satisfied":
        awarded_amount = claim_amount
    else:
        awarded_amount = parse_number(next(g for g in awarded.groups() if g), _AMOUNT_WORDS) if awarded else None
    defendant_acts = re.search(r"counterclaim|appeal was lodged by the defendant|appellant, the defendant", text)
    return {
        "plaintiff": parties[0] if parties else None,
        "defendant": parties[1] if len(parties) > 1 else None,
        "dispute_subject": min(subject_hits)[1] if subject_hits else None,
        "decision": decision,
        "claim_amount": claim_amount,
        "awarded_amount": awarded_amount,
        "initiator": "defendant" if defendant_acts else "plaintiff",
    }


def predict(text: str) -> str:
    """The baseline's raw output, as a model's would be: one JSON object."""
    return json.dumps(extract(text), ensure_ascii=False)
