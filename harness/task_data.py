"""A task's examples: train and validation from the generator or JSONL files, test from digest-checked eval sets.

Every record is `{"id", "text", "fields"}` with exactly the task's declared fields. Anything else is an error
naming the file and line: nothing is dropped silently.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from harness.config import EvalSetSpec, FieldSpec, TaskConfig
from harness.errors import HarnessError

TRAINING_SPLITS = ("train", "validation")


@dataclass(frozen=True)
class Example:
    id: str
    text: str
    fields: dict[str, Any]


def split_names(task: TaskConfig) -> list[str]:
    """Every name `--split` accepts: train, validation, test (the first eval set) and each eval set by name."""
    return [*TRAINING_SPLITS, "test", *task.eval_set_names]


def load_split(task: TaskConfig, split: str) -> list[Example]:
    """Load one split; `test` is the task's first stored eval set."""
    if split in TRAINING_SPLITS:
        examples = _load_training_split(task, split)
        _check_no_leakage(task, split, examples)
        return examples
    eval_set = _eval_set(task, split)
    return load_eval_set(task, eval_set)


def load_eval_set(task: TaskConfig, eval_set: EvalSetSpec) -> list[Example]:
    """Load a stored eval set after checking its sha256: a stored set that changed is refused."""
    path = task.data_path(eval_set.path)
    try:
        content = path.read_bytes()
    except OSError as error:
        raise HarnessError(f"cannot read eval set {eval_set.name} at {path}: {error.strerror}") from None
    digest = hashlib.sha256(content).hexdigest()
    if digest != eval_set.sha256:
        raise HarnessError(
            f"{path}: sha256 is {digest}, but {task.file} records {eval_set.sha256} for eval set"
            f" {eval_set.name!r} (data.eval_sets). A stored eval set never changes: restore the file"
            " (git checkout) or add a new versioned set (e.g. test-v2) beside it."
        )
    return parse_jsonl(content.decode("utf-8").splitlines(), task.fields, source=str(path))


def json_lines(lines: Iterable[str], *, source: str) -> Iterator[tuple[int, str, Any]]:
    """Yield (line number, `source:line`, parsed value) for each non-blank JSONL line; bad JSON names its line."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{source}:{number}"
        try:
            yield number, where, json.loads(line)
        except json.JSONDecodeError as error:
            raise HarnessError(f"{where}: not valid JSON: {error.msg} at column {error.colno}") from None


def parse_jsonl(lines: Iterable[str], fields: dict[str, FieldSpec], *, source: str) -> list[Example]:
    """Parse and validate `{"id", "text", "fields"}` lines; errors name `source:line`."""
    examples: list[Example] = []
    seen: dict[str, int] = {}
    for number, where, record in json_lines(lines, source=source):
        example = _validate_record(record, fields, where)
        if example.id in seen:
            raise HarnessError(f"{where}: id {example.id!r} already used on line {seen[example.id]}")
        seen[example.id] = number
        examples.append(example)
    if not examples:
        raise HarnessError(f"{source}: no records")
    return examples


def _validate_record(record: Any, fields: dict[str, FieldSpec], where: str) -> Example:
    if not isinstance(record, dict):
        raise HarnessError(f"{where}: expected a JSON object with id, text and fields, got {type(record).__name__}")
    unknown = sorted(set(record) - {"id", "text", "fields"})
    if unknown:
        raise HarnessError(f"{where}: unknown key(s) {', '.join(unknown)}; expected id, text, fields")
    for key, kind in (("id", str), ("text", str), ("fields", dict)):
        if key not in record:
            raise HarnessError(f"{where}: missing key {key!r}")
        if not isinstance(record[key], kind):
            raise HarnessError(f"{where}: {key!r} must be a {'string' if kind is str else 'JSON object'}")
    if not record["text"].strip():
        raise HarnessError(f"{where}: 'text' is empty")
    values = record["fields"]
    for name in fields:
        if name not in values:
            raise HarnessError(f"{where}: missing field {name!r} (declared in the task's fields; use null if absent)")
    undeclared = sorted(set(values) - set(fields))
    if undeclared:
        raise HarnessError(f"{where}: undeclared field(s) {', '.join(undeclared)}; declared: {', '.join(fields)}")
    for name, spec in fields.items():
        problem = _value_problem(spec, values[name])
        if problem:
            raise HarnessError(f"{where}: fields.{name}: {problem} (got {values[name]!r})")
    return Example(id=record["id"], text=record["text"], fields=values)


def _value_problem(spec: FieldSpec, value: Any) -> str | None:
    """Why a gold value does not fit its declared type, or None when it does (null always fits)."""
    if value is None:
        return None
    if spec.type == "string" and not isinstance(value, str):
        return "expected a string"
    if spec.type == "number" and (isinstance(value, bool) or not isinstance(value, int | float)):
        return "expected a number"
    if spec.type == "enum" and value not in (spec.values or ()):
        return f"not a declared value; expected one of {', '.join(spec.values or ())}"
    if spec.type == "date":
        try:
            if not isinstance(value, str) or dt.date.fromisoformat(value).isoformat() != value:
                return "expected an ISO date YYYY-MM-DD"
        except ValueError:
            return "expected an ISO date YYYY-MM-DD"
    if spec.type == "string_list" and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        return "expected a list of strings"
    return None


def _load_training_split(task: TaskConfig, split: str) -> list[Example]:
    data = task.data
    if data.source == "generator":
        from harness import legal_generator  # the only generator; `generator: legal` is validated at load

        size = data.train_size if split == "train" else data.validation_size
        records = legal_generator.generate_split(data.seed, split, size or 0)
        return [
            _validate_record(r, task.fields, f"generator {data.generator} {split}[{i}]") for i, r in enumerate(records)
        ]
    relative = data.train if split == "train" else data.validation
    path = task.data_path(relative or "")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise HarnessError(f"cannot read {split} data {path} (data.{split} in {task.file}): {error.strerror}") from None
    return parse_jsonl(lines, task.fields, source=str(path))


def _check_no_leakage(task: TaskConfig, split: str, examples: list[Example]) -> None:
    """No eval-set text may appear in train or validation: a leaked test set measures memory, not skill."""
    texts = {_fingerprint(e.text): e.id for e in examples}
    for eval_set in task.data.eval_sets:
        for test_example in load_eval_set(task, eval_set):
            leaked = texts.get(_fingerprint(test_example.text))
            if leaked is not None:
                raise HarnessError(
                    f"{split} example {leaked!r} has the same text as {eval_set.name} example"
                    f" {test_example.id!r}; remove it from the {split} data"
                )


def _fingerprint(text: str) -> str:
    return " ".join(text.casefold().split())


def _eval_set(task: TaskConfig, split: str) -> EvalSetSpec:
    if split == "test":
        return task.data.eval_sets[0]
    for eval_set in task.data.eval_sets:
        if eval_set.name == split:
            return eval_set
    raise HarnessError(
        f"unknown split {split!r} for task {task.task.name}; expected one of {', '.join(split_names(task))}"
    )
