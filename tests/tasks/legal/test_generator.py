"""The legal generator: deterministic, sized, and hard in the ways the task asks for."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from harness.task_data import load_split
from tasks.legal.generator import DECISIONS, DISPUTE_SUBJECTS, MAX_WORDS, MIN_WORDS, generate_split

pytestmark = pytest.mark.fast  # the fast tier: no process started, no training (make test-fast)


@pytest.fixture(scope="module")
def train(legal):
    return load_split(legal, "train")


def test_same_seed_same_records_other_seed_other_records():
    first = list(generate_split(3, "train", 20))
    assert first == list(generate_split(3, "train", 20))
    assert [r["text"] for r in first] != [r["text"] for r in generate_split(4, "train", 20)]


def test_texts_are_80_to_200_words(train):
    words = [len(e.text.split()) for e in train]
    assert min(words) >= MIN_WORDS == 80
    assert max(words) <= MAX_WORDS == 200


def test_case_numbers_and_rubles_look_like_arbitrazh_rulings(train):
    assert all(re.search(r"А\d{2}-\d+/20\d\d", e.text) for e in train)  # Cyrillic А, as in А40-123456/2025
    assert sum("rub" in e.text.casefold() for e in train) / len(train) > 0.95


def test_defendant_initiates_at_least_a_quarter_of_cases(train):
    share = Counter(e.fields["initiator"] for e in train)["defendant"] / len(train)
    assert 0.25 <= share <= 0.5


def test_outcomes_and_subjects_are_balanced(train):
    decisions = Counter(e.fields["decision"] for e in train)
    subjects = Counter(e.fields["dispute_subject"] for e in train)
    assert set(decisions) == set(DECISIONS) and min(decisions.values()) / len(train) > 0.28
    assert set(subjects) == set(DISPUTE_SUBJECTS) and min(subjects.values()) / len(train) > 0.09


def test_dismissed_means_nothing_awarded_and_awards_never_exceed_claims(train):
    for e in train:
        f = e.fields
        if f["decision"] == "dismissed":
            assert f["awarded_amount"] == 0
        elif f["decision"] == "satisfied":
            assert f["awarded_amount"] == f["claim_amount"]
        else:
            assert 0 < f["awarded_amount"] < f["claim_amount"]


def _amounts_in(text):
    return re.findall(r"\d[\d ,.]*\d(?: million| thousand)? (?:rubles|rub\.)|RUB \d[\d,.]*(?: million)?", text)


def test_most_texts_carry_distractor_amounts(train):
    # More written amounts than the two gold amounts: state duty, penalties, contract values, first demands.
    with_distractors = sum(len(_amounts_in(e.text)) > 2 for e in train)
    assert with_distractors / len(train) > 0.6


def test_amounts_appear_in_every_written_format(train):
    text = " ".join(e.text for e in train)
    assert re.search(r"\b\d{1,3}(?: \d{3})+ rubles", text)  # 1 250 000 rubles
    assert re.search(r"RUB \d{1,3}(?:,\d{3})+\.\d{2}\b", text)  # RUB 1,250,000.50
    assert re.search(r"\d+\.\d+ million rubles", text)  # 1.25 million rubles
    assert re.search(r"\d(?: \d{3})+,\d{2} rubles", text)  # 1 250 000,50 rubles
    assert re.search(r"rubles \d{2} kopecks", text)


def test_parties_are_written_in_many_ways(train):
    text = " ".join(e.text for e in train)
    for spelling in (
        "LLC «",
        'OOO "',
        "Limited Liability Company",
        "Public Joint-Stock Company",
        "PAO",
        "Individual Entrepreneur",
        "sole proprietor",
        '" LLC',
    ):
        assert spelling in text, spelling
    gold_forms = Counter(e.fields["plaintiff"].split()[0] for e in train)
    assert set(gold_forms) == {"LLC", "JSC", "PJSC", "IE"}


def test_the_gold_party_is_not_always_the_first_party_named(train):
    def first_named_is_plaintiff(e):
        name = e.fields["plaintiff"].split(" ", 1)[1].strip('"')
        other = e.fields["defendant"].split(" ", 1)[1].strip('"')
        return e.text.find(name) < e.text.find(other)

    share = sum(first_named_is_plaintiff(e) for e in train) / len(train)
    assert 0.5 < share < 0.85
