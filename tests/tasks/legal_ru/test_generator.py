"""The legal-ru generator: deterministic, sized for SmolLM2's context, written as Russian courts write, hard in legal's
ways, and every gold value readable from its text."""

from __future__ import annotations

import re
import statistics
from collections import Counter, defaultdict

import pytest
from stdnum.ru import inn, ogrn

from harness.prompts import prompt_turns
from harness.task_data import load_split, split_names
from tasks.legal_ru import russian
from tasks.legal_ru.generator import (
    APPEAL_COURTS,
    COURTS,
    DECISIONS,
    DISPUTE_SUBJECTS,
    LABELS,
    MAX_CHARS,
    MIN_CHARS,
    generate_split,
    generate_with_kinds,
)

pytestmark = pytest.mark.fast  # the fast tier: no process started, no training (make test-fast)


@pytest.fixture(scope="module")
def train(legal_ru):
    return load_split(legal_ru, "train")


@pytest.fixture(scope="module")
def kinds():
    """Validation's records with the kind of ruling each is: claim, counterclaim or appeal."""
    return list(generate_with_kinds(17, "validation", 400))


def test_same_seed_same_records_other_seed_other_records():
    first = list(generate_split(3, "train", 20))
    assert first == list(generate_split(3, "train", 20))
    assert [r["text"] for r in first] != [r["text"] for r in generate_split(4, "train", 20)]
    assert [r["id"] for r in first] == [f"train-{i:05d}" for i in range(20)]


def test_the_stored_sets_load_with_their_digests_and_sizes(legal_ru):
    assert split_names(legal_ru) == ["train", "validation", "test", "test-v2", "appeals-counterclaims-v2"]
    assert len(load_split(legal_ru, "test")) == 200
    assert len(load_split(legal_ru, "appeals-counterclaims-v2")) == 60
    assert (len(load_split(legal_ru, "train")), len(load_split(legal_ru, "validation"))) == (3200, 400)


def test_texts_are_450_to_950_characters_about_70_to_160_words(train):
    chars = [len(e.text) for e in train]
    words = [len(e.text.split()) for e in train]
    assert min(chars) >= MIN_CHARS == 450
    assert max(chars) <= MAX_CHARS == 950
    assert min(words) >= 60 and max(words) <= 160


def test_prompts_fit_smollm2s_context_at_most_1024_tokens_and_900_at_the_95th_percentile(legal_ru):
    from harness.model_loading import load_tokenizer, resolve_model

    tokenizer = load_tokenizer(resolve_model("tiny:llama"))  # SmolLM2's tokenizer and chat template
    for split in ("validation", "test-v2"):
        lengths = [
            len(tokenizer(tokenizer.apply_chat_template(prompt_turns(legal_ru, e.text), tokenize=False))["input_ids"])
            for e in load_split(legal_ru, split)
        ]
        assert max(lengths) <= 1024, split
        assert statistics.quantiles(lengths, n=20)[-1] <= 900, split


def test_every_registration_number_passes_its_check_digits(train):
    """Checked by python-stdnum, independently of the generator's own arithmetic."""
    numbers = Counter()
    for e in train:
        for kind, number in re.findall(r"\b(ИНН|ОГРНИП|ОГРН) (\d+)", e.text):
            valid = inn.is_valid(number) if kind == "ИНН" else ogrn.is_valid(number)
            assert valid, f"{kind} {number} in {e.id}"
            numbers[kind, len(number)] += 1
    # Companies: ИНН of 10 digits, ОГРН of 13; entrepreneurs: ИНН of 12, ОГРНИП of 15.
    assert set(numbers) == {("ИНН", 10), ("ИНН", 12), ("ОГРН", 13), ("ОГРНИП", 15)}
    assert min(numbers.values()) > 100


def test_case_numbers_carry_the_code_of_the_first_instance_court(kinds):
    code_of = {court.genitive.casefold(): court.code for court in COURTS}
    codes_of_appeal_court = {
        ordinal: {court.code for court in COURTS if APPEAL_COURTS[court.appeal][0] == ordinal}
        for ordinal, _ in APPEAL_COURTS.values()
    }
    for record, kind in kinds:
        text = record["text"]
        [code] = set(re.findall(r"Дело № (А\d\d)-\d+/20\d\d", text))
        first_line = text.splitlines()[0].casefold()
        if kind == "appeal":
            ordinal = next(o for o in codes_of_appeal_court if first_line.startswith(o.casefold()))
            assert code in codes_of_appeal_court[ordinal], record["id"]
            named = re.search(r"решение Арбитражного суда (.+?) от", text)
            if named:
                assert code_of[named.group(1).casefold()] == code, record["id"]
        else:
            assert code_of[first_line.removeprefix("арбитражный суд ")] == code, record["id"]


