"""Task data: splits load and validate, stored eval sets are digest-checked, bad lines name file and line."""

from __future__ import annotations

import json

import pytest

from harness.config import FieldSpec, load_task
from harness.errors import HarnessError
from harness.task_data import Example, load_split, parse_jsonl, rule_baseline, split_names, summarise_split

pytestmark = pytest.mark.fast  # the fast tier: no process started, no training (make test-fast)

GOOD = {
    "id": "a",
    "text": "A decision.",
    "fields": {
        "plaintiff": 'LLC "A"',
        "defendant": 'LLC "B"',
        "dispute_subject": "supply",
        "decision": "dismissed",
        "claim_amount": 100,
        "awarded_amount": 0,
        "initiator": "plaintiff",
    },
}


def test_legal_splits_have_the_seed_sizes(legal):
    assert len(load_split(legal, "train")) == 3200
    assert len(load_split(legal, "validation")) == 400
    assert len(load_split(legal, "test")) == 200
    assert split_names(legal) == ["train", "validation", "test", "test-v1", "defendant-initiated-v1"]


def test_test_is_the_first_stored_eval_set(legal):
    assert [e.id for e in load_split(legal, "test")] == [e.id for e in load_split(legal, "test-v1")]


def test_no_test_text_appears_in_train_or_validation(legal):
    test_texts = {e.text for e in load_split(legal, "test")}
    for split in ("train", "validation"):
        assert test_texts.isdisjoint(e.text for e in load_split(legal, split))


def test_a_modified_eval_set_is_refused(task_copy):
    path, eval_set = task_copy()
    lines = eval_set.read_text().splitlines()
    record = json.loads(lines[0])
    record["fields"]["claim_amount"] += 1
    eval_set.write_text("\n".join([json.dumps(record, ensure_ascii=False), *lines[1:]]) + "\n")
    task = load_task(str(path))
    with pytest.raises(HarnessError, match=r"test-v1\.jsonl: sha256 is [0-9a-f]{64}, but .* records bfecd41e"):
        load_split(task, "test")


def test_the_unmodified_copy_loads(task_copy):
    path, _ = task_copy()
    assert len(load_split(load_task(str(path)), "test")) == 200


def test_leaked_test_text_in_jsonl_training_data_is_an_error(task_copy, tmp_path):
    from tests.conftest import LEGAL_YAML

    stored = LEGAL_YAML.parent.parent / "tasks" / "legal" / "eval_sets" / "test-v1.jsonl"
    test_record = json.loads(stored.read_text().splitlines()[5])
    (tmp_path / "train.jsonl").write_text(json.dumps({**test_record, "id": "t1"}) + "\n")
    (tmp_path / "validation.jsonl").write_text(json.dumps(GOOD) + "\n")

    def to_jsonl(data):
        data["data"] = {
            "source": "jsonl",
            "train": "../train.jsonl",
            "validation": "../validation.jsonl",
            "eval_sets": data["data"]["eval_sets"],
        }

    path, _ = task_copy(to_jsonl)
    task = load_task(str(path))
    assert [e.id for e in load_split(task, "validation")] == ["a"]
    with pytest.raises(HarnessError, match=r"train example 't1' has the same text as test-v1 example 'test-00005'"):
        load_split(task, "train")


def parse(legal, *lines):
    return parse_jsonl(lines, legal.fields, source="data.jsonl")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", r"data\.jsonl:2: not valid JSON: Expecting property name"),
        ("[1, 2]", r"data\.jsonl:2: expected a JSON object with id, text and fields, got list"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "text"}), r"data\.jsonl:2: missing key 'text'"),
        (json.dumps({**GOOD, "id": 7}), r"data\.jsonl:2: 'id' must be a string"),
        (json.dumps({**GOOD, "extra": 1}), r"data\.jsonl:2: unknown key\(s\) extra; expected id, text, fields"),
        (json.dumps({**GOOD, "text": "  "}), r"data\.jsonl:2: 'text' is empty"),
        (
            json.dumps({**GOOD, "fields": {k: v for k, v in GOOD["fields"].items() if k != "decision"}}),
            r"data\.jsonl:2: missing field 'decision'",
        ),
        (
            json.dumps({**GOOD, "fields": {**GOOD["fields"], "judge": "X"}}),
            r"data\.jsonl:2: undeclared field\(s\) judge; declared: plaintiff, defendant",
        ),
        (
            json.dumps({**GOOD, "fields": {**GOOD["fields"], "decision": "won"}}),
            r"data\.jsonl:2: fields\.decision: not a declared value; expected one of satisfied, "
            r"partially_satisfied, dismissed \(got 'won'\)",
        ),
        (
            json.dumps({**GOOD, "fields": {**GOOD["fields"], "claim_amount": "100"}}),
            r"data\.jsonl:2: fields\.claim_amount: expected a number \(got '100'\)",
        ),
        (
            json.dumps({**GOOD, "fields": {**GOOD["fields"], "plaintiff": 5}}),
            r"data\.jsonl:2: fields\.plaintiff: expected a string \(got 5\)",
        ),
        (json.dumps({**GOOD, "id": "a"}), r"data\.jsonl:2: id 'a' already used on line 1"),
    ],
)
def test_bad_data_lines_are_errors_naming_file_and_line(legal, line, message):
    with pytest.raises(HarnessError, match=message):
        parse(legal, json.dumps(GOOD), line)


def test_null_gold_values_are_allowed(legal):
    record = {**GOOD, "fields": {**GOOD["fields"], "claim_amount": None}}
    assert parse(legal, json.dumps(record))[0].fields["claim_amount"] is None


def test_an_unknown_split_lists_the_known_ones(legal):
    with pytest.raises(HarnessError, match=r"unknown split 'dev' for task legal; expected one of train, validation"):
        load_split(legal, "dev")


def test_a_splits_summary_comes_from_the_tasks_own_fields(legal):
    """Any task gets its own columns: one per enum field, and which fields are null how often; none of legal's."""
    fields = {"party": FieldSpec(type="string"), "outcome": FieldSpec(type="enum", values=("won", "lost"))}
    task = legal.model_copy(update={"fields": fields})
    examples = [
        Example("a", "one two three", {"party": "X", "outcome": "won"}),
        Example("b", "one", {"party": None, "outcome": "lost"}),
        Example("c", "one two", {"party": "Y", "outcome": "won"}),
    ]
    assert summarise_split(task, examples) == {
        "examples": "3",
        "words (min / mean / max)": "1 / 2 / 3",
        "null fields": "party 33%",
        "outcome": "won 67%, lost 33%",
    }
    legal_columns = summarise_split(legal, load_split(legal, "validation"))
    assert {"dispute_subject", "decision", "initiator"} <= set(legal_columns)


def test_a_baseline_module_that_cannot_answer_is_a_clear_error(legal):
    for module, message in (
        ("tasks.nothing", "cannot import 'tasks.nothing' \\(data.baseline"),
        ("json", "no predict"),
    ):
        task = legal.model_copy(update={"data": legal.data.model_copy(update={"baseline": module})})
        with pytest.raises(HarnessError, match=message):
            rule_baseline(task)
