"""Prediction files (`{"id", "output"}` per line, raw model text) and scoring them against a split."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from evaluators.scoring import Scores, score_outputs
from harness.config import TaskConfig
from harness.errors import HarnessError
from harness.task_data import Example, json_lines, load_split


def read_predictions(path: Path, known_ids: set[str], split: str) -> dict[str, str]:
    """Read a predictions file; unknown ids, duplicate ids and malformed lines are errors naming the line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise HarnessError(f"cannot read predictions {path}: {error.strerror}") from None
    outputs: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for number, where, record in json_lines(lines, source=str(path)):
        if not isinstance(record, dict) or not isinstance(record.get("id"), str):
            raise HarnessError(f'{where}: expected {{"id": "...", "output": "..."}} with a string id')
        if not isinstance(record.get("output"), str):
            raise HarnessError(
                f"{where}: 'output' must be the model's raw text (a string), got {record.get('output')!r}"
            )
        record_id = record["id"]
        if record_id not in known_ids:
            raise HarnessError(f"{where}: id {record_id!r} is not in the {split} split")
        if record_id in outputs:
            raise HarnessError(f"{where}: id {record_id!r} already predicted on line {first_line[record_id]}")
        outputs[record_id] = record["output"]
        first_line[record_id] = number
    if not outputs:
        raise HarnessError(f"{path}: no predictions")
    return outputs


def score_answers(task: TaskConfig, examples: Sequence[Example], outputs: Sequence[str]) -> Scores:
    """Raw answers scored against the examples' gold fields, in order, values compared in the task's words (its
    `normalization`): how every trial, gate, check and page scores."""
    return score_outputs(
        task.fields, [e.fields for e in examples], outputs, [e.id for e in examples], vocabulary=task.vocabulary
    )


def score_predictions_file(task: TaskConfig, path: Path, split: str) -> tuple[Scores, int]:
    """Score a predictions file against the gold values of a split; returns the scores and the split's size."""
    examples = load_split(task, split)
    outputs = read_predictions(path, {e.id for e in examples}, split)
    scored = [e for e in examples if e.id in outputs]
    scores = score_answers(task, scored, [outputs[e.id] for e in scored])
    return scores, len(examples)


def write_predictions(path: Path, ids: Sequence[str], outputs: Sequence[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as file:
        for record_id, output in zip(ids, outputs, strict=True):
            file.write(json.dumps({"id": record_id, "output": output}, ensure_ascii=False) + "\n")
