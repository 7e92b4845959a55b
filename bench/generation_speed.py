"""Evaluation speed: naive per-example fp32 `generate()` against harness's batched generator, one process.

    .venv/bin/python bench/generation_speed.py [--model embedded:smollm2-135m-instruct] [--examples 16]

Both generate greedy answers to the same validation prompts. The naive side is what a first script does: one
prompt at a time, fp32, `max_new_tokens` always spent. harness's side batches by length with left padding,
uses bf16 where the hardware runs it natively, and stops each answer when its JSON object closes. Prints
tokens per second for each and the ratio.
"""

from __future__ import annotations

import argparse
import time

import torch

from harness.config import load_task
from harness.generation import generate_answers
from harness.model_loading import load_causal_lm, load_tokenizer, resolve_model, supports_bf16, training_dtype
from harness.prompts import prompt_turns
from harness.task_data import load_split


def naive_generate(model, tokenizer, conversations, max_new_tokens: int) -> tuple[int, float]:
    """One prompt at a time, fp32, no early stop: the baseline."""
    tokens = 0
    started = time.perf_counter()
    for conversation in conversations:
        inputs = tokenizer.apply_chat_template(
            conversation, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        with torch.inference_mode():
            output = model.generate(
                **inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
            )
        tokens += output.shape[1] - inputs["input_ids"].shape[1]
    return tokens, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="legal")
    parser.add_argument("--model", default="embedded:smollm2-135m-instruct")
    parser.add_argument("--examples", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()

    task = load_task(args.task)
    conversations = [prompt_turns(task, e.text) for e in load_split(task, "validation")[: args.examples]]
    resolved = resolve_model(args.model)
    tokenizer = load_tokenizer(resolved)

    fp32_model = load_causal_lm(resolved, dtype=torch.float32).eval()
    naive_tokens, naive_seconds = naive_generate(fp32_model, tokenizer, conversations, args.max_new_tokens)
    del fp32_model

    model = load_causal_lm(resolved, dtype=training_dtype()).eval()
    result = generate_answers(
        model, tokenizer, conversations, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens
    )

    naive_rate = naive_tokens / naive_seconds
    print(f"model {args.model}, {args.examples} validation prompts, max_new_tokens {args.max_new_tokens}")
    print(f"bf16 supported natively here: {supports_bf16()} (harness computes in {training_dtype()})")
    print(f"naive fp32 per-example generate(): {naive_tokens} tokens in {naive_seconds:.1f} s = {naive_rate:.1f} tok/s")
    print(
        f"harness batched generation (batch {args.batch_size}): {result.new_tokens} tokens in {result.seconds:.1f} s"
        f" = {result.tokens_per_second:.1f} tok/s"
    )
    print(
        f"ratio: {result.tokens_per_second / naive_rate:.2f}x tokens/s;"
        f" wall time {naive_seconds / result.seconds:.2f}x faster"
    )


if __name__ == "__main__":
    main()
