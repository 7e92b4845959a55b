"""A merged model's weights in 4 bits for vLLM (W4A16: int4 weights in groups, 16-bit activations), calibrated by
llm-compressor's GPTQ or AWQ on the task's own training conversations, written as a compressed-tensors checkpoint
(safetensors) that vLLM loads as it is.

This file runs in llm-compressor's own virtual environment (`.venv-llm-compressor`: it pins a transformers release
the harness has moved past), started by `harness.export` with the model, the calibration texts and the scheme on
its command line; it imports llm-compressor and nothing of the harness. Its last line on stdout is one JSON object
of what it did.

    python quantize_w4a16.py MODEL_DIR OUT_DIR --method gptq|awq --calibration TEXTS.jsonl --group-size 64
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from datasets import Dataset
from llmcompressor import oneshot
from llmcompressor.modifiers.awq import AWQModifier
from llmcompressor.modifiers.quantization import GPTQModifier
from llmcompressor.pipelines.cache import IntermediatesCache
from transformers import AutoModelForCausalLM, AutoTokenizer


def scheme(method: str, group_size: int) -> dict[str, object]:
    """int4 weights in groups along each input row; GPTQ's symmetric (its W4A16 preset), AWQ's with a zero point
    per group (its W4A16_ASYM preset: AWQ's scales are searched for an asymmetric grid). The presets' groups are
    128 wide; the group is given here because a row must hold whole groups (SmolLM2's 576: groups of 64)."""
    weights = {"num_bits": 4, "type": "int", "symmetric": method == "gptq", "strategy": "group",
               "group_size": group_size}  # fmt: skip
    return {"group_0": {"targets": ["Linear"], "weights": weights}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--method", choices=("gptq", "awq"), required=True)
    parser.add_argument("--calibration", type=Path, required=True, help="JSON lines of {'text': ...}")
    parser.add_argument("--group-size", type=int, required=True)
    parser.add_argument("--max-seq-length", type=int, default=2048)
    args = parser.parse_args()

    if not torch.cuda.is_available():
        # AWQ pins its cached activations in host memory to copy them to the GPU faster; with no GPU, pinning
        # raises ("Cannot access accelerator device"). The copies it speeds up do not happen on a CPU, so not
        # pinning changes nothing of the result.
        IntermediatesCache.pin_memory = lambda self, *_, **__: None
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=torch.bfloat16, device_map=device)
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    texts = [json.loads(line)["text"] for line in args.calibration.read_text(encoding="utf-8").splitlines() if line]
    # The texts are already rendered through the chat template, special tokens and all.
    calibration = Dataset.from_dict({"text": texts}).map(
        lambda row: tokenizer(row["text"], add_special_tokens=False), remove_columns=["text"]
    )
    modifier = AWQModifier if args.method == "awq" else GPTQModifier
    recipe = [modifier(ignore=["lm_head"], config_groups=scheme(args.method, args.group_size))]
    started = time.perf_counter()
    oneshot(
        model=model,
        dataset=calibration,
        recipe=recipe,
        max_seq_length=args.max_seq_length,
        num_calibration_samples=len(texts),
    )
    seconds = time.perf_counter() - started
    model.save_pretrained(args.out_dir, save_compressed=True)
    tokenizer.save_pretrained(args.out_dir)
    import llmcompressor

    print(json.dumps({"seconds": round(seconds, 1), "device": device, "calibration_texts": len(texts),
                      "llmcompressor": llmcompressor.__version__}))  # fmt: skip


if __name__ == "__main__":
    main()
