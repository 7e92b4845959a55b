"""Training speed: harness's trainer against a bare PyTorch LoRA loop, on the same model, dtype and batches.

    .venv/bin/python bench/training_speed.py [--model embedded:smollm2-135m-instruct] [--steps 8] [--set key=value]

Both sides train fresh LoRA adapters of the same recipe (the task's seed recipe with `--set` overrides, on the cpu
profile's budget) on the same batches: the bare loop takes them from harness's own trainer's dataloader, so
grouping, micro-batching and padding are identical. The bare loop is what a careful first script does: forward
through the backbone, project the answer positions through the LM head, cross-entropy, backward, AdamW step. The
first optimizer step of each side is a warm-up and not timed. The bare loop runs twice: with transformers' default
attention, and with the attention kernel harness trains with on a CPU. Prints tokens per second (padding
excluded) and peak RSS of each side, and the ratios.
"""

from __future__ import annotations

import argparse
import gc
import platform
import tempfile
import time
from pathlib import Path

import psutil
import torch

from harness import model_loading, training
from harness.config import load_task, parse_set_options, resolve_trial_config
from harness.memory import PeakMemory, release_freed_memory
from harness.prompts import assistant_turn, prompt_turns
from harness.task_data import load_split


def bare_loop(model, batches, *, learning_rate: float, accumulation: int, bf16: bool) -> tuple[int, float]:
    """Forward, answer-only loss, backward, AdamW: the reference. Returns (tokens timed, seconds timed)."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=learning_rate)
    causal_lm = model.get_base_model()
    model.train()
    tokens, started = 0, None
    for index, batch in enumerate(batches):
        if index == accumulation:  # the first optimizer step is a warm-up
            tokens, started = 0, time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16 and not torch.cuda.is_available()):
            hidden = causal_lm.model(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False
            )
            labels = batch["labels"][:, 1:]
            answer = labels != -100
            logits = causal_lm.lm_head(hidden.last_hidden_state[:, :-1][answer]).float()
            loss = torch.nn.functional.cross_entropy(logits, labels[answer]) / accumulation
        loss.backward()
        if (index + 1) % accumulation == 0:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        tokens += int(batch["attention_mask"].sum())
    assert started is not None, "give at least two optimizer steps"
    return tokens, time.perf_counter() - started


def fresh_model(model_ref, config):
    base = model_loading.load_for_training(model_ref, quantization=config.recipe.quantization)
    return training.attach_lora(base, config.recipe.lora, quantization=config.recipe.quantization,
                                gradient_checkpointing=config.budget.gradient_checkpointing,
                                seed=config.recipe.seed)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="legal")
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--model", default=None)
    parser.add_argument("--steps", type=int, default=8, help="optimizer steps per side, the first one untimed")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()

    task = load_task(args.task)
    overrides = {**parse_set_options(args.overrides), "budget.max_steps": args.steps}
    config = resolve_trial_config(task, profile=args.profile, model=args.model, overrides=overrides)
    budget = config.budget
    model_ref = model_loading.resolve_model(config.model)
    tokenizer = model_loading.load_tokenizer(model_ref)
    bf16 = model_loading.supports_bf16()
    examples = load_split(task, "train")[: budget.train_examples]
    conversations = [{"prompt": prompt_turns(task, e.text), "completion": assistant_turn(e.fields)} for e in examples]
    micro_batch_size = budget.micro_batch_size or budget.batch_size
    accumulation = budget.batch_size // micro_batch_size

    # harness: the trial's own trainer.
    output = Path(tempfile.mkdtemp(prefix="bench-training-"))
    model = fresh_model(model_ref, config)
    clock = _FirstStepClock()
    trainer = training.build_trainer(model, tokenizer, conversations, config.recipe, budget, output_dir=output,
                                     bf16=bf16, callbacks=[clock])  # fmt: skip
    clock.trainer = trainer
    # The batches the trainer is about to train on: its length-grouped sampler draws from torch's global generator,
    # so drawing them here and then restoring the generator gives the trainer the very same ones.
    generator_state = torch.random.get_rng_state()
    batches = [
        batch for _, batch in zip(range(args.steps * accumulation), trainer.get_train_dataloader(), strict=False)
    ]
    torch.random.set_rng_state(generator_state)
    with PeakMemory() as harness_peak:
        trainer.train()
    harness_seconds = time.perf_counter() - clock.first_step_end
    harness_tokens = trainer.trained_tokens - clock.tokens_after_first_step
    del trainer, model
    gc.collect()
    release_freed_memory()  # so that each side's peak RSS is its own

    # bare loops: the same batches, a fresh adapter of the same recipe; with transformers' default attention, and
    # with the attention harness trains with on a CPU.
    bare = {}
    for label, attention in (("default attention", None), ("harness's attention", training.CPU_TRAINING_ATTENTION)):
        model = fresh_model(model_ref, config)
        if attention and not torch.cuda.is_available():
            model.set_attn_implementation(attention)
        with PeakMemory() as peak:
            tokens, seconds = bare_loop(
                model, batches, learning_rate=config.recipe.train.learning_rate, accumulation=accumulation, bf16=bf16
            )
        bare[label] = (tokens, seconds, peak.peak_mb)
        del model
        gc.collect()
        release_freed_memory()

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())  # fmt: skip
    harness_rate = harness_tokens / harness_seconds
    avx512_bf16 = torch.cpu._is_avx512_bf16_supported()
    print(f"model {config.model}; {cpu}; {psutil.cpu_count()} cores; avx512_bf16 {avx512_bf16}")
    print(
        f"recipe: quantization {config.recipe.quantization}, targets {config.recipe.lora.target_modules},"
        f" r {config.recipe.lora.r}, dropout {config.recipe.lora.dropout}; batch {budget.batch_size}"
        f" in micro-batches of {micro_batch_size}; {args.steps - 1} timed optimizer steps; dtype"
        f" {model_loading.training_dtype()}"
    )
    print(
        f"harness trainer: {harness_tokens} tokens in {harness_seconds:.1f} s = {harness_rate:.0f} tokens/s,"
        f" peak RSS {harness_peak.peak_mb / 1024:.2f} GB"
    )
    for label, (tokens, seconds, peak_mb) in bare.items():
        rate = tokens / seconds
        print(
            f"bare PyTorch loop, {label}: {tokens} tokens in {seconds:.1f} s = {rate:.0f} tokens/s, peak RSS"
            f" {peak_mb / 1024:.2f} GB; harness / bare {harness_rate / rate:.2f}x"
        )
        if tokens != harness_tokens:
            print(f"warning: the sides timed different tokens ({harness_tokens} vs {tokens})")


class _FirstStepClock(training.TrainerCallback):
    """Notes when the first (warm-up) optimizer step ends and how many tokens the trainer had trained on by then."""

    def __init__(self) -> None:
        self.trainer = None
        self.first_step_end = 0.0
        self.tokens_after_first_step = 0

    def on_step_end(self, args, state, control, **kwargs) -> None:
        if state.global_step == 1:
            self.first_step_end = time.perf_counter()
            self.tokens_after_first_step = self.trainer.trained_tokens


if __name__ == "__main__":
    main()
