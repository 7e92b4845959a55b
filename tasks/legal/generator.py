"""The built-in `legal` data: a seeded generator of arbitrazh-court decisions with gold extraction fields.

Real Russian court decisions are not reachable offline, so these are English-language decisions modelled on
them: case numbers like А40-123456/2025, LLC / JSC / PJSC / individual-entrepreneur parties, amounts in rubles.
The generator is deliberately varied (several phrasings per field, distractor amounts, mixed amount formats,
counterclaims and appeals) so that extraction needs reading rather than pattern matching; the rule baseline in
`tasks/legal/rules.py` measures how far pattern matching gets.

Field semantics, which the texts follow and the gold values record:
- `initiator`: who filed what this ruling decides: the claim (plaintiff), a counterclaim (defendant) or an
  appeal (either side). `plaintiff` and `defendant` keep their first-instance roles throughout.
- `claim_amount`: the total sum the initiator asks for (for an appeal: the part of the judgment it contests).
- `awarded_amount`: how much of that the court grants the initiator; 0 when dismissed.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

DISPUTE_SUBJECTS = (
    "supply",
    "lease",
    "services",
    "construction",
    "loan",
    "transport",
    "insurance",
    "intellectual_property",
)
DECISIONS = ("satisfied", "partially_satisfied", "dismissed")
# Longer texts make every CPU trial slower; shorter ones leave too little room for distractors.
MIN_WORDS, MAX_WORDS = 80, 200

COURTS = (
    ("Arbitrazh Court of the City of Moscow", "А40", "Moscow"),
    ("Arbitrazh Court of Saint Petersburg and the Leningrad Region", "А56", "Saint Petersburg"),
    ("Arbitrazh Court of the Sverdlovsk Region", "А60", "Yekaterinburg"),
    ("Arbitrazh Court of the Novosibirsk Region", "А45", "Novosibirsk"),
    ("Arbitrazh Court of the Krasnodar Territory", "А32", "Krasnodar"),
    ("Arbitrazh Court of the Republic of Tatarstan", "А65", "Kazan"),
    ("Arbitrazh Court of the Moscow Region", "А41", "Moscow"),
    ("Arbitrazh Court of the Rostov Region", "А53", "Rostov-on-Don"),
    ("Arbitrazh Court of the Samara Region", "А55", "Samara"),
    ("Arbitrazh Court of the Perm Territory", "А50", "Perm"),
)
APPEAL_COURTS = (
    "Ninth Arbitrazh Appeal Court",
    "Thirteenth Arbitrazh Appeal Court",
    "Seventeenth Arbitrazh Appeal Court",
    "Seventh Arbitrazh Appeal Court",
    "Fifteenth Arbitrazh Appeal Court",
    "Eleventh Arbitrazh Appeal Court",
)
MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)

NAME_STEMS = (
    "Vostok",
    "Sever",
    "Ural",
    "Baltika",
    "Sibir",
    "Volga",
    "Neva",
    "Amur",
    "Kama",
    "Altai",
    "Yug",
    "Zapad",
    "Taiga",
    "Polyus",
    "Raduga",
    "Zarya",
    "Orion",
    "Vega",
    "Almaz",
    "Granit",
    "Kedr",
    "Berezka",
    "Sokol",
    "Mayak",
    "Start",
    "Impuls",
    "Vector",
    "Sigma",
    "Delta",
    "Omega",
    "Kristall",
    "Energia",
    "Progress",
    "Avangard",
    "Rassvet",
    "Iskra",
    "Vympel",
    "Lotos",
    "Fregat",
    "Titan",
)
NAME_SUFFIXES = (
    "Trade",
    "Stroy",
    "Invest",
    "Logistic",
    "Energo",
    "Agro",
    "Prom",
    "Tech",
    "Service",
    "Group",
    "Holding",
    "Snab",
    "Transit",
    "Metall",
    "Develop",
    "Consult",
    "Resurs",
    "Capital",
    "Systems",
    "Terminal",
    "Soft",
    "Med",
    "Food",
    "Auto",
    "Les",
)
SURNAMES = (
    "Ivanov",
    "Petrov",
    "Sidorov",
    "Smirnov",
    "Kuznetsov",
    "Popov",
    "Sokolov",
    "Lebedev",
    "Kozlov",
    "Novikov",
    "Morozov",
    "Volkov",
    "Alekseev",
    "Fedorov",
    "Mikhailov",
    "Orlov",
    "Zaitsev",
    "Pavlov",
    "Semenov",
    "Golubev",
    "Vinogradov",
    "Bogdanov",
    "Vorobyov",
    "Belov",
    "Tarasov",
    "Karpov",
)
INITIALS = "ABVGDEIKLMNOPRSTFYZ"

# Each legal form: the gold spelling, then the ways a decision writes it.
LEGAL_FORMS = {
    "LLC": ("LLC", "Limited Liability Company", "OOO"),
    "JSC": ("JSC", "Joint-Stock Company", "AO"),
    "PJSC": ("PJSC", "Public Joint-Stock Company", "PAO"),
}

SUBJECT_PHRASES = {
    "supply": (
        "metal pipes shipped to the buyer and never paid for",
        "a batch of medical masks the purchaser received but did not pay for",
        "goods sold on deferred payment terms",
        "a supply agreement under which the goods were delivered but not paid for",
        "payment for equipment delivered under supply contract No. {n}",
        "a contract for the delivery of building materials",
        "unpaid deliveries of fuel under a supply agreement",
        "the delivery of agricultural machinery that the buyer did not pay for",
    ),
    "lease": (
        "occupancy of premises without paying the agreed monthly charge",
        "the use of a land plot made available to the defendant for a fee",
        "hire of a crane with an operator that was returned late",
        "rent arrears under a lease agreement for non-residential premises",
        "a lease of warehouse space that the tenant stopped paying for",
        "payment of rent under lease contract No. {n}",
        "a lease agreement for special-purpose vehicles",
        "the tenant's debt for the rental of office premises",
    ),
    "services": (
        "an audit of accounting records performed at the customer's request",
        "legal advice provided to the defendant under an engagement letter",
        "training courses organised for the defendant's staff",
        "payment for consulting services rendered under a paid services agreement",
        "an agreement for cleaning and maintenance services",
        "unpaid IT support services under contract No. {n}",
        "a security services agreement",
        "payment for marketing services that the customer accepted without objection",
    ),
    "construction": (
        "the building of a logistics centre by the contractor",
        "repair of a bridge carried out by the contractor under a state contract",
        "installation of ventilation systems at the customer's site",
        "payment for works performed under a construction contract",
        "a works contract for the reconstruction of a production building",
        "the contractor's claim for finished roofing and facade works",
        "construction contract No. {n} for a residential complex",
        "payment for installation works accepted under signed KS-2 certificates",
    ),
    "loan": (
        "funds advanced to the defendant that were due to be returned with interest",
        "money transferred under a promissory arrangement between the companies",
        "a credit line opened for the defendant that it did not pay back",
        "repayment of a loan issued under loan agreement No. {n}",
        "the return of borrowed funds and interest for their use",
        "a loan agreement between two companies of one group",
        "the borrower's failure to repay a commercial loan",
        "repayment of a short-term loan that was due last year",
    ),
    "transport": (
        "delivery of cargo by the carrier from Novorossiysk to Moscow",
        "charter of a vessel for moving grain",
        "the haulage of timber by the plaintiff's trucks",
        "payment for the carriage of goods by road",
        "a freight forwarding agreement",
        "the carrier's claim for rail transportation of cargo",
        "payment under contract No. {n} for the carriage of containers",
        "unpaid shipments of cargo under a transport expedition contract",
    ),
    "insurance": (
        "an indemnity under a policy after a flood at the insured premises",
        "the insurer's obligation to cover losses from the theft of equipment",
        "compensation owed by the insurer under a comprehensive vehicle policy",
        "an insurance indemnity under a property insurance policy",
        "payment of insurance compensation for a damaged vehicle",
        "the insurer's refusal to pay under policy No. {n}",
        "recovery of an insurance payout after a fire at a warehouse",
        "a cargo insurance contract and an insured event in transit",
    ),
    "intellectual_property": (
        "the use of a protected logo without permission",
        "reproduction of a musical work at a shopping centre without a licence",
        "sale of counterfeit goods bearing the plaintiff's brand",
        "compensation for the infringement of exclusive rights to a trademark",
        "the unlicensed use of software protected by copyright",
        "infringement of exclusive rights to a design patent",
        "compensation for the illegal use of photographs on a website",
        "a licence agreement for a trademark and unpaid royalties",
    ),
}

# Words that name another contract type in passing: they make a keyword lookup of the subject unreliable.
SUBJECT_DISTRACTORS = (
    "The plaintiff, which rents its office from the defendant's parent company, is a regular supplier of both.",
    "The defendant insured its goods and the claim is not about that insurance.",
    "Both companies also have construction works in progress under other contracts.",
    "The goods were kept in a warehouse that the plaintiff leases from a third party.",
    "The parties had earlier signed a loan agreement, which is not the subject of this dispute.",
    "The defendant referred to its insurance policy, but the insurer is not a party to the case.",
    "Delivery was arranged by a carrier engaged by the plaintiff.",
    "Services of an independent appraiser were used to value the claim.",
    "The payment was due under the same schedule as the parties' earlier supply contract.",
)
PROCEDURE_SENTENCES = (
    "The parties were duly notified of the time and place of the hearing.",
    "The defendant did not submit a response to the statement of claim.",
    "The hearing was held in the absence of the defendant's representative.",
    "The plaintiff's representative supported the demands at the hearing.",
    "The pre-trial claim procedure was complied with.",
)
THIRD_PARTY_SENTENCES = (
    "{third} took part in the case as a third party without independent claims.",
    "The court involved {third} as a third party.",
    "With the participation of {third} as a third party.",
)
RETURNED_COUNTERCLAIM_SENTENCES = (
    "The defendant's counterclaim was returned to it as filed out of time.",
    "The defendant announced a counter-suit but never filed it.",
    "An appeal by either side may follow; none has been lodged yet.",
)
CLOSING_SENTENCES = (
    "A writ of execution shall be issued after the decision enters into force.",
    "The full text of the decision was prepared within five days.",
    "The defendant's request to postpone the hearing was refused.",
    "The court saw no grounds to suspend the proceedings.",
)


@dataclass(frozen=True)
class Party:
    gold: str  # the canonical spelling stored as the field value
    mentions: tuple[str, ...]  # ways the text may name this party


def generate_split(seed: int, split: str, size: int) -> Iterator[dict[str, Any]]:
    """Yield `size` records `{"id", "text", "fields"}`; the same seed and split always give the same records."""
    for index in range(size):
        for attempt in range(100):
            # A string seed hashes through sha512: records depend neither on PYTHONHASHSEED nor on each other.
            rng = random.Random(f"legal:{seed}:{split}:{index}:{attempt}")
            text, fields = _decision(rng)
            if MIN_WORDS <= len(text.split()) <= MAX_WORDS:
                break
        yield {"id": f"{split}-{index:05d}", "text": text, "fields": fields}


def _decision(rng: random.Random) -> tuple[str, dict[str, Any]]:
    plaintiff, defendant = _party(rng), _party(rng)
    while defendant.gold == plaintiff.gold:
        defendant = _party(rng)
    subject = rng.choice(DISPUTE_SUBJECTS)
    decision = rng.choice(DECISIONS)
    kind = rng.choices(("claim", "counterclaim", "appeal"), weights=(0.55, 0.2, 0.25))[0]
    if kind == "claim":
        initiator = "plaintiff"
    elif kind == "counterclaim":
        initiator = "defendant"
    else:
        initiator = rng.choice(("plaintiff", "defendant", "defendant"))

    claim = _amount_value(rng)
    if decision == "satisfied":
        awarded = claim
    elif decision == "partially_satisfied":
        awarded = round(claim * rng.uniform(0.2, 0.9), rng.choice((-3, -2, 0, 2)))
        awarded = min(max(awarded, 1000.0), claim - 1000.0)
    else:
        awarded = 0.0

    court, code, city = rng.choice(COURTS)
    case_number = f"{code}-{rng.randint(1000, 299999)}/{rng.randint(2021, 2025)}"
    sentences = [_header(rng, court, case_number, city, kind)]
    if rng.random() < 0.25:
        # A third party named before the litigants: "the first company mentioned" is not the plaintiff.
        third = _party(rng)
        sentences.append(rng.choice(THIRD_PARTY_SENTENCES).format(third=_mention(rng, third)))
    body = [_parties_sentence(rng, plaintiff, defendant), _subject_sentence(rng, subject)]
    if rng.random() < 0.4:
        body.insert(rng.randint(0, 2), rng.choice(SUBJECT_DISTRACTORS))
    sentences += body
    if rng.random() < 0.4:
        sentences.append(rng.choice(PROCEDURE_SENTENCES))
    sentences += _claim_sentences(rng, kind, initiator, plaintiff, defendant, claim)
    if kind == "claim" and rng.random() < 0.2:
        sentences.append(rng.choice(RETURNED_COUNTERCLAIM_SENTENCES))
    sentences += _reasoning_sentences(rng, decision, claim, awarded)
    sentences.append(_operative_sentence(rng, kind, decision, initiator, plaintiff, defendant, awarded))
    sentences += _cost_sentences(rng, claim)

    fields = {
        "plaintiff": plaintiff.gold,
        "defendant": defendant.gold,
        "dispute_subject": subject,
        "decision": decision,
        "claim_amount": _compact(claim),
        "awarded_amount": _compact(awarded),
        "initiator": initiator,
    }
    text = " ".join(sentences)
    while len(text.split()) < MIN_WORDS:
        text += " " + rng.choice(CLOSING_SENTENCES)
    # A party like "IE Petrov A.V." ends a sentence with its own full stop.
    return text.replace("..", "."), fields


def _compact(value: float) -> int | float:
    """Whole rubles as int, so the gold JSON reads 1250000 rather than 1250000.0."""
    return int(value) if float(value).is_integer() else round(value, 2)


def _party(rng: random.Random) -> Party:
    if rng.random() < 0.2:
        surname = rng.choice(SURNAMES)
        initials = f"{rng.choice(INITIALS)}.{rng.choice(INITIALS)}."
        name = f"{surname} {initials}"
        mentions: tuple[str, ...] = (
            f"Individual Entrepreneur {name}",
            f"individual entrepreneur {name}",
            f"IE {name}",
            f"sole proprietor {name}",
        )
        return Party(gold=f"IE {name}", mentions=mentions)
    stem = rng.choice(NAME_STEMS)
    name = f"{stem}-{rng.choice(NAME_SUFFIXES)}" if rng.random() < 0.7 else stem
    form = rng.choice(("LLC", "LLC", "JSC", "PJSC"))
    spellings = LEGAL_FORMS[form]
    mentions = tuple(f"{spelling} {quoted}" for spelling in spellings for quoted in (f'"{name}"', f"«{name}»"))
    mentions += (f'"{name}" {form}', f"«{name}» {spellings[2]}")  # the form after the name, as in English usage
    return Party(gold=f'{form} "{name}"', mentions=mentions)


def _mention(rng: random.Random, party: Party) -> str:
    return rng.choice(party.mentions)


def _id_numbers(rng: random.Random) -> str:
    # Registration numbers: long digit runs that a careless amount pattern picks up.
    return f"(TIN {rng.randint(10**9, 10**10 - 1)}, OGRN {rng.randint(10**12, 10**13 - 1)})"


def _amount_value(rng: random.Random) -> float:
    magnitude = rng.choice((10**5, 10**6, 10**6, 10**7))
    value = rng.uniform(1.0, 9.9) * magnitude
    style = rng.random()
    if style < 0.45:
        return float(round(value, -3))
    if style < 0.75:
        return float(round(value, -2))
    return round(value, 2)


def _format_amount(rng: random.Random, value: float) -> str:
    """Write a ruble amount the way decisions do: the same value in one of several formats."""
    whole = int(value)
    kopecks = round((value - whole) * 100)
    grouped_space = f"{whole:,}".replace(",", " ")
    grouped_comma = f"{whole:,}"
    choices = [
        f"{grouped_space} rubles" + (f" {kopecks:02d} kopecks" if kopecks else ""),
        f"RUB {grouped_comma}" + (f".{kopecks:02d}" if kopecks else ""),
        f"{grouped_space},{kopecks:02d} rubles" if kopecks else f"{grouped_space} rub.",
        f"{grouped_comma}" + (f".{kopecks:02d}" if kopecks else "") + " rubles",
    ]
    if not kopecks and whole % 10_000 == 0 and whole >= 1_000_000:
        millions = f"{whole / 1_000_000:.2f}".rstrip("0").rstrip(".")
        choices += [f"{millions} million rubles", f"RUB {millions} million"]
    if not kopecks and whole % 1000 == 0 and whole < 1_000_000:
        choices.append(f"{whole // 1000} thousand rubles")
    return rng.choice(choices)


def _date(rng: random.Random) -> str:
    day, month, year = rng.randint(1, 28), rng.randint(1, 12), rng.randint(2021, 2025)
    if rng.random() < 0.5:
        return f"{day} {MONTHS[month - 1]} {year}"
    return f"{day:02d}.{month:02d}.{year}"


def _header(rng: random.Random, court: str, case_number: str, city: str, kind: str) -> str:
    if kind == "appeal":
        appeal_court = rng.choice(APPEAL_COURTS)
        return rng.choice(
            (
                f"RESOLUTION of the {appeal_court}, case No. {case_number}, {city}, {_date(rng)}.",
                f"{appeal_court}. Case No. {case_number}. Resolution of {_date(rng)}.",
                f"On {_date(rng)} the {appeal_court} considered an appeal in case No. {case_number}"
                f" heard at first instance by the {court}.",
            )
        )
    return rng.choice(
        (
            f"DECISION in the name of the Russian Federation. {court}, case No. {case_number}, {city}, {_date(rng)}.",
            f"{court}. Case No. {case_number}. Judgment of {_date(rng)}.",
            f"On {_date(rng)} the {court} heard case No. {case_number} in open court.",
            f"Case No. {case_number}. {city}, {_date(rng)}. The {court}, composed of judge"
            f" {rng.choice(SURNAMES)} {rng.choice(INITIALS)}.{rng.choice(INITIALS)}., ruled as follows.",
        )
    )


def _parties_sentence(rng: random.Random, plaintiff: Party, defendant: Party) -> str:
    p, d = _mention(rng, plaintiff), _mention(rng, defendant)
    if rng.random() < 0.3:
        p = f"{p} {_id_numbers(rng)}"
    if rng.random() < 0.3:
        d = f"{d} {_id_numbers(rng)}"
    return rng.choice(
        (
            f"{p} (the plaintiff) brought an action against {d} (the defendant).",
            f"The plaintiff, {p}, sued the defendant, {d}.",
            f"{d} was named as the defendant in a claim filed by {p}.",
            f"The case concerns a dispute between {p} as plaintiff and {d} as defendant.",
            f"Claimant {p} applied to the court against respondent {d}.",
            f"The court heard the claim of {p} against {d}.",
            f"Against {d}, proceedings were initiated by {p}.",
            f"{d}, the respondent, objected to the demands of {p}.",
            f"The parties to the case are {d} (defendant) and {p} (plaintiff).",
        )
    )


def _subject_sentence(rng: random.Random, subject: str) -> str:
    phrase = rng.choice(SUBJECT_PHRASES[subject]).format(n=f"{rng.randint(1, 999)}/{rng.randint(18, 25)}")
    return rng.choice(
        (
            f"The dispute arose from {phrase}.",
            f"The relationship of the parties concerns {phrase}.",
            f"According to the case file, the claim relates to {phrase}.",
            f"At the heart of the case is {phrase}.",
        )
    )


def _claim_sentences(
    rng: random.Random, kind: str, initiator: str, plaintiff: Party, defendant: Party, claim: float
) -> list[str]:
    total = _format_amount(rng, claim)
    breakdown = ""
    if rng.random() < 0.5:
        principal = round(claim * rng.uniform(0.6, 0.9), -2)
        penalty = round(claim - principal, 2)
        breakdown = rng.choice(
            (
                f", including {_format_amount(rng, principal)} of principal debt and"
                f" {_format_amount(rng, penalty)} of contractual penalty",
                f" ({_format_amount(rng, principal)} of debt and {_format_amount(rng, penalty)} of interest"
                " under Article 395 of the Civil Code)",
            )
        )
    contract_value = ""
    if rng.random() < 0.4:
        contract_value = f" The total value of the contract was {_format_amount(rng, claim * rng.uniform(1.3, 4))}."

    initiator_party = plaintiff if initiator == "plaintiff" else defendant
    who = _mention(rng, initiator_party) if rng.random() < 0.4 else f"the {initiator}"
    if kind == "claim":
        sentence = rng.choice(
            (
                f"The plaintiff claimed {total}{breakdown}.",
                f"The plaintiff asked the court to recover {total}{breakdown} from the defendant.",
                f"The amount of the claim is {total}{breakdown}.",
                f"{who[0].upper() + who[1:]} seeks recovery of {total}{breakdown}.",
                f"The statement of claim concerns a sum of {total}{breakdown}.",
                f"Relief sought: {total}{breakdown}.",
            )
        )
        if rng.random() < 0.3:
            # Article 49 of the Arbitrazh Procedure Code: the final demand, not the first, is the claim.
            first = _format_amount(rng, claim * rng.choice((rng.uniform(0.5, 0.9), rng.uniform(1.1, 1.8))))
            sentence = rng.choice(
                (
                    f"The plaintiff initially demanded {first}, but under Article 49 of the Arbitrazh Procedure"
                    f" Code it later changed the amount of the claim to {total}.",
                    f"Having clarified its demands, the plaintiff asks for {total} instead of the {first} stated"
                    " in the statement of claim.",
                )
            )
        return [sentence + contract_value]
    if kind == "counterclaim":
        original = _format_amount(rng, _amount_value(rng))
        return [
            rng.choice(
                (
                    f"The plaintiff's initial claim for {original} was separated into other proceedings.",
                    f"The plaintiff's claim for {original} was decided earlier and is not considered here.",
                )
            ),
            rng.choice(
                (
                    f"This ruling decides the counterclaim of the defendant for {total}{breakdown}.",
                    f"The defendant filed a counterclaim demanding {total}{breakdown} from the plaintiff.",
                    f"By way of counterclaim, {who} asked to recover {total}{breakdown}.",
                    f"In a counter-suit, {who} demands {total}{breakdown} from the other side.",
                    f"The defendant responded with a counter statement of claim for {total}{breakdown}.",
                )
            )
            + contract_value,
        ]
    judgment = _format_amount(rng, claim * rng.uniform(1.0, 1.6))
    appellant = f"the {initiator}" if rng.random() < 0.6 else _mention(rng, initiator_party)
    return [
        rng.choice(
            (
                f"By the judgment of first instance, {judgment} was at stake between the parties.",
                f"The first-instance court ruled on claims totalling {judgment}.",
            )
        ),
        rng.choice(
            (
                f"An appeal was lodged by {appellant}, contesting {total} of the judgment.",
                f"In its appeal, {appellant} asks to revise the judgment in the part of {total}{breakdown}.",
                f"The appellant, {appellant}, disputes the judgment as to {total}.",
            )
        ),
    ]


def _reasoning_sentences(rng: random.Random, decision: str, claim: float, awarded: float) -> list[str]:
    if decision == "satisfied":
        options: tuple[str, ...] = (
            "The court found the claims substantiated by the invoices and acts of acceptance.",
            "The evidence confirms the debt, and the other side presented no objections.",
            "Having examined the evidence, the court considers the demands well-founded.",
            "The court rejected the argument that the limitation period had expired.",
            "The request to reduce the penalty was refused, since no disproportion was shown.",
        )
    elif decision == "partially_satisfied":
        reduced = _format_amount(rng, claim - awarded)
        options = (
            f"The court reduced the penalty under Article 333 of the Civil Code, cutting {reduced} from the demand.",
            f"Part of the demand, {reduced}, was not supported by primary documents.",
            f"The limitation period had expired for {reduced} of the demand.",
            f"The court agreed that {reduced} had been paid before the hearing.",
        )
    else:
        options = (
            "The court found that the debt had been paid before the claim was filed.",
            "The demands are not supported by evidence of performance.",
            "The limitation period expired, which the other side duly pleaded.",
            "The contract was found not concluded, so no payment obligation arose under it.",
        )
    sentences = [rng.choice(options)]
    if rng.random() < 0.3:
        # Words like "partially" and "rejected" that a keyword rule would misread.
        sentences.append(
            rng.choice(
                (
                    "The motion to involve an expert was rejected.",
                    "The defendant's objections were partially based on a draft contract.",
                    "A request to hear a witness was denied as irrelevant.",
                    "The parties partly agreed on the facts at the preliminary hearing.",
                )
            )
        )
    return sentences


def _operative_sentence(
    rng: random.Random,
    kind: str,
    decision: str,
    initiator: str,
    plaintiff: Party,
    defendant: Party,
    awarded: float,
) -> str:
    demand = rng.choice(
        {
            "claim": ("claim", "statement of claim", "action"),
            "counterclaim": ("counterclaim", "counter-suit", "counter demand"),
            "appeal": ("appeal", "appellate complaint", "complaint"),
        }[kind]
    )
    payer = defendant if initiator == "plaintiff" else plaintiff
    receiver = plaintiff if initiator == "plaintiff" else defendant
    amount = _format_amount(rng, awarded)
    if decision == "satisfied":
        return rng.choice(
            (
                f"The court ruled: the {demand} is satisfied in full.",
                f"HELD: to grant the {demand} in full and recover {amount} from {_mention(rng, payer)}"
                f" in favour of {_mention(rng, receiver)}.",
                f"The {demand} is upheld in its entirety; {amount} is to be recovered.",
                f"The court decided to satisfy the {demand} completely.",
                f"To recover from {_mention(rng, payer)} the whole sum demanded, {amount}.",
            )
        )
    if decision == "partially_satisfied":
        return rng.choice(
            (
                f"The court ruled: the {demand} is satisfied in part; recover {amount} from"
                f" {_mention(rng, payer)}; the rest of the {demand} is denied.",
                f"HELD: to grant the {demand} partially, in the amount of {amount}.",
                f"The {demand} is partly upheld: {amount} is awarded, and the remaining demands are rejected.",
                f"To recover {amount} in favour of {_mention(rng, receiver)}; in the remaining part the"
                f" {demand} is dismissed.",
                f"To recover from {_mention(rng, payer)} {amount}; the other demands are left without satisfaction.",
            )
        )
    return rng.choice(
        (
            f"The court ruled: the {demand} is dismissed.",
            f"HELD: to refuse to satisfy the {demand} in full.",
            f"The {demand} is rejected in its entirety.",
            f"The court decided to deny the {demand}; nothing is recovered.",
            f"To leave the {demand} without satisfaction.",
            f"The {demand} is not granted.",
        )
    )


def _cost_sentences(rng: random.Random, claim: float) -> list[str]:
    sentences = []
    if rng.random() < 0.7:
        duty = round(min(200_000.0, 10_000 + claim * 0.01), -1)
        sentences.append(
            rng.choice(
                (
                    f"State duty of {_format_amount(rng, duty)} is charged to the losing party.",
                    f"The court also distributed the state duty of {_format_amount(rng, duty)}.",
                )
            )
        )
    if rng.random() < 0.4:
        costs = float(rng.choice((25_000, 40_000, 60_000, 85_000, 120_000)))
        sentences.append(f"Legal representation costs of {_format_amount(rng, costs)} were also claimed.")
    sentences.append(
        rng.choice(
            (
                "The decision may be appealed within one month.",
                "The ruling enters into force upon expiry of the appeal period.",
                "The resolution takes effect from the date of its adoption.",
            )
        )
    )
    return sentences


if __name__ == "__main__":
    # Writes a split as JSONL: how the stored eval sets were made. test-v1.jsonl:
    #   python -m tasks.legal.generator test 200 2025
    # defendant-initiated-v1.jsonl, the first 60 records whose initiator is the defendant (counterclaims, appeals):
    #   python -m tasks.legal.generator defendant 60 2026 initiator=defendant
    import itertools
    import json
    import sys

    split_name, split_size, split_seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    conditions = dict(arg.split("=", 1) for arg in sys.argv[4:])
    records = (
        record
        for record in generate_split(split_seed, split_name, split_size * 100)
        if all(str(record["fields"][key]) == value for key, value in conditions.items())
    )
    for record in itertools.islice(records, split_size):
        print(json.dumps(record, ensure_ascii=False))