def test_decisions_are_laid_out_as_russian_courts_lay_them_out(kinds):
    text = "\n".join(record["text"] for record, _ in kinds)
    markers = ("ИМЕНЕМ РОССИЙСКОЙ ФЕДЕРАЦИИ", "Р Е Ш Е Н И Е", "ПОСТАНОВЛЕНИЕ", "у с т а н о в и л:", "Резолютивная")
    for marker in markers:
        assert marker in text, marker
    assert re.search(r"\d{6}, г\. [А-Я]", text)  # a court's address
    for record, kind in kinds:
        title = "постановление" if kind == "appeal" else "решение"
        assert title in record["text"].casefold().replace(" ", ""), record["id"]


def test_every_word_is_spelt_as_the_dictionary_spells_it(train):
    """Outside quoted company names and abbreviations, every word is a form pymorphy3's dictionary knows: an
    inflection gone wrong ("истеца" for "истца") is not."""
    # Street names and the like, and one rare noun, that the dictionary lacks.
    not_in_dictionary = {"невнесения", "Шарташская", "корп", "пр-т", "Ново-Песочная", "Западно-Сибирского"}
    for e in train:
        words = re.findall(r"[А-Яа-яЁё]+(?:-[А-Яа-яЁё]+)*", re.sub(r"[«\"][^»\"]*[»\"]", "", e.text))
        unknown = {w for w in words if len(w) > 1 and not w.isupper() and not russian.is_dictionary_word(w)}
        assert unknown <= not_in_dictionary, (e.id, unknown - not_in_dictionary)
    assert not russian.is_dictionary_word("истеца")


def test_amounts_appear_in_every_written_format(train):
    text = " ".join(e.text for e in train)
    assert re.search(r"\b\d{1,3}(?: \d{3})+ руб\. \d{2} коп\.", text)  # 145 030 руб. 20 коп.
    assert re.search(r"\b\d{1,3}(?: \d{3})+,\d{2} руб\.", text)  # 822 179,49 руб.
    assert re.search(r"\b\d{1,3}(?: \d{3})+ рублей \d{2} копеек", text)  # 28 265 рублей 96 копеек
    assert re.search(r"\b\d{1,3}(?: \d{3})+ рубля \d{2} копейки", text)  # the nouns agree with the number
    assert re.search(r"\b\d{7,} руб\.", text)  # 22000000 руб.
    assert re.search(r"\(один миллион [а-я ]+ рублей \d{2} копеек\)", text)  # the sum in words, in brackets
    assert re.search(r"\d \([а-я ]+\) рубл[а-я]+ \d{2} копе", text)  # 1 200 000 (один миллион двести тысяч) рублей
    assert re.search(r"\b\d+,\d млн руб\.", text)  # 1,2 млн руб.


def test_most_texts_carry_distractor_sums(train):
    """State fee, penalty, interest, representation costs, contract value, the first demand: sums that are not the
    claim, beside it."""
    with_distractors = sum(len(re.findall(r"\d (?:руб|рубл|\()|\d,\d{2} руб|млн руб", e.text)) > 2 for e in train)
    assert with_distractors / len(train) > 0.6
    text = " ".join(e.text for e in train)
    for distractor in (
        "государственную пошлину в размере",
        "– неустойка",
        "процентов за пользование чужими денежными средствами по статье 395 ГК РФ",
        "судебные расходы на оплату услуг представителя в размере",
        "Цена договора составила",
        "уточнил исковые требования",
    ):
        assert distractor in text, distractor


def test_the_defendant_initiates_counterclaims_and_two_thirds_of_appeals(kinds):
    by_kind = defaultdict(list)
    for record, kind in kinds:
        by_kind[kind].append(record["fields"]["initiator"])
    assert set(by_kind["claim"]) == {"истец"} and set(by_kind["counterclaim"]) == {"ответчик"}
    assert 0.5 < Counter(by_kind["appeal"])["ответчик"] / len(by_kind["appeal"]) < 0.8
    share = sum(r["fields"]["initiator"] == "ответчик" for r, _ in kinds) / len(kinds)
    assert 0.25 <= share <= 0.5


