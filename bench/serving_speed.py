"""Serving speed: vLLM's OpenAI server at concurrency 16 against naive per-example fp32 `generate()`, one run.

    .venv/bin/python bench/serving_speed.py [--model embedded:smollm2-135m-instruct] [--examples 16]

Both sides answer the same stored-test prompts greedily with the same model, at most `--max-new-tokens` each.
The naive side is what a first script does: one prompt at a time, fp32 `transformers` `generate()`. The served
side is `harness serve`'s server (vLLM from `.venv-vllm`, PagedAttention and continuous batching, bf16 where the
hardware runs it, fp32 otherwise) sent 16 requests at a time with the OpenAI client. Prints tokens per second for
each and the ratio; then the served answers' json_valid_rate without and with the task's JSON Schema
(`response_format`, what `harness serve --json-schema` turns on).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from generation_speed import naive_generate
from openai import OpenAI

from evaluators.scoring import score_outputs
from harness import serving
from harness.config import load_task
from harness.model_loading import load_causal_lm, load_tokenizer, resolve_model, supports_bf16
from harness.prompts import output_schema, prompt_turns
from harness.task_data import load_split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="legal")
    parser.add_argument("--model", default="embedded:smollm2-135m-instruct")
    parser.add_argument("--examples", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--port", type=int, default=8799)
    args = parser.parse_args()

    task = load_task(args.task)
    examples = load_split(task, "test")[: args.examples]
    resolved = resolve_model(args.model)
    tokenizer = load_tokenizer(resolved)

    fp32_model = load_causal_lm(resolved, dtype=torch.float32).eval()
    conversations = [prompt_turns(task, e.text) for e in examples]
    naive_tokens, naive_seconds = naive_generate(fp32_model, tokenizer, conversations, args.max_new_tokens)
    del fp32_model
    naive_rate = naive_tokens / naive_seconds

    dtype = "bfloat16" if supports_bf16() else "float32"
    options = serving.ServerOptions(port=args.port, dtype=dtype, max_model_len=2048)
    log_path = Path(tempfile.mkdtemp(prefix="harness-bench-")) / "vllm.log"
    server = serving.start_server(resolved.path, "bench", options, log_path=log_path)
    try:
        openai = OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=600)
        served = serving.ask(openai, "bench", task, examples, max_tokens=args.max_new_tokens, concurrency=16)
        constrained = serving.ask(
            openai,
            "bench",
            task,
            examples,
            max_tokens=args.max_new_tokens,
            concurrency=16,
            json_schema=output_schema(task),
        )
    finally:
        serving.stop_server(server)

    def json_valid(outputs: list[str]) -> float:
        scores = score_outputs(
            task.fields, [e.fields for e in examples], outputs, [e.id for e in examples], vocabulary=task.vocabulary
        )
        return scores.metrics["json_valid_rate"]

    print(f"model {args.model}, {len(examples)} stored test prompts, max_new_tokens {args.max_new_tokens}")
    print(f"naive fp32 per-example generate(): {naive_tokens} tokens in {naive_seconds:.1f} s = {naive_rate:.1f} tok/s")
    print(
        f"vLLM server ({dtype}), concurrency 16: {served.completion_tokens} tokens in {served.seconds:.1f} s"
        f" = {served.tokens_per_second:.1f} tok/s (latency p50 {served.latency(0.5):.2f} s)"
    )
    print(f"ratio: {served.tokens_per_second / naive_rate:.1f}x tokens/s")
    print(
        f"json_valid_rate served without the schema {json_valid(served.outputs):.3f},"
        f" with it {json_valid(constrained.outputs):.3f}"
        f" ({constrained.tokens_per_second:.1f} tok/s under the schema)"
    )


if __name__ == "__main__":
    main()
