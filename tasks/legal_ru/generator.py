"""The built-in `legal-ru` data: a seeded generator of Russian arbitrazh-court decisions with gold extraction fields.

The same task as `legal` (tasks/legal/generator.py), written as Russian courts write: a court's header and address,
"ИМЕНЕМ РОССИЙСКОЙ ФЕДЕРАЦИИ", "Дело № А40-12345/2024" with the court's own code (an appeal keeps the first
instance's), parties named with their legal form in whatever grammatical case the sentence needs and with valid
ИНН / ОГРН, "у с т а н о в и л:", sums written every way decisions write them. It is hard in legal's ways:
distractor sums (state fee, penalty, interest under art. 395 ГК РФ, representation costs, contract values, the
first demand before its clarification), counterclaims and appeals where the defendant initiates, a third party,
words like "частично" and "отказать" in passing.

Field semantics, exactly as legal's:
- `initiator`: who filed what this ruling decides: the claim (plaintiff), a counterclaim (defendant) or an
  appeal (either side). `plaintiff` and `defendant` keep their first-instance roles throughout.
- `claim_amount`: the total sum the initiator asks for, after any clarification (for an appeal: the part of the
  judgment it contests).
- `awarded_amount`: how much of that the court grants the initiator; 0 when dismissed.
Values are Russian: parties in the nominative with the short legal form ("ООО «Восток»", "ИП Петров А.В."), the
enum fields in the words `LABELS` gives ("поставка", "удовлетворить частично", "ответчик").
"""

from __future__ import annotations

import datetime as dt
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

# The same amounts as legal's decisions, drawn the same way: only their wording is Russian.
from tasks.legal.generator import _amount_value, _compact
from tasks.legal_ru import russian
from tasks.legal_ru.phrases import (
    APPEAL_COURTS,
    APPEAL_DISMISSAL_REASONS,
    APPEAL_PARTIAL_REASONS,
    APPEAL_SATISFACTION_REASONS,
    CLOSING_SENTENCES,
    COURTS,
    DISMISSAL_REASONS,
    FIRST_NAMES,
    INITIALS,
    MONTHS,
    NAME_STEMS,
    NAME_SUFFIXES,
    PARTIAL_REASONS,
    PATRONYMICS,
    PROCEDURE_SENTENCES,
    RETURNED_COUNTERCLAIM_SENTENCES,
    SATISFACTION_REASONS,
    SUBJECT_DISTRACTORS,
    SUBJECT_PHRASES,
    SURNAMES,
    TRAP_SENTENCES,
    Court,
)

DISPUTE_SUBJECTS = tuple(SUBJECT_PHRASES)
DECISIONS = ("satisfied", "partially_satisfied", "dismissed")
# The gold's words for the enum fields: Russian, as the decisions word them, so that a model reading Russian can
# copy them (the operative part's verbs, the contract's name, the role words) rather than translate. With legal's
# English values SmolLM2 had not begun to learn these three fields at 300 examples (dispute subject 0.12, decision
# 0.32: chance) while it copied the parties (0.84 / 0.96) - results/learning-curve-cpu-legal-ru.json.
LABELS = {
    "supply": "поставка",
    "lease": "аренда",
    "services": "услуги",
    "construction": "подряд",
    "loan": "заем",
    "transport": "перевозка",
    "insurance": "страхование",
    "intellectual_property": "интеллектуальные права",
    "satisfied": "удовлетворить",
    "partially_satisfied": "удовлетворить частично",
    "dismissed": "отказать",
    "plaintiff": "истец",
    "defendant": "ответчик",
}
# SmolLM2's tokenizer spends about 0.84 tokens on a character of these texts (5.7 on a word, 2.4 times English).
# The bounds are in characters, which track its tokens closely (r 0.99 against 0.95 for words: capitals and digits
# cost more per word): they keep the chat prompt within about 900 tokens at the 95th percentile and 1,024 at most
# (search_spaces/legal-ru.yaml gives the measured figures).
MIN_CHARS, MAX_CHARS = 450, 950


# The short legal forms the gold values use, and the long ones decisions write (inflected by pymorphy3).
LEGAL_FORMS = {
    "ООО": "общество с ограниченной ответственностью",
    "АО": "акционерное общество",
    "ПАО": "публичное акционерное общество",
    "ИП": "индивидуальный предприниматель",
}


