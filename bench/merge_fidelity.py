"""How to merge a QLoRA adapter, side by side: into the dequantized weights it was trained against (what
registration does) and into the unquantized base weights (what it did before), each merged model saved in bf16 as
registration saves it, then scored on a stored eval set by the same greedy generation. The unquantized merge is
the same fold with the base loaded as an unquantized recipe trains on it.

    .venv/bin/python bench/merge_fidelity.py --run RUN_ID [--eval-set test-v1] [--out results/merge-fidelity.json]

RUN_ID is a finished training run of the task's MLflow store (a refit, a trial or a `harness train` run) whose
recipe quantized the base (int8 or nf4); `HARNESS_MLRUNS` points at the store as for every command. It prints
both merges' figures and the difference.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from harness import model_loading, registry, tracking
from harness.config import load_task
from harness.machine import describe as machine_description
from harness.trial import evaluate_model

SHOWN = ("f1_micro", "f1_claim_amount", "acc_initiator", "exact_match", "json_valid_rate")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="legal")
    parser.add_argument("--run", required=True, help="the MLflow run holding the adapter")
    parser.add_argument(
        "--eval-set",
        default="test-v1",
        help="a stored eval set: test-v1 (the legal task's frozen test split) by default",
    )
    parser.add_argument("--out", type=Path, default=None, help="also write every figure as JSON here")
    args = parser.parse_args()
    task = load_task(args.task)
    tracking.configure()
    params = tracking.run_params(args.run)
    quantization, max_new_tokens = params["quantization"], int(params["budget.max_new_tokens"])
    if quantization == "none":
        raise SystemExit(f"run {args.run} trained on an unquantized base: both merges are the same model")
    base_ref = model_loading.resolve_model(params["model"])
    tokenizer = model_loading.load_tokenizer(base_ref)

    figures = {}
    with tempfile.TemporaryDirectory(prefix="merge-fidelity-") as directory:
        work = Path(directory)
        adapter = tracking.download_run_artifacts(args.run, "adapter", work)
        merges = {
            "into the dequantized weights": registry.merge_into_base(
                base_ref, adapter, work / "dequantized", tokenizer, quantization=quantization
            ),
            "into the unquantized weights": registry.merge_into_base(
                base_ref, adapter, work / "unquantized", tokenizer, quantization="none"
            ),
        }
        for name, merged in merges.items():
            scores, _ = evaluate_model(task, str(merged), split=args.eval_set, max_new_tokens=max_new_tokens)
            figures[name] = dict(scores.metrics)
            print(f"{name}: " + ", ".join(f"{k} {scores.metrics[k]:.3f}" for k in SHOWN), flush=True)
    machine = machine_description()
    first, second = figures.values()
    print(f"run {args.run} ({quantization}), {args.eval_set}: f1_micro {first['f1_micro']:.3f} against"
          f" {second['f1_micro']:.3f} ({first['f1_micro'] - second['f1_micro']:+.3f});"
          f" {machine['cpu']}, {machine['cores']} cores, avx512_bf16 {machine['avx512_bf16']}")  # fmt: skip
    if args.out:
        record = {"machine": machine, "run": args.run, "quantization": quantization, "eval_set": args.eval_set,
                  "recipe": {k: v for k, v in params.items() if k.startswith(("lora.", "train.", "budget."))},
                  "merged": figures}  # fmt: skip
        args.out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
