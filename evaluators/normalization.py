"""Normalisation of extracted values, per field type, so that equal meanings compare equal.

Each function returns the canonical form, or None when the value is absent or cannot be read as that type
(a value that cannot be read counts as wrong, never as a crash). Which function serves which field type is said
once, in `evaluators.field_types`. The normalisers know no language: the words a task's values are written with
(legal forms, currencies, "million") come from the task, as a `Vocabulary`.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

# No amount is written in more characters than this ("1 250 000 rubles 50 kopecks" has 27); longer text is not one.
MAX_NUMBER_CHARS = 100


class Vocabulary:
    """The words a task's values are written with, which the normalisers do not know by themselves (they know
    digits, separators, case, quotes and punctuation, in any script): a task's YAML brings its own (`normalization`).

    - `synonyms`: a canonical token and its spellings (`llc: [limited liability company, ooo]`); in a string value
      every spelling becomes the token, and tokens move to the front (`"Vostok" LLC` is `LLC "Vostok"`);
    - `currency`: words dropped from an amount (`rubles`, `руб`);
    - `subunits`: a word and its value in the main unit (`kopecks: 0.01`), for `100 rubles 50 kopecks`;
    - `multipliers`: a word after a number and its factor (`million: 1e6`);
    - `fold`: characters written two ways for one meaning (`ё: е`, `ü: ue`), replaced in values and in the words
      above before anything is compared.
    """

    def __init__(
        self,
        *,
        synonyms: Mapping[str, Sequence[str]] | None = None,
        currency: Sequence[str] = (),
        subunits: Mapping[str, float] | None = None,
        multipliers: Mapping[str, float] | None = None,
        fold: Mapping[str, str] | None = None,
    ) -> None:
        synonyms = synonyms or {}
        self._fold = str.maketrans({key.casefold(): value.casefold() for key, value in (fold or {}).items()})
        self._canonical = {
            self.folded(_words(spelling)): self.folded(token)
            for token, spellings in synonyms.items()
            for spelling in (token, *spellings)
        }
        self._tokens = frozenset(self.folded(token) for token in synonyms)
        self._synonym = _alternatives(self._canonical, before=r"(?<![\w-])(", after=r")(?![\w-])")
        self._currency = _alternatives([self.folded(word) for word in currency], before="(", after=r")\.?")
        self._subunits = {self.folded(word): value for word, value in (subunits or {}).items()}
        self._subunit = _alternatives(self._subunits, before=r"(\d+)\s*(", after=r")\.?")
        self._multipliers = {self.folded(word): value for word, value in (multipliers or {}).items()}

    def folded(self, text: str) -> str:
        """Case folded, then the task's `fold` characters replaced."""
        return text.casefold().translate(self._fold)


def _words(text: str) -> str:
    """Case folded, quotes and punctuation dropped, whitespace single: how values and spellings are compared."""
    return " ".join(re.findall(r"[\w-]+", text.casefold()))


def _alternatives(spellings: Iterable[str], *, before: str, after: str) -> re.Pattern[str] | None:
    """One pattern matching any of the spellings, longest first ("public joint stock company" before "joint
    stock company"); None when there are none."""
    ordered = sorted(set(spellings), key=len, reverse=True)
    return re.compile(before + "|".join(re.escape(s) for s in ordered) + after) if ordered else None


# What a task without a `normalization` section gets: no words at all.
NO_WORDS = Vocabulary()


_DATE_FORMATS = ("%Y-%m-%d", "%d.%m.%Y", "%Y/%m/%d", "%d %B %Y", "%B %d, %Y", "%d %b %Y", "%b %d, %Y")


def normalize_string(value: Any, vocabulary: Vocabulary) -> str | None:
    """Case, quotes (" « » “ ”), punctuation and whitespace folded; the vocabulary's fold characters replaced and
    its synonyms unified."""
    if not isinstance(value, str):
        return None
    words = vocabulary.folded(_words(value))
    if vocabulary._synonym is not None:
        words = vocabulary._synonym.sub(lambda match: vocabulary._canonical[match.group(1)], words)
    # `"Vostok" LLC` and `LLC "Vostok"` name the same company: the canonical tokens go first.
    tokens = words.split()
    first = [token for token in tokens if token in vocabulary._tokens]
    return " ".join(first + [token for token in tokens if token not in vocabulary._tokens]) or None


def parse_number(value: Any, vocabulary: Vocabulary) -> float | None:
    """Numbers as written: `1 250 000`, `1,250,000.50`, `1 250 000,50`, and with the vocabulary's words
    `1.25 million`, `RUB 5k`, `455 562 rubles 84 kopecks`."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return _finite(value)
    if not isinstance(value, str) or len(value) > MAX_NUMBER_CHARS:
        return None
    text = vocabulary.folded(value).replace("\u00a0", " ").replace("\u202f", " ")
    fraction = 0.0
    if vocabulary._subunit is not None and (subunit := vocabulary._subunit.search(text)):
        fraction = (_finite(int(subunit.group(1))) or 0.0) * vocabulary._subunits[subunit.group(2)]
        text = text[: subunit.start()] + text[subunit.end() :]
    if vocabulary._currency is not None:
        text = vocabulary._currency.sub(" ", text)
    text = text.strip()
    multiplier = 1.0
    if word_match := re.search(r"([^\W\d_]+)\.?$", text):  # a word after the number, in any script
        word = word_match.group(1)
        if word not in vocabulary._multipliers:
            return None
        multiplier = vocabulary._multipliers[word]
        text = text[: word_match.start()].strip()
    # Spaces only ever group thousands; then decide which of `,` and `.` is the decimal mark.
    text = re.sub(r"(?<=\d)\s+(?=\d)", "", text)
    if not re.fullmatch(r"[+-]?[\d.,]+", text):
        return None
    text = _unify_decimal_mark(text)
    try:
        number = float(text)
    except ValueError:
        return None
    total = _finite(number * multiplier + fraction)
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


def normalize_enum(value: Any, allowed: tuple[str, ...], vocabulary: Vocabulary | None = None) -> str | None:
    """The allowed value `value` spells, whatever its case, spaces, hyphens or underscores and the vocabulary's
    fold characters: `Partially satisfied`, `partially-satisfied` -> `partially_satisfied`, `Удовлетворить_частично`
    -> `удовлетворить частично`; None if it spells none."""
    if not isinstance(value, str):
        return None

    def canonical(text: str) -> str:
        folded = vocabulary.folded(text) if vocabulary else text.casefold()
        return re.sub(r"[\s_-]+", "_", folded.strip())

    spelled = canonical(value)
    return next((choice for choice in allowed if canonical(choice) == spelled), None)


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