@dataclass(frozen=True)
class Party:
    form: str  # ООО, АО, ПАО or ИП
    name: str  # a company's name without quotes, or a person's surname (masculine, as pymorphy3 inflects it)
    gender: russian.Gender  # what verbs agree with: an общество is neuter, an ИП a man or a woman
    numbers: str  # "ОГРН 1027700132195, ИНН 7707083893", valid check digits
    first_name: str = ""
    patronymic: str = ""

    @property
    def gold(self) -> str:
        """The field value: the short form, the nominative: ООО «Восток», ИП Петрова Е.А."""
        return f"{self.form} {self._name('nomn', full=False)}"

    def _name(self, case: str, *, full: bool) -> str:
        if self.form != "ИП":
            return f"«{self.name}»"
        words = (self.name, self.first_name, self.patronymic) if full else (self.name,)
        inflected = russian.inflect_person(words, self.gender, case)
        return " ".join(inflected) if full else f"{inflected[0]} {self.first_name[0]}.{self.patronymic[0]}."

    def named(self, rng: random.Random, case: str, *, later: bool = False, long_form: float = 0.35) -> str:
        """How a decision names the party in a case: the long form (at that rate) or the short one; an ИП maybe by
        full name; after the first mention maybe only "общество" or "предприниматель"."""
        form = russian.inflect_phrase(LEGAL_FORMS[self.form], case) if rng.random() < long_form else self.form
        if later and rng.random() < 0.4:
            form = russian.inflect_phrase("предприниматель" if self.form == "ИП" else "общество", case)
        name = self._name(case, full=self.form == "ИП" and rng.random() < 0.3)
        if self.form != "ИП" and rng.random() < 0.25:
            name = name.replace("«", '"').replace("»", '"')
        return f"{form} {name}"


def generate_split(seed: int, split: str, size: int) -> Iterator[dict[str, Any]]:
    """Yield `size` records `{"id", "text", "fields"}`; the same seed and split always give the same records."""
    for record, _ in generate_with_kinds(seed, split, size):
        yield record


def generate_with_kinds(seed: int, split: str, size: int) -> Iterator[tuple[dict[str, Any], str]]:
    """The records with the kind of ruling each is (claim, counterclaim or appeal), for making eval sets."""
    for index in range(size):
        # A string seed hashes through sha512: records depend neither on PYTHONHASHSEED nor on each other.
        key = f"legal-ru:{seed}:{split}:{index}"
        ruling = _ruling(random.Random(key))
        # A text out of the length bounds is written again, for the same ruling: the bounds never change the mix of
        # kinds and outcomes (long appeals would otherwise give way to short claims).
        for attempt in range(100):
            text = _decision_text(random.Random(f"{key}:{attempt}"), ruling)
            if MIN_CHARS <= len(text) <= MAX_CHARS:
                break
        yield {"id": f"{split}-{index:05d}", "text": text, "fields": ruling.fields}, ruling.kind


@dataclass(frozen=True)
class Ruling:
    """What a decision decides, which its text must let a reader recover: the parties, the subject, the kind of
    ruling and who initiated it, the sums and the outcome."""

    court: Court
    plaintiff: Party
    defendant: Party
    subject: str
    kind: str  # claim, counterclaim or appeal
    initiator: str
    decision: str
    claim: float
    awarded: float
    plain_e: bool  # written with е for ё, as most printed decisions are ("Семенов", "Федоров")

    @property
    def fields(self) -> dict[str, Any]:
        fields = {
            "plaintiff": self.plaintiff.gold,
            "defendant": self.defendant.gold,
            "dispute_subject": LABELS[self.subject],
            "decision": LABELS[self.decision],
            "claim_amount": _compact(self.claim),
            "awarded_amount": _compact(self.awarded),
            "initiator": LABELS[self.initiator],
        }
        return {key: _spelled(value, self) if isinstance(value, str) else value for key, value in fields.items()}


def _spelled(text: str, ruling: Ruling) -> str:
    return text.replace("ё", "е").replace("Ё", "Е") if ruling.plain_e else text


