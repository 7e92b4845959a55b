"""One trial, read top to bottom: load -> adapt -> train -> generate -> score -> log.

`run_trial` is what `harness train` runs once and the search runs many times. `evaluate_model` scores any model,
with or without an adapter (the zero-shot baseline is one).
"""

from __future__ import annotations

import importlib.metadata
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from evaluators.scoring import Scores
from harness import machine, model_loading, tracking, training
from harness.config import DEFAULT_MAX_NEW_TOKENS, TaskConfig, TrialConfig, flat_params
from harness.errors import TrialStopped
from harness.generation import AnswerReporter, GenerationResult, generate_answers
from harness.memory import (
    MemoryEstimate,
    PeakMemory,
    check_memory_limit,
    estimate_peak_memory,
    folds_for_generation,
    generation_memory,
    keep_the_heap_compact,
    read_model_shape,
    release_freed_memory,
)
from harness.predictions import score_answers
from harness.prompts import assistant_turn, prompt_turns
from harness.task_data import Example, load_split

GENERATION_BATCH_SIZE = 16  # SmolLM2 on 2 cores, 32 answers: batch 8 39 s, 16 33 s
# Prompt and answer tokens an evaluation outside a trial plans its generation memory for (a trial: its budget's
# max_seq_length); a bound on the tasks' documents, and a small term beside the weights it decides on.
EVALUATION_SEQUENCE_TOKENS = 2048
PACKAGES = ("harness", "torch", "transformers", "trl", "peft", "bitsandbytes", "accelerate", "mlflow", "optuna")


@dataclass
class TrialResult:
    metrics: dict[str, float]
    run_id: str | None
    adapter_dir: Path


def train_output_dir() -> Path:
    """Where `harness train` keeps its adapter: beside the store, where `harness eval --adapter` finds it (not in
    /tmp, which nobody cleans), one directory per run."""
    return tracking.mlruns_dir() / "train" / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"


