"""A task's examples: train and validation from the generator or JSONL files, test from digest-checked eval sets.

Every record is `{"id", "text", "fields"}` with exactly the task's declared fields. Anything else is an error
naming the file and line: nothing is dropped silently.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import statistics
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from evaluators.field_types import record_validator, value_problem
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
    problem = _fields_problem(record["fields"], fields)
    if problem:
        raise HarnessError(f"{where}: {problem}")
    return Example(id=record["id"], text=record["text"], fields=record["fields"])


def _fields_problem(values: dict[str, Any], fields: dict[str, FieldSpec]) -> str | None:
    """What is wrong with a gold record's fields by the task's record schema (`evaluators.field_types`), said the
    way a person fixes it; None when they validate."""
    errors = list(record_validator(fields).iter_errors(values))
    if not errors:
        return None
    missing = [name for name in fields if name not in values]
    if missing:
        return f"missing field {missing[0]!r} (declared in the task's fields; use null if absent)"
    undeclared = sorted(set(values) - set(fields))
    if undeclared:
        return f"undeclared field(s) {', '.join(undeclared)}; declared: {', '.join(fields)}"
    name = str(errors[0].absolute_path[0])
    return f"fields.{name}: {value_problem(fields[name], values[name])} (got {values[name]!r})"


def _load_training_split(task: TaskConfig, split: str) -> list[Example]:
    data = task.data
    if data.source == "generator":
        size = data.train_size if split == "train" else data.validation_size
        records = _member(task, "generator", "generate_split")(data.seed, split, size or 0)
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


def summarise_split(task: TaskConfig, examples: list[Example]) -> dict[str, str]:
    """A split at a glance, by the task's own fields: size, text length, how often each field is null, and the
    share of each value of every enum field (column -> text)."""
    words = [len(e.text.split()) for e in examples]
    summary = {
        "examples": str(len(examples)),
        "words (min / mean / max)": f"{min(words)} / {statistics.mean(words):.0f} / {max(words)}",
    }
    nulls = {name: sum(e.fields[name] is None for e in examples) for name in task.fields}
    summary["null fields"] = ", ".join(f"{name} {count / len(examples):.0%}" for name, count in nulls.items() if count)
    for name, spec in task.fields.items():
        if spec.type == "enum":
            counts = Counter(e.fields[name] for e in examples if e.fields[name] is not None)
            summary[name] = ", ".join(f"{value} {counts[value] / len(examples):.0%}" for value in spec.values or ())
    return {column: text or "-" for column, text in summary.items()}


def rule_baseline(task: TaskConfig) -> Callable[[str], str] | None:
    """The task's answer without a model (`data.baseline`: rules), or None when the task has none."""
    return None if task.data.baseline is None else _member(task, "baseline", "predict")


def _member(task: TaskConfig, key: str, name: str) -> Any:
    """`name` from the module the task's YAML names at `data.<key>`; a clear error when it has none."""
    module = task_module(task, key)
    if not hasattr(module, name):
        raise HarnessError(f"{module.__name__} (data.{key} in {task.file}) has no {name}(); expected one there")
    return getattr(module, name)


def task_module(task: TaskConfig, key: str) -> ModuleType:
    """The module the task's YAML names at `data.<key>` (its own code, e.g. `tasks.legal.generator`)."""
    name = getattr(task.data, key)
    try:
        return importlib.import_module(name)
    except ImportError as error:
        raise HarnessError(
            f"cannot import {name!r} (data.{key} in {task.file}): {error}; expected an importable module path"
            " such as tasks.legal.generator"
        ) from None


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
