"""Chat turns for one example: the instruction and document as the user turn, compact JSON as the answer."""

from __future__ import annotations

import json
from typing import Any

from harness.config import TaskConfig


def user_turn(task: TaskConfig, text: str) -> list[dict[str, str]]:
    """The prompt as chat messages: the task's instruction, a blank line, then the document."""
    return [{"role": "user", "content": f"{task.task.instruction.strip()}\n\n{text}"}]


def assistant_turn(fields: dict[str, Any]) -> list[dict[str, str]]:
    """The target answer: the gold fields as compact JSON, the fewest tokens that say it all."""
    return [{"role": "assistant", "content": compact_json(fields)}]


def compact_json(fields: dict[str, Any]) -> str:
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":"))
