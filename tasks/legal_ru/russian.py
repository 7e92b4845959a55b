"""The Russian that `legal-ru`'s decisions are written in, from well-kept libraries rather than hand-written tables:
grammatical cases of legal forms and people's names (pymorphy3's OpenCorpora dictionary), sums in words with
рубль / копейка agreeing with the number (num2words and pymorphy3), and registration numbers (ИНН, ОГРН, ОГРНИП)
whose check digits are valid.

The check digits are computed here (a few lines each) rather than drawn from faker's ru_RU provider: faker keeps a
random state of its own, and every number must follow from the record's seeded `random.Random`.
"""

from __future__ import annotations

import random
from functools import cache
from typing import Literal

import pymorphy3
from num2words import num2words

# The grammatical cases, by pymorphy3's (OpenCorpora's) names: nominative, genitive, dative, accusative,
# instrumental, prepositional.
CASES = ("nomn", "gent", "datv", "accs", "ablt", "loct")
# What a verb agrees with: "обратился" (a man), "обратилась" (a woman), "обратилось" (an общество).
Gender = Literal["masc", "femn", "neut"]


@cache
def _analyzer() -> pymorphy3.MorphAnalyzer:
    return pymorphy3.MorphAnalyzer()  # loads its dictionary once (about a second)


def _parse(word: str, *grammemes: str) -> pymorphy3.analyzer.Parse:
    """The first reading of `word` that carries all the grammemes (`Surn`, `masc`, ...)."""
    for parse in _analyzer().parse(word):
        if all(grammeme in parse.tag for grammeme in grammemes):
            return parse
    raise ValueError(f"pymorphy3 has no reading of {word!r} with {', '.join(grammemes)}")


def _as_written(inflected: str, original: str) -> str:
    """pymorphy3 answers in lower case: give the inflected word the original's capitalisation."""
    if original.isupper() and len(original) > 1:
        return inflected.upper()
    return inflected[:1].upper() + inflected[1:] if original[:1].isupper() else inflected


# The inflections are pure and few (a few hundred names and phrases in six cases): each is looked up once, which
# makes generating a split about thirty times faster.
@cache
def inflect_phrase(phrase: str, case: str) -> str:
    """A noun phrase in a case: the words up to its head noun agree with the case, the rest is kept
    ("общество с ограниченной ответственностью" -> "обществом с ограниченной ответственностью")."""
    words = phrase.split()
    for index, word in enumerate(words):
        parse = _analyzer().parse(word)[0]
        words[index] = _as_written(parse.inflect({case}).word, word)
        if "NOUN" in parse.tag:
            break
    return " ".join(words)


@cache
def inflect_person(words: tuple[str, ...], gender: Gender, case: str) -> tuple[str, ...]:
    """A surname and optionally a first name and patronymic ("Петров", "Алексей", "Викторович") in a case, in the
    person's gender ("Петровой" for a woman in the genitive); the masculine forms are given."""
    tags = ("Surn", "Name", "Patr")
    inflected = []
    for word, tag in zip(words, tags, strict=False):
        grammemes = {case} if tag == "Name" else {case, gender}  # first names are of one gender already
        parse = _parse(word, tag)
        inflected.append(_as_written(parse.inflect(grammemes).word, word))
    return tuple(inflected)


def is_dictionary_word(word: str) -> bool:
    """Whether pymorphy3's dictionary holds the word in some form (a misspelt inflection is not there)."""
    return bool(_analyzer().word_is_known(word.lower()))


@cache
def inflect_verb(verb: str, gender: Gender) -> str:
    """A past-tense verb agreeing with its subject's gender: `обратился` -> `обратилось` for an общество."""
    return _as_written(_parse(verb, "VERB").inflect({gender}).word, verb)


def number_in_words(number: int) -> str:
    """`1200000` -> `один миллион двести тысяч`."""
    return str(num2words(number, lang="ru"))


def rubles_in_words(value: float) -> str:
    """`1 200 000.5` -> `один миллион двести тысяч рублей 50 копеек`, as decisions repeat a sum in brackets."""
    whole, kopecks = divmod(round(value * 100), 100)
    return f"{number_in_words(whole)} {agree('рубль', whole)} {kopecks:02d} {agree('копейка', kopecks)}"


def agree(noun: str, number: int) -> str:
    """The noun's form after a number: 1 рубль, 2 рубля, 5 рублей, 21 копейка."""
    return _agree(noun, number % 100)  # the form depends on the last two digits only


@cache
def _agree(noun: str, number: int) -> str:
    return str(_parse(noun, "NOUN").make_agree_with_number(number).word)


# Registration numbers: ИНН 10 digits for a company and 12 for a person; ОГРН 13 digits, ОГРНИП 15. Both start
# with the region's code (ИНН) or carry it after the registration year (ОГРН).
def company_numbers(rng: random.Random, region: str) -> tuple[str, str]:
    """A company's (ИНН, ОГРН) registered in the region (two digits, "77" for Moscow)."""
    inn = region + "".join(str(rng.randint(0, 9)) for _ in range(7))
    inn += _inn_digit(inn, (2, 4, 10, 3, 5, 9, 4, 6, 8))
    ogrn = rng.choice("15") + f"{rng.randint(2, 24):02d}" + region + f"{rng.randint(0, 9_999_999):07d}"
    return inn, ogrn + str(int(ogrn) % 11 % 10)


def entrepreneur_numbers(rng: random.Random, region: str) -> tuple[str, str]:
    """An individual entrepreneur's (ИНН, ОГРНИП) in the region."""
    inn = region + "".join(str(rng.randint(0, 9)) for _ in range(8))
    inn += _inn_digit(inn, (7, 2, 4, 10, 3, 5, 9, 4, 6, 8))
    inn += _inn_digit(inn, (3, 7, 2, 4, 10, 3, 5, 9, 4, 6, 8))
    while True:
        ogrnip = "3" + f"{rng.randint(4, 24):02d}" + region + f"{rng.randint(0, 999_999_999):09d}"
        # The check digit is the remainder mod 13, of which the last digit is kept when it has two. Remainders of
        # 10-12 are drawn again, so that readers that skip that last step (python-stdnum) accept every number too.
        if int(ogrnip) % 13 < 10:
            return inn, ogrnip + str(int(ogrnip) % 13)


def _inn_digit(digits: str, weights: tuple[int, ...]) -> str:
    return str(sum(weight * int(digit) for weight, digit in zip(weights, digits, strict=True)) % 11 % 10)