def _ruling(rng: random.Random) -> Ruling:
    court = rng.choice(COURTS)
    plaintiff, defendant = _party(rng, court), _party(rng, court)
    while defendant.gold == plaintiff.gold:
        defendant = _party(rng, court)
    kind = rng.choices(("claim", "counterclaim", "appeal"), weights=(0.55, 0.2, 0.25))[0]
    if kind == "claim":
        initiator = "plaintiff"
    elif kind == "counterclaim":
        initiator = "defendant"
    else:
        initiator = rng.choice(("plaintiff", "defendant", "defendant"))
    decision = rng.choice(DECISIONS)
    claim = _amount_value(rng)
    if decision == "satisfied":
        awarded = claim
    elif decision == "partially_satisfied":
        awarded = round(claim * rng.uniform(0.2, 0.9), rng.choice((-3, -2, 0, 2)))
        awarded = min(max(awarded, 1000.0), claim - 1000.0)
    else:
        awarded = 0.0
    subject = rng.choice(DISPUTE_SUBJECTS)
    return Ruling(court, plaintiff, defendant, subject, kind, initiator, decision, claim, awarded, rng.random() < 0.5)


def _decision_text(rng: random.Random, ruling: Ruling) -> str:
    case = Case(rng, ruling)
    introduction, facts = case.introduction()
    paragraphs = [case.header(), introduction, rng.choice(("у с т а н о в и л:", "УСТАНОВИЛ:"))]
    facts.append(_subject_sentence(rng, ruling.subject))
    if rng.random() < (0.4 if ruling.kind == "claim" else 0.25):
        facts.insert(rng.randint(0, len(facts)), rng.choice(SUBJECT_DISTRACTORS))
    facts += case.demands()
    if ruling.kind != "appeal" and rng.random() < 0.2:  # the first instance's hearing
        facts.append(rng.choice(PROCEDURE_SENTENCES))
    if ruling.kind == "claim" and rng.random() < 0.2:
        facts.append(rng.choice(RETURNED_COUNTERCLAIM_SENTENCES))
    facts += _reasoning_sentences(rng, ruling)
    paragraphs += [" ".join(facts), case.operative_part(), *_cost_sentences(rng, ruling)]
    if rng.random() < 0.3:
        paragraphs.append(case.closing())
    # A sum that ends in "руб." or "коп." ends its sentence too.
    text = re.sub(r"(руб|коп)\.\.", r"\1.", "\n".join(paragraphs))
    while len(text) < MIN_CHARS:
        text += " " + rng.choice(CLOSING_SENTENCES)
    return _spelled(text, ruling)