def run_trial(
    task: TaskConfig,
    config: TrialConfig,
    *,
    output_dir: Path,
    reporter: training.TrainingReporter | None = None,
    evaluate_at_steps: tuple[int, ...] = (),
    max_memory_mb: float | None = None,
    parent_run_id: str | None = None,
    run_name: str | None = None,
    tags: dict[str, str] | None = None,
    on_run_started: Callable[[str], Any] | None = None,
) -> TrialResult:
    """Fine-tune one configuration and score it on the validation slice, tracked as one MLflow run. The adapter
    is written under `output_dir` (the caller's: a search's trials use a temporary one) and logged on the run.

    `evaluate_at_steps`: the steps after which the completion loss of a fixed validation slice goes to the
    reporter (a search's rungs, where it may prune)."""
    keep_the_heap_compact()
    release_freed_memory()  # what earlier work in this process left (a search runs many trials in one)
    model_ref = model_loading.resolve_model(config.model)
    bf16 = model_loading.supports_bf16()
    estimate = _estimate_memory(config, model_ref.path, bf16=bf16)
    check_memory_limit(estimate, max_memory_mb)
    train_examples = load_split(task, "train")[: config.budget.train_examples]
    validation_split = load_split(task, "validation")
    validation_examples = validation_split[: config.budget.validation_examples]
    # The pruning slice: a few fixed examples from the end of the split, only when someone listens for them.
    report_examples = validation_split[-config.budget.report_examples :] if evaluate_at_steps else []
    adapter_dir = output_dir

    with tracking.trial_run(
        task.task.name,
        run_name=run_name or f"{config.profile}-{config.recipe.quantization}-r{config.recipe.lora.r}",
        tags={"harness.kind": "trial", "harness.profile": config.profile, **(tags or {})},
        parent_run_id=parent_run_id,
    ) as run:
        if on_run_started:
            on_run_started(run.run_id)
        run.params(flat_params(config))
        run.text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), "config/resolved.yaml")
        run.text(task.file.read_text(encoding="utf-8"), f"config/{task.file.name}")
        run.text(yaml.safe_dump(_package_versions(), sort_keys=True), "environment/packages.yaml")
        run.dataset(_rows(train_examples), name=f"{task.task.name}-train", context="training")
        run.dataset(_rows(validation_examples), name=f"{task.task.name}-validation", context="validation")
        run.metrics({"estimated_peak_memory_mb": estimate.total_mb})

        with PeakMemory() as peak:
            # load
            tokenizer = model_loading.load_tokenizer(model_ref)
            base = model_loading.load_for_training(model_ref, quantization=config.recipe.quantization)
            release_freed_memory()  # loading's full-precision copies (quantizing frees them into the heap)
            # adapt
            model = training.attach_lora(
                base,
                config.recipe.lora,
                quantization=config.recipe.quantization,
                gradient_checkpointing=config.budget.gradient_checkpointing,
                seed=config.recipe.seed,
            )
            trainable_params = training.trainable_parameters(model)
            gpus = model_loading.gpus_holding(base)  # the GPUs this process sees (a trial's: its profile's count)
            # train
            trained = training.train_adapter(
                model,
                tokenizer,
                _conversations(task, train_examples),
                config.recipe,
                config.budget,
                output_dir=adapter_dir / "trainer",
                bf16=bf16,
                reporter=_LoggingReporter(run, reporter or training.SilentReporter()),
                validation_conversations=_conversations(task, report_examples) or None,
                evaluate_at_steps=evaluate_at_steps,
            )
            # What the estimate is of: on a GPU the fold that follows can peak higher than training did.
            train_peak_mb = peak.so_far_mb()
            if trained.stopped_early:
                raise TrialStopped(f"stopped at step {trained.steps} on request")
            # save, then generate on the adapter folded into plain 16-bit weights (the fast way to generate)
            training.save_adapter(model, adapter_dir / "adapter")
            release_freed_memory()  # training's activations, before generation allocates its own
            fold = _folds_for_generation(model_ref.path, config.recipe.quantization, config.budget.max_seq_length)
            inference_model = training.model_for_generation(model, dtype=model_loading.training_dtype(), fold=fold)
            generated = _generate(inference_model, tokenizer, task, validation_examples, config.budget.max_new_tokens)
        # score
        scores = score_answers(task, validation_examples, generated.outputs)
        # log
        metrics = {
            **scores.metrics,
            "train_seconds": trained.seconds,
            "eval_seconds": generated.seconds,
            "train_tokens_per_second": trained.tokens_per_second,
            # The last loss training logged, in the printed result too: what says a trial learned (not NaN, say).
            "final_train_loss": trained.loss_history[-1][1] if trained.loss_history else float("nan"),
            "eval_tokens_per_second": generated.tokens_per_second,
            "peak_memory_mb": peak.peak_mb,
            "train_peak_memory_mb": train_peak_mb,  # loading and training, without the fold and generation
            "estimated_peak_memory_mb": estimate.total_mb,  # beside the measures: `harness train` prints them
            "trainable_params": trainable_params,
            "train_steps": trained.steps,
            "gpus": gpus,
        }
        # The adapter and the answers first: a run never shows figures for an adapter it could not store.
        run.directory(adapter_dir / "adapter", "adapter")
        run.table(_prediction_rows(validation_examples, generated, scores), "predictions.json")
        run.metrics(metrics)
        generation = "folded" if fold else f"through the adapter on the {config.recipe.quantization} base"
        run.tags({"harness.estimated_memory": estimate.describe(), "harness.generation": generation})
        return TrialResult(metrics=metrics, run_id=run.run_id, adapter_dir=adapter_dir / "adapter")


def evaluate_model(
    task: TaskConfig,
    model_spec: str,
    *,
    adapter: Path | None = None,
    quantization: str = "none",
    split: str = "validation",
    limit: int | None = None,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    reporter: AnswerReporter | None = None,
) -> tuple[Scores, GenerationResult]:
    """Score any model (zero-shot, or with a LoRA adapter on the base as it was trained: `quantization`) on a split
    by batched greedy generation; a `reporter` hears the answers as they come."""
    examples = load_split(task, split)[:limit]
    model_ref = model_loading.resolve_model(model_spec)
    tokenizer = model_loading.load_tokenizer(model_ref)
    if adapter is None:
        model = model_loading.load_causal_lm(model_ref, dtype=model_loading.training_dtype())
    else:
        base = model_loading.load_for_training(model_ref, quantization=quantization)
        model = training.model_for_generation(
            training.load_adapter(base, adapter),
            dtype=model_loading.training_dtype(),
            fold=_folds_for_generation(model_ref.path, quantization, EVALUATION_SEQUENCE_TOKENS),
        )
    generated = _generate(model, tokenizer, task, examples, max_new_tokens, reporter=reporter)
    scores = score_answers(task, examples, generated.outputs)
    return scores, generated


