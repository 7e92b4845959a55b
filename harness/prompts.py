"""Chat turns for one example: the instruction as the system turn, the document as the user turn, compact JSON as
the answer."""

from __future__ import annotations

import json
import math
import statistics
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


def token_counts(tokenizer: Any, task: TaskConfig, text: str, fields: dict[str, Any]) -> tuple[int, int]:
    """(prompt, answer) tokens of one example as training and generation see it: the chat template's prompt with
    its generation cue, then the answer with the template's end-of-turn tokens."""
    prompt = prompt_turns(task, text)
    prompt_tokens = _length(tokenizer.apply_chat_template(prompt, tokenize=True, add_generation_prompt=True))
    whole = _length(tokenizer.apply_chat_template(prompt + assistant_turn(fields), tokenize=True))
    return prompt_tokens, whole - prompt_tokens


def summarise_token_counts(counts: list[tuple[int, int]], *, max_seq_length: int) -> dict[str, str]:
    """A split's token lengths at a glance (column -> text): prompts (min / mean / p95 / max), the longest answer,
    and how many examples (prompt and answer) are longer than the budget's `max_seq_length`."""
    prompts = sorted(prompt for prompt, _ in counts)
    p95 = prompts[min(len(prompts) - 1, math.ceil(0.95 * len(prompts)) - 1)]
    over = sum(prompt + answer > max_seq_length for prompt, answer in counts)
    return {
        "prompt tokens (min / mean / p95 / max)": (
            f"{prompts[0]} / {statistics.mean(prompts):.0f} / {p95} / {prompts[-1]}"
        ),
        "answer tokens (max)": str(max(answer for _, answer in counts)),
        f"over {max_seq_length}": str(over) if over else "-",
    }


def _length(ids: Any) -> int:
    """The number of token ids `apply_chat_template(tokenize=True)` returned (a list, or a BatchEncoding)."""
    return len(ids["input_ids"] if hasattr(ids, "keys") else ids)