class Case:
    """The parts of one decision that depend on who asked for what: the header, the introduction, the demands, the
    operative part and the closing."""

    def __init__(self, rng: random.Random, ruling: Ruling) -> None:
        self.rng, self.court, self.kind, self.claim = rng, ruling.court, ruling.kind, ruling.claim
        self.decision, self.awarded = ruling.decision, ruling.awarded
        self.plaintiff, self.defendant = ruling.plaintiff, ruling.defendant
        by_plaintiff = ruling.initiator == "plaintiff"
        self.initiator, self.other = (
            (self.plaintiff, self.defendant) if by_plaintiff else (self.defendant, self.plaintiff)
        )
        # The initiator's and the other side's role words: истец, ответчик.
        self.role, self.other_role = ("истец", "ответчик") if by_plaintiff else ("ответчик", "истец")
        # An appeal is decided a few months after the judgment it reviews and keeps its case number.
        self.judged = _date(rng)
        self.decided = self.judged + dt.timedelta(days=rng.randint(60, 150)) if self.kind == "appeal" else self.judged
        self.number = f"{self.court.code}-{rng.randint(1000, 299999)}/{self.judged.year}"
        # What the introduction says was first demanded: the claim, a sum to be clarified, or (for counterclaims
        # and appeals) the plaintiff's original claim.
        self.clarified = self.kind == "claim" and rng.random() < 0.4
        if self.clarified:
            self.first_demand = self.claim * rng.choice((rng.uniform(0.5, 0.9), rng.uniform(1.1, 1.8)))
        else:
            self.first_demand = self.claim if self.kind == "claim" else self.claim * rng.uniform(1.0, 1.6)
        # An appeal's figure from the first instance: what it awarded against the defendant, or refused the
        # plaintiff; the original claim was at least that.
        self.judgment = self.claim * rng.uniform(1.0, 1.4)
        if self.kind == "appeal":
            self.first_demand = self.judgment * rng.uniform(1.0, 1.5)
        # An appeal's demand is the contested part of a judgment, less often broken down than a claim.
        self.breakdown = (
            _breakdown(rng, self.claim) if rng.random() < (0.15 if self.kind == "appeal" else 0.3) else None
        )
        # A claim's introduction may name the demand by its parts, the total after them: the first sum named is
        # then not the claim.
        self.itemised = self.breakdown is not None and self.kind == "claim" and not self.clarified
        self.itemised = self.itemised and rng.random() < 0.5

    def _third_party(self) -> Party:
        third = _party(self.rng, self.court)
        while third.gold in (self.plaintiff.gold, self.defendant.gold):
            third = _party(self.rng, self.court)
        return third

    def _amount(self, value: float) -> str:
        return format_amount(self.rng, value)

    def header(self) -> str:
        rng, court, decided = self.rng, self.court, self.decided
        date = _written_date(rng, decided)
        announced = f"объявлена {_written_date(rng, decided - dt.timedelta(days=rng.randint(1, 12)))}"
        if self.kind == "appeal":
            ordinal, city = APPEAL_COURTS[court.appeal]
            name = f"{ordinal} арбитражный апелляционный суд"
            lines = [name.upper() if rng.random() < 0.2 else name]
            lines.append(rng.choice(("ПОСТАНОВЛЕНИЕ", "П О С Т А Н О В Л Е Н И Е")))
            if rng.random() < 0.6:
                lines.append(f"№ {court.appeal:02d}АП-{rng.randint(1000, 49999)}/{decided.year}")
            lines.append(f"г. {city} {date} Дело № {self.number}")
            if rng.random() < 0.25:
                lines.append(f"Резолютивная часть постановления {announced}")
            return "\n".join(lines)
        title = f"Арбитражный суд {court.genitive}"
        # Capitals cost SmolLM2's tokenizer twice the tokens of lower case: most headers here are not shouted.
        lines = [title.upper() if rng.random() < 0.2 else title]
        if rng.random() < 0.2:
            lines.append(court.address)
        if rng.random() < 0.8:
            lines.append("ИМЕНЕМ РОССИЙСКОЙ ФЕДЕРАЦИИ" if rng.random() < 0.3 else "Именем Российской Федерации")
        lines.append(rng.choice(("РЕШЕНИЕ", "Р Е Ш Е Н И Е", "Решение")))
        lines.append(rng.choice((f"г. {court.city} {date} Дело № {self.number}", f"Дело № {self.number} {date}")))
        if rng.random() < 0.3:
            lines.append(f"Резолютивная часть решения {announced}")
        return "\n".join(lines)

    def _parties(self, *, with_numbers: bool = True) -> tuple[str, str]:
        """The plaintiff in the genitive and the defendant in the dative, as "по иску ... к ..." needs them; the
        introduction names them in full more often than the rest of the text."""
        rng = self.rng
        p, d = self.plaintiff.named(rng, "gent", long_form=0.5), self.defendant.named(rng, "datv", long_form=0.5)
        if with_numbers and rng.random() < 0.35:
            p += f" ({self.plaintiff.numbers})"
        if with_numbers and rng.random() < 0.35:
            d += f" ({self.defendant.numbers})"
        return p, d

    def introduction(self) -> tuple[str, list[str]]:
        """The paragraph before "установил:" (who heard what), and what opens the facts after it."""
        rng, court = self.rng, self.court
        first = self._amount(self.first_demand)
        if self.itemised and self.breakdown is not None:
            principal, extra = (self._amount(value) for value in self.breakdown)
            first = f"{principal} долга и {extra} неустойки, а всего {first}"
        third = ""
        if rng.random() < (0.25 if self.kind == "claim" else 0.15):
            # A third party: the first company a careless reader meets need not be a litigant.
            third = f", третье лицо: {self._third_party().named(rng, 'nomn')},"
        if self.kind == "appeal":
            ordinal, _ = APPEAL_COURTS[court.appeal]
            case_number = f" по делу № {self.number}" if rng.random() < 0.4 else ""
            first_instance = f"Арбитражного суда {court.genitive}" if rng.random() < 0.3 else "суда первой инстанции"
            panel = f" в составе председательствующего судьи {_judge(rng)}, судей {_judge(rng)}, {_judge(rng)},"
            panel = panel if rng.random() < 0.2 else ","
            demanded = f" о взыскании {first}" if rng.random() < 0.3 else ""
            appellant = russian.inflect_phrase(self.role, "gent")
            if rng.random() < 0.6:
                appellant = self.initiator.named(rng, "gent", long_form=0.2)
            p, d = self._parties(with_numbers=rng.random() < 0.3)
            reviewed = f"{first_instance} от {_written_date(rng, self.judged)}{case_number}"
            lawsuit = f"по иску {p} к {d}{third}{demanded}".rstrip(",")
            appeal_court = f"{ordinal} арбитражный апелляционный суд" if rng.random() < 0.6 else "Суд"
            return (
                f"{appeal_court}{panel} рассмотрев апелляционную жалобу {appellant} на решение {reviewed} {lawsuit},",
                [],
            )
        court_name = f"Арбитражный суд {court.genitive}" if rng.random() < 0.25 else "Суд"
        hearing = " в открытом судебном заседании" if rng.random() < 0.3 else ""
        opening = f"{court_name} в составе судьи {_judge(rng)}, рассмотрев{hearing}"
        p, d = self._parties()
        if self.kind == "counterclaim":
            demanded = f" о взыскании {first}" if rng.random() < 0.5 else ""
            counter_p = self.defendant.named(rng, "gent", later=True)
            counter_d = self.plaintiff.named(rng, "datv", later=True)
            return (
                f"{opening} дело по иску {p} к {d}{demanded}{third} и по встречному иску {counter_p} к {counter_d},",
                [],
            )
        style = rng.random()
        if style < 0.5:
            return f"{opening} дело по иску {p} к {d}{third} о взыскании {first},", []
        if style < 0.7:
            # The defendant named first, the plaintiff in the instrumental.
            p = self.plaintiff.named(rng, "ablt")
            return f"{opening} дело по иску к {d}, предъявленному {p}{third or ','} о взыскании {first},", []
        # The parties only after "установил:", the plaintiff as the subject of the sentence.
        plaintiff = self.plaintiff.named(rng, "nomn")
        if rng.random() < 0.4:
            plaintiff += f" ({self.plaintiff.numbers})"
        sued = russian.inflect_verb("обратился", self.plaintiff.gender)
        return (
            f"{opening} дело № {self.number}{third.rstrip(',')},",
            [f"{_capitalized(plaintiff)} {sued} в арбитражный суд с иском к {d} о взыскании {first}."],
        )

    def demands(self) -> list[str]:
        rng = self.rng
        total = self._amount(self.claim) + self._breakdown_text()
        contract = ""
        if rng.random() < 0.2:
            contract = f" Цена договора составила {self._amount(self.claim * rng.uniform(1.3, 4))}."
        if self.kind == "claim":
            sentences = ["Истец просит взыскать {total}.", "Исковые требования составляют {total}."]
            if self.clarified:
                first = self._amount(self.first_demand)
                sentences = [
                    "В порядке статьи 49 АПК РФ истец уточнил исковые требования и просит взыскать {total}.",
                    f"С учетом уточнения исковых требований (первоначально {first}) истец просит взыскать {{total}}.",
                    f"Истец уточнил исковые требования: вместо {first} просит взыскать {{total}}.",
                ]
            elif (not self.breakdown or self.itemised) and rng.random() < 0.5:
                return [contract.strip()] if contract else []
            return [rng.choice(sentences).format(total=total) + contract]
        if self.kind == "counterclaim":
            separated = rng.choice(
                (
                    "Первоначальный иск выделен в отдельное производство.",
                    "Первоначальный иск рассмотрен ранее.",
                    "Первоначальный иск предметом настоящего решения не является.",
                )
            )
            counter = rng.choice(
                (
                    f"{_capitalized(self.defendant.named(rng, 'nomn', later=True))}"
                    f" {russian.inflect_verb('предъявил', self.defendant.gender)}"
                    f" встречный иск о взыскании с {self.plaintiff.named(rng, 'gent', later=True)} {total}.",
                    f"Ответчик заявил встречный иск о взыскании {total}, принятый к совместному рассмотрению.",
                    f"Во встречном иске {self.defendant.named(rng, 'nomn', later=True)} просит взыскать с истца"
                    f" {total}.",
                )
            )
            return [separated, counter + contract]
        return self._appeal_demands(total)

    def _appeal_demands(self, total: str) -> list[str]:
        rng = self.rng
        judgment = self._amount(self.judgment)
        if self.role == "ответчик":
            outcome = f"Решением суда первой инстанции с ответчика взыскано {judgment}."
            contested = f"в части взыскания {total}"
        else:
            outcome = f"Суд первой инстанции удовлетворил иск частично, отказав во взыскании {judgment}."
            contested = f"в части отказа во взыскании {total}"
        gender: russian.Gender = "masc"  # истец, ответчик
        appellant = self.role
        if rng.random() < 0.6:
            appellant, gender = self.initiator.named(rng, "nomn", later=True), self.initiator.gender
        appealed = rng.choice(
            (
                f"Не согласившись с решением, {appellant} {russian.inflect_verb('обжаловал', gender)} его {contested}.",
                f"{_capitalized(appellant)} обжалует решение {contested}.",
                f"В апелляционной жалобе {appellant} просит отменить решение {contested}.",
            )
        )
        sentences = [outcome, appealed]
        if rng.random() < 0.2:
            # The other side appealed too, but its appeal was returned: this ruling decides the initiator's.
            other = russian.inflect_phrase(self.other_role, "gent")
            sentences.append(f"Апелляционная жалоба {other} возвращена как поданная с пропуском срока.")
        if rng.random() < 0.3:
            # The other side answers the appeal: both roles stand beside "апелляционная жалоба".
            respondent = rng.choice((self.other.named(rng, "nomn", later=True), self.other_role))
            sentences.append(
                f"{_capitalized(respondent)} в отзыве на апелляционную жалобу просит оставить решение без изменения."
            )
        return sentences

    def _breakdown_text(self) -> str:
        if self.breakdown is None or self.itemised:
            return ""
        principal, extra = (self._amount(value) for value in self.breakdown)
        return self.rng.choice(
            (
                f", из которых {principal} – основной долг, {extra} – неустойка",
                f" (в том числе {principal} долга и {extra} процентов за пользование чужими денежными средствами"
                " по статье 395 ГК РФ)",
                f", в том числе {principal} задолженности и {extra} пени",
            )
        )

    def operative_part(self) -> str:
        rng, decision, awarded = self.rng, self.decision, self.awarded
        if self.kind == "appeal":
            return self._appeal_operative_part(decision, awarded)
        demand = "встречный иск" if self.kind == "counterclaim" else "иск"
        nominative, genitive = demand.capitalize(), russian.inflect_phrase(demand, "gent")
        payer, receiver = self.other.named(rng, "gent", later=True), self.initiator.named(rng, "gent", later=True)
        amount = self._amount(awarded)
        recover = f"Взыскать с {payer} в пользу {receiver} {amount}"
        if decision == "satisfied":
            options: tuple[str, ...] = (
                f"{nominative} удовлетворить.",
                f"{nominative} удовлетворить в полном объеме. {recover}.",
                f"{recover}.",
                # Refusing a motion is no refusal of the demand.
                f"{nominative} удовлетворить. В удовлетворении ходатайства об уменьшении неустойки отказать.",
            )
        elif decision == "partially_satisfied":
            options = (
                f"{nominative} удовлетворить частично. {recover}. В остальной части {genitive} отказать.",
                f"{nominative} удовлетворить частично в размере {amount}, в остальной части отказать.",
                f"{recover}. В удовлетворении остальной части {genitive} отказать.",
            )
        else:
            options = (
                f"В удовлетворении {genitive} отказать.",
                f"В удовлетворении {genitive} отказать полностью.",
                f"{nominative} оставить без удовлетворения.",
            )
        verdict = rng.choice(("Р Е Ш И Л:", "РЕШИЛ:", "решил:"))
        if rng.random() < 0.2:
            verdict = f"Руководствуясь статьями 167–170 АПК РФ, суд {verdict}"
        return f"{verdict}\n{rng.choice(options)}"

    def _appeal_operative_part(self, decision: str, awarded: float) -> str:
        rng = self.rng
        judgment = rng.choice(
            (
                f"Решение Арбитражного суда {self.court.genitive} по делу № {self.number}",
                "Решение суда первой инстанции",
            )
        )
        amount = self._amount(awarded)
        defendant = self.defendant.named(rng, "gent", later=True)
        if decision == "satisfied" and self.role == "ответчик":
            options: tuple[str, ...] = (
                f"{judgment} в обжалуемой части отменить, в иске в этой части отказать.",
                f"Апелляционную жалобу удовлетворить. Решение в части взыскания {amount} отменить.",
            )
        elif decision == "satisfied":
            options = (
                f"Апелляционную жалобу удовлетворить. Взыскать с {defendant} в пользу истца {amount}.",
                f"{judgment} в обжалуемой части отменить, взыскать с ответчика {amount}.",
            )
        elif decision == "partially_satisfied" and self.role == "ответчик":
            options = (
                f"Апелляционную жалобу удовлетворить частично. Уменьшить взысканную с {defendant} сумму на {amount}."
                " В остальной части решение оставить без изменения.",
                f"{judgment} изменить, снизив сумму взыскания на {amount}; в остальной части жалобу отклонить.",
            )
        elif decision == "partially_satisfied":
            options = (
                f"Апелляционную жалобу удовлетворить частично: взыскать с {defendant} дополнительно {amount}."
                " В остальной части решение оставить без изменения.",
                f"{judgment} изменить, довзыскав с ответчика {amount}; в остальной части жалобу отклонить.",
            )
        else:
            options = (
                f"{judgment} оставить без изменения, апелляционную жалобу – без удовлетворения.",
                f"Апелляционную жалобу {russian.inflect_phrase(self.role, 'gent')} оставить без удовлетворения,"
                " решение – без изменения.",
            )
        verdict = rng.choice(("П О С Т А Н О В И Л:", "ПОСТАНОВИЛ:", "постановил:"))
        return f"{verdict}\n{rng.choice(options)}"

    def closing(self) -> str:
        if self.kind == "appeal":
            return f"Постановление может быть обжаловано в Арбитражный суд {self.court.cassation} округа."
        ordinal, _ = APPEAL_COURTS[self.court.appeal]
        return self.rng.choice(
            (
                f"Решение может быть обжаловано в {ordinal} арбитражный апелляционный суд в течение месяца.",
                "Решение вступает в законную силу по истечении месячного срока.",
                "Выдать исполнительный лист после вступления решения в законную силу.",
            )
        )


