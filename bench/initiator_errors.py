"""Where a model's `initiator` answers go wrong on a stored `legal` eval set: grouped by the ruling's kind (claim,
counterclaim, appeal) and by how the text names the one who filed it (its role or its company name).

The initiator is the goal the 135M model misses (README, "Measured figures"); this says which decisions cost it:

    .venv/bin/harness eval legal --model DIR --split test-v1 --max-new-tokens 112 --out answers.jsonl
    .venv/bin/python bench/initiator_errors.py answers.jsonl [--eval-set tasks/legal/eval_sets/test-v1.jsonl]

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("answers", type=Path, help='the model\'s answers: {"id", "output"} lines (harness eval --out)')
    parser.add_argument("--eval-set", type=Path, default=Path("tasks/legal/eval_sets/test-v1.jsonl"))
    args = parser.parse_args()
    records = [json.loads(line) for line in args.eval_set.read_text(encoding="utf-8").splitlines()]
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
