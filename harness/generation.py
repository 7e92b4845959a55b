"""Batched greedy generation of JSON answers: the evaluation's hot path.

Three things make it fast: prompts are sorted by length and batched with left padding (little padding, one
forward pass per token for the whole batch), the model runs in bf16 where the hardware supports it, and each
sequence stops as soon as its JSON object closes instead of running to `max_new_tokens`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from transformers import StoppingCriteria, StoppingCriteriaList


class AnswerReporter(Protocol):
    """Told how a long evaluation goes: what is being done now (`stage`), and how many answers are generated."""

    def stage(self, text: str) -> None: ...

    def answers(self, done: int, total: int) -> None: ...


@dataclass(frozen=True)
class GenerationResult:
    outputs: list[str]  # decoded answers, in prompt order
    new_tokens: int  # tokens generated, summed over prompts (up to each one's stop)
    seconds: float

    @property
    def tokens_per_second(self) -> float:
        return self.new_tokens / self.seconds if self.seconds else 0.0


class JsonObjectClosed(StoppingCriteria):
    """Stops each sequence once the braces it generated balance: the JSON answer is complete.

    Counting braces per token avoids decoding every step; braces inside JSON strings are rare in extraction
    answers, and a sequence that never opens a brace runs to `max_new_tokens` as before.
    """

    def __init__(self, tokenizer: Any, prompt_length: int, device: torch.device) -> None:
        vocabulary = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        self.opens = torch.tensor([t.count("{") if t else 0 for t in vocabulary], device=device)
        self.closes = torch.tensor([t.count("}") if t else 0 for t in vocabulary], device=device)
        self.prompt_length = prompt_length

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        generated = input_ids[:, self.prompt_length :]
        opened = self.opens[generated].sum(dim=1)
        closed = self.closes[generated].sum(dim=1)
        return (opened > 0) & (closed >= opened)


def generate_answers(
    model: Any,
    tokenizer: Any,
    conversations: list[list[dict[str, str]]],
    *,
    batch_size: int,
    max_new_tokens: int,
    reporter: AnswerReporter | None = None,
) -> GenerationResult:
    """Greedy answers to chat prompts, batched by length; outputs come back in the order given. A `reporter`
    hears the count of answers as generation starts and after each batch."""
    prompts = [tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in conversations]
    lengths = [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: lengths[i], reverse=True)
    outputs: list[str] = [""] * len(prompts)
    new_tokens = 0
    padding_side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # generation continues from the right edge of every row
    was_training = model.training
    model.eval()
    # Generation uses PyTorch's fused attention; a model loaded for CPU training computes attention eagerly
    # (faster for the backward pass, slower here: bench/generation_speed.py).
    attention = model.config._attn_implementation
    model.set_attn_implementation("sdpa")
    # Parameters marked trainable for the call (nothing is trained: inference mode records no graph). On a CPU,
    # the same bf16 prefill of 16 prompts held 1.08 GB more with frozen parameters (a fine-tuned model's, every
    # base weight frozen) than with trainable ones, at the same speed (measured on SmolLM2).
    # (Floating-point ones: a base left quantized for generation holds integer weights.)
    frozen = [p for p in model.parameters() if not p.requires_grad and p.is_floating_point()]
    for parameter in frozen:
        parameter.requires_grad_(True)
    device = next(model.parameters()).device
    started = time.perf_counter()
    if reporter is not None:
        reporter.answers(0, len(order))
    try:
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            inputs = tokenizer(
                [prompts[i] for i in batch], return_tensors="pt", padding=True, add_special_tokens=False
            ).to(device)
            prompt_length = inputs["input_ids"].shape[1]
            with torch.inference_mode():
                generated = model.generate(
                    **inputs,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    pad_token_id=tokenizer.pad_token_id,
                    stopping_criteria=StoppingCriteriaList([JsonObjectClosed(tokenizer, prompt_length, device)]),
                )
            answers = generated[:, prompt_length:]
            for row, index in enumerate(batch):
                tokens = answers[row]
                kept = tokens[tokens != tokenizer.pad_token_id]
                new_tokens += int(kept.numel())
                outputs[index] = tokenizer.decode(kept, skip_special_tokens=True)
            if reporter is not None:
                reporter.answers(min(start + batch_size, len(order)), len(order))
    finally:
        tokenizer.padding_side = padding_side
        model.set_attn_implementation(attention)
        for parameter in frozen:
            parameter.requires_grad_(False)
        model.train(was_training)
    return GenerationResult(outputs=outputs, new_tokens=new_tokens, seconds=time.perf_counter() - started)