def _party(rng: random.Random, court: Court) -> Party:
    region = court.region if rng.random() < 0.7 else rng.choice(COURTS).region
    if rng.random() < 0.25:
        gender: russian.Gender = rng.choice(("masc", "femn"))
        first_name = rng.choice(FIRST_NAMES[gender])
        inn, ogrnip = russian.entrepreneur_numbers(rng, region)
        numbers = rng.choice((f"ОГРНИП {ogrnip}, ИНН {inn}", f"ИНН {inn}, ОГРНИП {ogrnip}", f"ИНН {inn}"))
        return Party("ИП", rng.choice(SURNAMES), gender, numbers, first_name, rng.choice(PATRONYMICS))
    name = rng.choice(NAME_STEMS)
    if rng.random() < 0.6:
        suffix = rng.choice(NAME_SUFFIXES)
        name = f"{name}-{suffix}" if rng.random() < 0.6 else name + suffix
    inn, ogrn = russian.company_numbers(rng, region)
    numbers = rng.choice((f"ОГРН {ogrn}, ИНН {inn}", f"ИНН {inn}, ОГРН {ogrn}", f"ИНН {inn}"))
    return Party(rng.choice(("ООО", "ООО", "АО", "ПАО")), name, "neut", numbers)


def _capitalized(text: str) -> str:
    """The first letter in upper case, the rest as it is ("общество «Заря»" -> "Общество «Заря»", "ИП ..." kept)."""
    return text[:1].upper() + text[1:]


