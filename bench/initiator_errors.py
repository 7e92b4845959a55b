"""Where a model's `initiator` answers go wrong on a stored `legal` eval set: grouped by the ruling's kind (claim,
counterclaim, appeal) and by how the text names the one who filed it (its role or its company name).

The initiator is the goal the 135M model misses (README, "Measured figures"); this says which decisions cost it:

    .venv/bin/harness eval legal --model DIR --split test-v1 --max-new-tokens 112 --out answers.jsonl
    .venv/bin/python bench/initiator_errors.py answers.jsonl [--eval-set tasks/legal/eval_sets/test-v1.jsonl]

Without answers (`--recoverable`), a rules check says whether the data lets a reader tell who appealed at all: for
every appeal that names the appellant by its company, whether that name is the plaintiff's or the defendant's and
no other's (the company's name inside its quotes, or the entrepreneur's surname, against the gold parties).

The kind is read from the generator's wording (tasks/legal/generator.py: `_claim_sentences`), which the stored
sets were made with.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from pathlib import Path

from evaluators.scoring import extract_json_object

APPEAL = r"An appeal was lodged by|In its appeal,|The appellant,"
FILED_BY = re.compile(rf"({APPEAL}|By way of counterclaim,|In a counter-suit,) (the plaintiff|the defendant)?")
# Claims that mention a counterclaim or an appeal that this ruling does not decide.
DISTRACTORS = ("counterclaim was returned", "announced a counter-suit", "An appeal by either side")


def ruling_kind(text: str) -> str:
    if "separated into other proceedings" in text or "decided earlier and is not considered here" in text:
        return "counterclaim"
    if re.search(APPEAL, text):
        return "appeal"
    return "claim"


def named_by(text: str) -> str:
    """`role` when the text calls the initiator "the plaintiff" / "the defendant", `name` when by its company."""
    match = FILED_BY.search(text)
    if match:
        return "role" if match.group(2) else "name"
    by_name = "seeks recovery of" in text and not re.search(r"The (plaintiff|defendant) seeks", text)
    return "name" if by_name else "role"


NAMED_APPELLANT = re.compile(rf"(?:{APPEAL}) (?!the plaintiff|the defendant)(.+?)(?:, contesting| asks| disputes)")


def core_name(party: str) -> str:
    """The part of a party's name every mention of it shares: the company's name in its quotes, or the
    entrepreneur's surname."""
    quoted = re.search(r"[\"«“]([^\"»”]+)[\"»”]", party)
    if quoted:
        return quoted.group(1).casefold()
    return party.split()[-2].casefold() if len(party.split()) > 2 else party.casefold()


def appellant_by_name(record: dict) -> str | None:
    """For an appeal naming its appellant by company: plaintiff or defendant, as a rules check reads it from the
    text ('ambiguous' when the name fits both or neither); None for any other ruling."""
    match = NAMED_APPELLANT.search(record["text"])
    if not match:
        return None
    mention = core_name(match.group(1))
    fits = [role for role in ("plaintiff", "defendant") if core_name(record["fields"][role]) == mention]
    return fits[0] if len(fits) == 1 else "ambiguous"


def recoverable(records: list[dict]) -> None:
    named = [(r, appellant_by_name(r)) for r in records if appellant_by_name(r) is not None]
    right = sum(found == r["fields"]["initiator"] for r, found in named)
    appeals = sum(ruling_kind(r["text"]) == "appeal" for r in records)
    print(f"appeals: {appeals}; naming the appellant by its company: {len(named)}")
    print(f"the rules check reads the appellant's role right in {right} of {len(named)}")
    for record, found in named:
        if found != record["fields"]["initiator"]:
            print(f"  {record['id']}: read {found}, gold {record['fields']['initiator']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "answers", type=Path, nargs="?", help='the model\'s answers: {"id", "output"} lines (harness eval --out)'
    )
    parser.add_argument("--recoverable", action="store_true", help="only the rules check of the data: no answers")
    parser.add_argument("--eval-set", type=Path, default=Path("tasks/legal/eval_sets/test-v1.jsonl"))
    args = parser.parse_args()
    records = [json.loads(line) for line in args.eval_set.read_text(encoding="utf-8").splitlines()]
    if args.recoverable or args.answers is None:
        recoverable(records)
        return
    answers = {r["id"]: r["output"] for r in map(json.loads, args.answers.read_text(encoding="utf-8").splitlines())}

    total: Counter[tuple[str, str, str, str]] = Counter()
    wrong: Counter[tuple[str, str, str, str]] = Counter()
    for record in records:
        text, gold = record["text"], record["fields"]["initiator"]
        distractor = "yes" if any(d in text for d in DISTRACTORS) else ""
        group = (ruling_kind(text), gold, named_by(text), distractor)
        total[group] += 1
        predicted = (extract_json_object(answers.get(record["id"], "")) or {}).get("initiator")
        if predicted != gold:
            wrong[group] += 1
    print(f"{'kind':<13}{'initiator':<11}{'named by':<10}{'distractor':<12}{'decisions':>10}{'wrong':>7}")
    for kind, gold, naming, distractor in sorted(total):
        count, errors = total[kind, gold, naming, distractor], wrong[kind, gold, naming, distractor]
        print(f"{kind:<13}{gold:<11}{naming:<10}{distractor:<12}{count:>10}{errors:>7}")
    print(f"wrong: {sum(wrong.values())} of {sum(total.values())}")


if __name__ == "__main__":
    main()
