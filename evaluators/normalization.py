"""Normalisation of extracted values, per field type, so that equal meanings compare equal.

Each function returns the canonical form, or None when the value is absent or cannot be read as that type
(a value that cannot be read counts as wrong, never as a crash). Which function serves which field type is said
once, in `evaluators.field_types`.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any

# Legal-form spellings -> one canonical token. Longest first: "public joint stock company" before "joint stock".
LEGAL_FORM_SYNONYMS = (
    ("public joint stock company", "pjsc"),
    ("public joint-stock company", "pjsc"),
    ("closed joint stock company", "cjsc"),
    ("closed joint-stock company", "cjsc"),
    ("limited liability company", "llc"),
    ("joint stock company", "jsc"),
    ("joint-stock company", "jsc"),
    ("individual entrepreneur", "ie"),
    ("sole proprietor", "ie"),
    ("pao", "pjsc"),
    ("пао", "pjsc"),
    ("zao", "cjsc"),
    ("зао", "cjsc"),
    ("ooo", "llc"),
    ("ооо", "llc"),
    ("ao", "jsc"),
    ("ао", "jsc"),
    ("ip", "ie"),
    ("ип", "ie"),
)
_LEGAL_FORM_PATTERN = re.compile(
    r"(?<![\w-])(" + "|".join(re.escape(spelling) for spelling, _ in LEGAL_FORM_SYNONYMS) + r")(?![\w-])"
)
_CANONICAL_FORM = dict(LEGAL_FORM_SYNONYMS)
_CANONICAL_FORMS = frozenset(_CANONICAL_FORM.values())

_MULTIPLIERS = {
    "billion": 1e9,
    "bn": 1e9,
    "million": 1e6,
    "mln": 1e6,
    "mio": 1e6,
    "thousand": 1e3,
    "thous": 1e3,
    "k": 1e3,
}
_CURRENCY = re.compile(r"(rubles|roubles|ruble|rouble|rub|rur|руб|₽)\.?", re.IGNORECASE)
_KOPECKS = re.compile(r"(\d+)\s*(kopecks|kopeks|kopeck|kop)\.?", re.IGNORECASE)
# No amount is written in more characters than this ("1 250 000 rubles 50 kopecks" has 27); longer text is not one.
MAX_NUMBER_CHARS = 100
_DATE_FORMATS = ("%Y-%m-%d", "%d.%m.%Y", "%Y/%m/%d", "%d %B %Y", "%B %d, %Y", "%d %b %Y", "%b %d, %Y")


def normalize_string(value: Any) -> str | None:
    """Case, quotes (" « » “ ”), punctuation and whitespace folded; legal forms (LLC, OOO, ...) unified."""
    if not isinstance(value, str):
        return None
    words = " ".join(re.findall(r"[\w-]+", value.casefold()))
    words = _LEGAL_FORM_PATTERN.sub(lambda match: _CANONICAL_FORM[match.group(1)], words)
    # `"Vostok" LLC` and `LLC "Vostok"` name the same company: the legal form goes first.
    tokens = words.split()
    forms = [token for token in tokens if token in _CANONICAL_FORMS]
    return " ".join(forms + [token for token in tokens if token not in _CANONICAL_FORMS]) or None


def parse_number(value: Any) -> float | None:
    """Numbers as written in decisions: `1 250 000`, `1,250,000.50`, `1 250 000,50`, `1.25 million`, `RUB 5k`."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return _finite(value)
    if not isinstance(value, str) or len(value) > MAX_NUMBER_CHARS:
        return None
    text = value.casefold().replace("\u00a0", " ").replace("\u202f", " ")
    kopecks = 0.0
    kopeck_match = _KOPECKS.search(text)
    if kopeck_match:
        kopecks = (_finite(int(kopeck_match.group(1))) or 0.0) / 100
        text = text[: kopeck_match.start()] + text[kopeck_match.end() :]
    text = _CURRENCY.sub(" ", text).strip()
    multiplier = 1.0
    multiplier_match = re.search(r"([a-z]+)\.?$", text)
    if multiplier_match:
        word = multiplier_match.group(1)
        if word not in _MULTIPLIERS:
            return None
        multiplier = _MULTIPLIERS[word]
        text = text[: multiplier_match.start()].strip()
    # Spaces only ever group thousands; then decide which of `,` and `.` is the decimal mark.
    text = re.sub(r"(?<=\d)\s+(?=\d)", "", text)
    if not re.fullmatch(r"[+-]?[\d.,]+", text):
        return None
    text = _unify_decimal_mark(text)
    try:
        number = float(text)
    except ValueError:
        return None
    total = _finite(number * multiplier + kopecks)
    return None if total is None else round(total, 6)


def _finite(number: int | float) -> float | None:
    """As a float, or None when it is not a finite one (NaN, infinity, an integer past float's range)."""
    try:
        converted = float(number)
    except OverflowError:
        return None
    return converted if math.isfinite(converted) else None


def _unify_decimal_mark(text: str) -> str:
    """`1,250,000.50` and `1.250.000,50` -> `1250000.50`; a lone comma before 3 digits groups thousands."""
    if "," in text and "." in text:
        decimal = "," if text.rfind(",") > text.rfind(".") else "."
        thousands = "." if decimal == "," else ","
        return text.replace(thousands, "").replace(decimal, ".")
    for mark in (",", "."):
        count = text.count(mark)
        if count > 1:  # several marks can only be thousands groups
            return text.replace(mark, "")
        if count == 1:
            after = text.split(mark)[1]
            if mark == "," and len(after) == 3:
                return text.replace(",", "")  # 1,250 is one thousand two hundred fifty
            return text.replace(mark, ".")  # 1250,5 and 1.25 are decimals
    return text


def numbers_equal(a: float, b: float) -> bool:
    """Amounts match to the kopeck."""
    return math.isclose(a, b, rel_tol=0.0, abs_tol=0.005)


def normalize_enum(value: Any, allowed: tuple[str, ...]) -> str | None:
    """`Partially satisfied`, `partially-satisfied` -> `partially_satisfied`; None if not an allowed value."""
    if not isinstance(value, str):
        return None
    canonical = re.sub(r"[\s-]+", "_", value.strip().casefold())
    return canonical if canonical in allowed else None


def parse_date(value: Any) -> str | None:
    """A date in ISO form (`2025-03-01`) from ISO, `01.03.2025`, `1 March 2025` or `March 1, 2025`."""
    if not isinstance(value, str):
        return None
    text = " ".join(value.strip().split())
    for date_format in _DATE_FORMATS:
        try:
            return dt.datetime.strptime(text, date_format).date().isoformat()
        except ValueError:
            continue
    return None