def _judge(rng: random.Random) -> str:
    gender: russian.Gender = rng.choice(("masc", "femn"))
    (surname,) = russian.inflect_person((rng.choice(SURNAMES),), gender, "gent")
    return f"{surname} {rng.choice(INITIALS)}.{rng.choice(INITIALS)}."


def _breakdown(rng: random.Random, claim: float) -> tuple[float, float]:
    """A claim split into principal debt and a penalty or interest: two more sums, neither the claim."""
    principal = round(claim * rng.uniform(0.6, 0.9), -2)
    return principal, round(claim - principal, 2)


def format_amount(rng: random.Random, value: float) -> str:
    """A ruble sum as decisions write it: the same value in one of several formats."""
    whole, kopecks = divmod(round(value * 100), 100)
    grouped = f"{whole:,}".replace(",", " ")
    rubles = russian.agree("рубль", whole)
    choices = [
        f"{grouped} руб. {kopecks:02d} коп." if kopecks or rng.random() < 0.3 else f"{grouped} руб.",
        f"{grouped},{kopecks:02d} руб." if kopecks else f"{grouped} руб.",
        f"{grouped} {rubles} {kopecks:02d} {russian.agree('копейка', kopecks)}" if kopecks else f"{grouped} {rubles}",
        f"{whole},{kopecks:02d} руб." if kopecks else f"{whole} руб.",
    ]
    if rng.random() < 0.08:  # sums in words cost many tokens: a few of them
        choices = [
            f"{grouped} руб. {kopecks:02d} коп. ({russian.rubles_in_words(value)})",
            f"{grouped} ({russian.number_in_words(whole)}) {rubles} {kopecks:02d} {russian.agree('копейка', kopecks)}",
        ]
    if not kopecks and whole % 100_000 == 0 and whole >= 1_000_000:
        millions = f"{whole / 1_000_000:g}".replace(".", ",")
        choices.append(f"{millions} млн руб.")
    return rng.choice(choices)


