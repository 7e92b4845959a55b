"""From a model's raw output text to field-level metrics.

Counting, per field: a predicted non-null value is a true positive only if it equals the gold value after
normalisation, otherwise a false positive; a gold non-null value not matched is a false negative. String lists
count each item. `f1_micro` pools the counts of every field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from evaluators.field_types import FieldLike, is_schema_valid, normalize_value
from evaluators.normalization import Vocabulary, numbers_equal

_DECODER = json.JSONDecoder()
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL | re.IGNORECASE)
# A model can emit anything. Bounds that keep scoring one output fast whatever it holds (an answer is a few hundred
# characters): the object is looked for in the first MiB, from at most this many opening braces.
MAX_OUTPUT_CHARS = 1 << 20
MAX_OBJECT_STARTS = 256


def extract_json_object(output: str) -> dict[str, Any] | None:
    """The first JSON object in the text: inside a code fence or surrounded by prose; None if there is none (or it
    cannot be read: nested past the parser's depth, an integer of more than 4,300 digits)."""
    if not isinstance(output, str):
        return None
    output = output[:MAX_OUTPUT_CHARS]
    candidates = [match.group(1) for match in _FENCE.finditer(output)] + [output]
    for candidate in candidates:
        starts = (i for i, char in enumerate(candidate) if char == "{")
        for _, start in zip(range(MAX_OBJECT_STARTS), starts, strict=False):
            try:
                value, _ = _DECODER.raw_decode(candidate, start)
            except (ValueError, RecursionError):  # JSONDecodeError, the int digit limit, deep nesting
                continue
            if isinstance(value, dict):
                return value
    return None


@dataclass
class FieldCounts:
    true_positives: int = 0
    false_positives: int = 0
    false_negatives: int = 0

    @property
    def precision(self) -> float:
        predicted = self.true_positives + self.false_positives
        return self.true_positives / predicted if predicted else 0.0

    @property
    def recall(self) -> float:
        relevant = self.true_positives + self.false_negatives
        return self.true_positives / relevant if relevant else 0.0

    @property
    def f1(self) -> float:
        denominator = 2 * self.true_positives + self.false_positives + self.false_negatives
        return 2 * self.true_positives / denominator if denominator else 0.0


@dataclass
class RecordScore:
    """How one prediction fared: per-field correctness, for the predictions table."""

    id: str
    json_valid: bool
    schema_valid: bool
    prediction: dict[str, Any] | None
    correct: dict[str, bool] = field(default_factory=dict)


@dataclass
class Scores:
    metrics: dict[str, float]
    counts: dict[str, FieldCounts]
    records: list[RecordScore]


def values_equal(field_spec: FieldLike, predicted: Any, gold: Any, vocabulary: Vocabulary) -> bool:
    """Whether two raw values mean the same for this field, in the task's words (both absent counts as equal)."""
    left, right = normalize_value(field_spec, predicted, vocabulary), normalize_value(field_spec, gold, vocabulary)
    if left is None or right is None:
        return left is None and right is None
    if field_spec.type == "number":
        return numbers_equal(left, right)
    return bool(left == right)


def score_outputs(
    fields: Mapping[str, FieldLike],
    golds: Sequence[Mapping[str, Any]],
    outputs: Sequence[str],
    ids: Sequence[str],
    *,
    vocabulary: Vocabulary,
) -> Scores:
    """Score raw model outputs against gold field values, comparing values in the task's words (its
    `normalization`); metric names as `harness score` prints them."""
    if not (len(golds) == len(outputs) == len(ids)):
        raise ValueError(f"{len(golds)} gold records, {len(outputs)} outputs and {len(ids)} ids: must be equal")
    counts = {name: FieldCounts() for name in fields}
    records = []
    for record_id, gold, output in zip(ids, golds, outputs, strict=True):
        prediction = extract_json_object(output)
        values = prediction or {}
        schema_valid = prediction is not None and set(prediction) == set(fields)
        record = RecordScore(id=record_id, json_valid=prediction is not None, schema_valid=False, prediction=prediction)
        for name, spec in fields.items():
            predicted_value = values.get(name)
            schema_valid = schema_valid and is_schema_valid(spec, predicted_value)
            _count(spec, predicted_value, gold.get(name), counts[name], vocabulary)
            record.correct[name] = values_equal(spec, predicted_value, gold.get(name), vocabulary)
        record.schema_valid = schema_valid
        records.append(record)

    n = len(records)
    metrics: dict[str, float] = {"n": n}
    pooled = FieldCounts(
        sum(c.true_positives for c in counts.values()),
        sum(c.false_positives for c in counts.values()),
        sum(c.false_negatives for c in counts.values()),
    )
    metrics["f1_micro"] = pooled.f1
    for name in fields:
        metrics[f"f1_{name}"] = counts[name].f1
    for name, spec in fields.items():
        if spec.type == "enum":
            metrics[f"acc_{name}"] = sum(r.correct[name] for r in records) / n if n else 0.0
    metrics["exact_match"] = sum(all(r.correct.values()) for r in records) / n if n else 0.0
    metrics["json_valid_rate"] = sum(r.json_valid for r in records) / n if n else 0.0
    metrics["schema_valid_rate"] = sum(r.schema_valid for r in records) / n if n else 0.0
    return Scores(metrics=metrics, counts=counts, records=records)


def _count(spec: FieldLike, predicted: Any, gold: Any, counts: FieldCounts, vocabulary: Vocabulary) -> None:
    predicted_value, gold_value = normalize_value(spec, predicted, vocabulary), normalize_value(spec, gold, vocabulary)
    if spec.type == "string_list":
        predicted_items, gold_items = predicted_value or frozenset(), gold_value or frozenset()
        counts.true_positives += len(predicted_items & gold_items)
        counts.false_positives += len(predicted_items - gold_items)
        counts.false_negatives += len(gold_items - predicted_items)
        return
    # An unreadable prediction (a number field holding "n/a") was still predicted: it is a false positive.
    was_predicted = predicted is not None
    if was_predicted and gold_value is not None and values_equal(spec, predicted, gold, vocabulary):
        counts.true_positives += 1
        return
    if was_predicted:
        counts.false_positives += 1
    if gold_value is not None:
        counts.false_negatives += 1