def test_outcomes_and_subjects_are_balanced(train):
    decisions = Counter(e.fields["decision"] for e in train)
    subjects = Counter(e.fields["dispute_subject"] for e in train)
    assert set(decisions) == {LABELS[d] for d in DECISIONS} and min(decisions.values()) / len(train) > 0.28
    assert set(subjects) == {LABELS[s] for s in DISPUTE_SUBJECTS} and min(subjects.values()) / len(train) > 0.09


def test_dismissed_means_nothing_awarded_and_awards_never_exceed_claims(train):
    for e in train:
        f = e.fields
        if f["decision"] == "отказать":
            assert f["awarded_amount"] == 0
        elif f["decision"] == "удовлетворить":
            assert f["awarded_amount"] == f["claim_amount"]
        else:
            assert 0 < f["awarded_amount"] < f["claim_amount"]


def _sums_in(text: str) -> set[float]:
    """Every sum the text writes in figures, in rubles."""
    text = re.sub(r" \([а-яё]+[а-яё0-9 ]*\)", "", text)  # the sums in words repeat the figures before them
    sums = set()
    for whole, fraction, millions, kopecks in re.findall(
        r"(\d[\d ]*?)(?:,(\d+))? ?(млн )?(?:руб\.|рубл[а-я]+)(?: (\d\d) коп)?", text
    ):
        value = float(whole.replace(" ", "") + "." + (fraction or "0")) * (1e6 if millions else 1)
        sums.add(round(value + int(kopecks or 0) / 100, 2))
    return sums


def _named_in(party: str, text: str) -> bool:
    """The gold party's name stands in the text: a company's name in quotes after its form (short, or long in any
    case), an entrepreneur's surname in any case with the same initials or with a first name and patronymic."""
    form, name = party.split(" ", 1)
    if form != "ИП":
        company = name.strip("«»")
        pattern = rf"(?:{form}|обществ\w*|обществ\w* [^«\"]*)\s[«\"]{re.escape(company)}[»\"]"
        return bool(re.search(pattern, text, re.IGNORECASE))
    surname, initials = name.split(" ")
    stem = surname.removesuffix("а")  # Петрова -> Петров-ой, Петров -> Петров-у
    first, patronymic = initials[0], initials[2]
    return bool(re.search(rf"\b{stem}\w*\s(?:{first}\.{patronymic}\.|{first}\w+ {patronymic}\w+)", text))


def test_every_gold_value_can_be_read_from_its_text(kinds):
    for record, kind in kinds:
        text, fields = record["text"], record["fields"]
        assert _named_in(fields["plaintiff"], text), (record["id"], fields["plaintiff"])
        assert _named_in(fields["defendant"], text), (record["id"], fields["defendant"])
        sums = _sums_in(text)
        assert fields["claim_amount"] in sums, (record["id"], fields["claim_amount"], sums)
        # A satisfied demand may be granted without repeating its sum; a dismissed one grants 0.
        assert fields["awarded_amount"] in (*sums, 0, fields["claim_amount"]), record["id"]
        # What is decided: a counterclaim once the original claim is out of the way, an appeal in a постановление.
        assert ("первоначальный иск" in text.casefold()) == (kind == "counterclaim"), record["id"]
        assert ("постановление" in text.casefold().replace(" ", "")) == (kind == "appeal"), record["id"]


def test_names_with_yo_are_spelled_both_ways_and_the_gold_follows_its_text(train):
    parties = [e.fields[role] for e in train for role in ("plaintiff", "defendant")]
    assert any("Семёнов" in p for p in parties) and any("Семенов" in p for p in parties)
    for e in train:
        if "ё" not in e.text:
            assert "ё" not in e.fields["plaintiff"] + e.fields["defendant"], e.id


def test_the_gold_party_is_not_always_the_first_party_named(train):
    def first_named_is_plaintiff(e):
        name = e.fields["plaintiff"].split(" ", 1)[1].strip("«»")[:5]
        other = e.fields["defendant"].split(" ", 1)[1].strip("«»")[:5]
        return e.text.find(name) < e.text.find(other)

    share = sum(first_named_is_plaintiff(e) for e in train) / len(train)
    assert 0.5 < share < 0.95


def test_the_hard_set_holds_only_appeals_and_counterclaims(legal_ru):
    kinds = Counter()
    for e in load_split(legal_ru, "appeals-counterclaims-v2"):
        appeal = "постановление" in e.text.casefold().replace(" ", "")
        counterclaim = "первоначальный иск" in e.text.casefold()
        assert appeal != counterclaim, e.id
        kinds["appeal" if appeal else "counterclaim"] += 1
    assert min(kinds.values()) >= 15