def _date(rng: random.Random) -> dt.date:
    return dt.date(rng.randint(2021, 2025), rng.randint(1, 12), rng.randint(1, 28))


def _written_date(rng: random.Random, date: dt.date) -> str:
    if rng.random() < 0.5:
        return f"{date.day} {MONTHS[date.month - 1]} {date.year} г."
    return f"{date:%d.%m.%Y}"


def _subject_sentence(rng: random.Random, subject: str) -> str:
    phrase = rng.choice(SUBJECT_PHRASES[subject]).format(n=f"{rng.randint(1, 999)}/{rng.randint(18, 25)}")
    return rng.choice(
        (
            f"Спор возник из {phrase}.",
            f"Спор возник из {phrase}.",
            f"Спор касается {phrase}.",
            f"Иск заявлен по поводу {phrase}.",
        )
    )


def _reasoning_sentences(rng: random.Random, ruling: Ruling) -> list[str]:
    appeal = ruling.kind == "appeal"
    if ruling.decision == "satisfied":
        sentences = [rng.choice(APPEAL_SATISFACTION_REASONS if appeal else SATISFACTION_REASONS)]
    elif ruling.decision == "partially_satisfied":
        reduced = format_amount(rng, ruling.claim - ruling.awarded)  # the part of the demand not granted
        sentences = [rng.choice(APPEAL_PARTIAL_REASONS if appeal else PARTIAL_REASONS).format(reduced=reduced)]
    else:
        sentences = [rng.choice(APPEAL_DISMISSAL_REASONS if appeal else DISMISSAL_REASONS)]
    if rng.random() < 0.35:
        sentences.append(rng.choice(TRAP_SENTENCES))  # "частично", "отказано" said of something else
    return sentences