def _conversations(task: TaskConfig, examples: list[Example]) -> list[dict[str, list[dict[str, str]]]]:
    return [{"prompt": prompt_turns(task, e.text), "completion": assistant_turn(e.fields)} for e in examples]


def _generate(
    model: Any,
    tokenizer: Any,
    task: TaskConfig,
    examples: list[Example],
    max_new_tokens: int,
    *,
    reporter: AnswerReporter | None = None,
) -> Any:
    return generate_answers(
        model,
        tokenizer,
        [prompt_turns(task, e.text) for e in examples],
        batch_size=GENERATION_BATCH_SIZE,
        max_new_tokens=max_new_tokens,
        reporter=reporter,
    )


def _folds_for_generation(model_dir: Path, quantization: str, sequence_length: int) -> bool:
    """Fold the adapter into 16-bit weights to generate, unless the base was quantized and its 16-bit weights
    would not fit the GPUs this process splits the model over (a base in 16 bits folds in the memory it has)."""
    weight_bytes = 2 if model_loading.supports_bf16() else 4
    return quantization == "none" or generates_here(model_dir, sequence_length, weight_bytes=weight_bytes)[0]


def generates_here(model_dir: Path, sequence_length: int, *, weight_bytes: float) -> tuple[bool, MemoryEstimate]:
    """Whether the model in `model_dir`, with plain `weight_bytes` weights split over every GPU this process sees,
    generates within them (batches of GENERATION_BATCH_SIZE, `sequence_length` tokens each), and what it needs per
    GPU (`memory.generation_memory`); always True on a CPU machine."""
    needed = generation_memory(
        read_model_shape(model_dir),
        weight_bytes=weight_bytes,
        batch_size=GENERATION_BATCH_SIZE,
        sequence_length=sequence_length,
        gpus=max(machine.gpu_count(), 1),
    )
    return folds_for_generation(needed, machine.smallest_gpu_memory_mb()), needed


def _estimate_memory(config: TrialConfig, model_dir: Path, *, bf16: bool) -> MemoryEstimate:
    return estimate_peak_memory(
        read_model_shape(model_dir),
        quantization=config.recipe.quantization,
        bf16=bf16,
        lora_rank=config.recipe.lora.r,
        target_modules=config.recipe.lora.target_modules,
        lora_dropout=config.recipe.lora.dropout,
        batch_size=config.budget.micro_batch_size or config.budget.batch_size,
        sequence_length=config.budget.max_seq_length,
        gradient_checkpointing=config.budget.gradient_checkpointing,
        on_gpu=machine.has_cuda(),
    )


class _LoggingReporter:
    """Logs training loss to the trial's run, then passes progress on (to the search's pruner, say)."""

    def __init__(self, run: tracking.RunLog, downstream: training.TrainingReporter) -> None:
        self.run = run
        self.downstream = downstream

    def on_train_begin(self, total_steps: int) -> None:
        self.downstream.on_train_begin(total_steps)

    def on_log(self, step: int, metrics: dict[str, float]) -> None:
        self.run.metrics({f"train_{k}" if k != "loss" else "train_loss": v for k, v in metrics.items()}, step=step)
        self.downstream.on_log(step, metrics)

    def on_evaluate(self, step: int, validation_loss: float) -> None:
        self.run.metrics({"validation_loss": validation_loss}, step=step)
        self.downstream.on_evaluate(step, validation_loss)

    def should_stop(self, step: int) -> bool:
        return self.downstream.should_stop(step)

    def on_train_end(self) -> None:
        self.downstream.on_train_end()


def _rows(examples: list[Example]) -> list[dict[str, Any]]:
    return [{"id": e.id, "text": e.text, "fields": assistant_turn(e.fields)[0]["content"]} for e in examples]


def _prediction_rows(examples: list[Example], generated: GenerationResult, scores: Scores) -> list[dict[str, Any]]:
    rows = []
    for example, output, record in zip(examples, generated.outputs, scores.records, strict=True):
        rows.append(
            {
                "id": example.id,
                "input": example.text[:200],
                "gold": assistant_turn(example.fields)[0]["content"],
                "output": output,
                **{f"correct_{name}": correct for name, correct in record.correct.items()},
            }
        )
    return rows


def _package_versions() -> dict[str, str]:
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions
