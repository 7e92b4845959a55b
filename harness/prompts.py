"""Chat turns for one example: the instruction as the system turn, the document as the user turn, compact JSON as
the answer."""

from __future__ import annotations

import json
from typing import Any

from evaluators.field_types import record_schema
from harness.config import TaskConfig


def prompt_turns(task: TaskConfig, text: str) -> list[dict[str, str]]:
    """The prompt as chat messages: the task's instruction as the system turn, the document as the user turn.

    An explicit system turn also replaces the one many chat templates add when none is given (SmolLM2's "You are a
    helpful AI assistant named SmolLM...", 20 tokens of every training example that teach nothing)."""
    return [{"role": "system", "content": system_prompt(task)}, {"role": "user", "content": text}]


def system_prompt(task: TaskConfig) -> str:
    """The task's instruction, and with `describe_fields` what each field means (its description, as the YAML
    gives it)."""
    instruction = task.task.instruction.strip()
    if not task.task.describe_fields:
        return instruction
    described = [f"- {name}: {spec.description.strip()}" for name, spec in task.fields.items() if spec.description]
    return "\n".join([instruction, "What each key means:", *described])


def assistant_turn(fields: dict[str, Any]) -> list[dict[str, str]]:
    """The target answer: the gold fields as compact JSON, the fewest tokens that say it all."""
    return [{"role": "assistant", "content": compact_json(fields)}]


def compact_json(fields: dict[str, Any]) -> str:
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":"))


def output_schema(task: TaskConfig) -> dict[str, Any]:
    """The answer's JSON Schema, for schema-constrained decoding (vLLM's `response_format`): one key per field,
    all of them required and no others; a field may be null when the document does not say it."""
    return record_schema(task.fields)