def _cost_sentences(rng: random.Random, ruling: Ruling) -> list[str]:
    sentences = []
    # Fewer in appeals and counterclaims, whose other parts take more room within the length bounds.
    if rng.random() < (0.45 if ruling.kind == "claim" else 0.3):
        duty = format_amount(rng, round(min(200_000.0, 10_000 + ruling.claim * 0.01), -1))
        sentences.append(
            rng.choice(
                (
                    f"Государственную пошлину в размере {duty} отнести на проигравшую сторону.",
                    f"Взыскать в доход бюджета государственную пошлину в размере {duty}.",
                )
            )
        )
    if rng.random() < (0.2 if ruling.kind == "claim" else 0.1):
        costs = format_amount(rng, float(rng.choice((25_000, 40_000, 60_000, 85_000, 120_000))))
        sentences.append(f"Заявлены судебные расходы на оплату услуг представителя в размере {costs}.")
    return sentences


if __name__ == "__main__":
    # Writes a split as JSONL: how the stored eval sets were made. test-v2.jsonl:
    #   python -m tasks.legal_ru.generator test 200 2025
    # appeals-counterclaims-v2.jsonl, the first 60 records that decide an appeal or a counterclaim:
    #   python -m tasks.legal_ru.generator hard 60 2026 kind=appeal,counterclaim
    # Conditions are a field's value (initiator=ответчик) or the kinds of ruling to keep (kind=appeal,counterclaim).
    import itertools
    import json
    import sys

    split_name, split_size, split_seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    conditions = dict(arg.split("=", 1) for arg in sys.argv[4:])
    kinds = conditions.pop("kind", "claim,counterclaim,appeal").split(",")
    records = (
        record
        for record, kind in generate_with_kinds(split_seed, split_name, split_size * 100)
        if kind in kinds and all(str(record["fields"][key]) == value for key, value in conditions.items())
    )
    for record in itertools.islice(records, split_size):
        print(json.dumps(record, ensure_ascii=False))
