"""LoRA / QLoRA fine-tuning with PEFT and TRL's SFTTrainer: the only module that imports either.

The trainer sees prompt-completion conversations, so the loss covers the answer (the JSON) only. Training code
knows nothing of Optuna or MLflow: it reports to a `TrainingReporter`, and whoever runs it decides what a report
means (log it, prune the trial).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import datasets
import torch
from datasets import Dataset
from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training
from transformers import PrinterCallback, TrainerCallback
from trl import SFTConfig, SFTTrainer

from harness.config import BudgetSpec, LoraSpec, Recipe
from harness.errors import HarnessError

datasets.disable_progress_bars()  # one line per example batch drowns the trial's own output

TARGET_MODULE_SETS = {
    "attn": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "mlp": ("gate_proj", "up_proj", "down_proj"),
    "all": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
}


class TrainingReporter(Protocol):
    """Receives training progress; may ask training to stop (a pruned trial)."""

    def on_log(self, step: int, metrics: dict[str, float]) -> None: ...

    def on_evaluate(self, step: int, validation_loss: float) -> None: ...

    def should_stop(self, step: int) -> bool: ...


class SilentReporter:
    """A reporter that records nothing and never stops training."""

    def on_log(self, step: int, metrics: dict[str, float]) -> None:
        pass

    def on_evaluate(self, step: int, validation_loss: float) -> None:
        pass

    def should_stop(self, step: int) -> bool:
        return False


@dataclass
class TrainingResult:
    steps: int
    seconds: float
    tokens: int  # prompt + answer tokens processed, padding excluded
    loss_history: list[tuple[int, float]] = field(default_factory=list)
    stopped_early: bool = False

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def linear_layer_names(model: Any) -> list[str]:
    """The distinct names of the model's linear layers (bitsandbytes' quantized layers included)."""
    names = {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}
    return sorted(names - {"lm_head"})


def attach_lora(model: Any, lora: LoraSpec, *, quantization: str, gradient_checkpointing: bool) -> PeftModel:
    """Wrap the base model with fresh LoRA adapters on the named target-module set."""
    targets = TARGET_MODULE_SETS[lora.target_modules]
    available = linear_layer_names(model)
    missing = [t for t in targets if t not in available]
    if missing:
        raise HarnessError(
            f"target-module set {lora.target_modules!r} names {', '.join(missing)}, which this model lacks;"
            f" its linear layers are: {', '.join(available)}"
        )
    if quantization != "none":
        # Casts norms to fp32 and enables input gradients, which k-bit LoRA training needs.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.resolved_alpha,
        lora_dropout=lora.dropout,
        target_modules=list(targets),
        use_rslora=lora.use_rslora,
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def trainable_parameters(model: Any) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def train_adapter(
    model: PeftModel,
    tokenizer: Any,
    conversations: list[dict[str, list[dict[str, str]]]],
    recipe: Recipe,
    budget: BudgetSpec,
    *,
    output_dir: Path,
    bf16: bool,
    reporter: TrainingReporter,
    validation_conversations: list[dict[str, list[dict[str, str]]]] | None = None,
    logging_steps: int = 2,
) -> TrainingResult:
    """Fine-tune the adapters on `{"prompt": [...], "completion": [...]}` conversations; loss on completions.

    With `validation_conversations`, the completion loss on them is computed every `budget.report_every_steps`
    steps and handed to `reporter.on_evaluate`: the intermediate value a search prunes on.
    """
    lengths = [_conversation_length(tokenizer, c) for c in conversations]
    too_long = [i for i, n in enumerate(lengths) if n > budget.max_seq_length]
    if too_long:
        raise HarnessError(
            f"{len(too_long)} training examples are longer than max_seq_length={budget.max_seq_length} tokens"
            f" (the longest has {max(lengths)}); raise the profile's max_seq_length rather than cut answers"
        )
    args = SFTConfig(
        output_dir=str(output_dir),
        per_device_train_batch_size=budget.batch_size,
        gradient_accumulation_steps=budget.gradient_accumulation,
        learning_rate=recipe.train.learning_rate,
        lr_scheduler_type=recipe.train.lr_scheduler,
        warmup_steps=recipe.train.warmup_ratio,  # a float below 1 is a ratio of the total steps
        weight_decay=recipe.train.weight_decay,
        num_train_epochs=budget.epochs or 1.0,
        max_steps=budget.max_steps or -1,
        max_length=budget.max_seq_length,
        completion_only_loss=True,
        gradient_checkpointing=budget.gradient_checkpointing,
        bf16=bf16,
        use_cpu=not torch.cuda.is_available(),
        logging_steps=logging_steps,
        save_strategy="no",
        report_to="none",
        seed=recipe.seed,
        data_seed=recipe.seed,
        dataloader_num_workers=0,
        disable_tqdm=True,
        eval_strategy="steps" if validation_conversations else "no",
        eval_steps=budget.report_every_steps,
        per_device_eval_batch_size=budget.batch_size,
    )
    callback = _ReporterCallback(reporter)
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(conversations),
        eval_dataset=Dataset.from_list(validation_conversations) if validation_conversations else None,
        processing_class=tokenizer,
        callbacks=[callback],
    )
    trainer.remove_callback(PrinterCallback)  # progress goes to the reporter, not to stdout as dicts
    started = time.perf_counter()
    state = trainer.train()
    seconds = time.perf_counter() - started
    steps = state.global_step
    examples_seen = min(steps * budget.batch_size * budget.gradient_accumulation, _planned_examples(budget, lengths))
    mean_length = sum(lengths) / len(lengths)
    return TrainingResult(
        steps=steps,
        seconds=seconds,
        tokens=int(examples_seen * mean_length),
        loss_history=callback.losses,
        stopped_early=callback.stopped,
    )


def _planned_examples(budget: BudgetSpec, lengths: list[int]) -> int:
    if budget.max_steps:
        return budget.max_steps * budget.batch_size * budget.gradient_accumulation
    return math.ceil(len(lengths) * (budget.epochs or 1.0))


def _conversation_length(tokenizer: Any, conversation: dict[str, list[dict[str, str]]]) -> int:
    ids = tokenizer.apply_chat_template(conversation["prompt"] + conversation["completion"], tokenize=True)
    return len(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)


class _ReporterCallback(TrainerCallback):
    """Forwards the trainer's logs to the reporter and stops training when the reporter says so."""

    def __init__(self, reporter: TrainingReporter) -> None:
        self.reporter = reporter
        self.losses: list[tuple[int, float]] = []
        self.stopped = False

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kwargs: Any) -> None:
        if not logs or "loss" not in logs:
            return
        self.losses.append((state.global_step, float(logs["loss"])))
        numbers = {k: float(v) for k, v in logs.items() if isinstance(v, int | float)}
        self.reporter.on_log(state.global_step, numbers)

    def on_evaluate(
        self, args: Any, state: Any, control: Any, metrics: dict[str, float] | None = None, **kwargs: Any
    ) -> None:
        if metrics and "eval_loss" in metrics:
            self.reporter.on_evaluate(state.global_step, float(metrics["eval_loss"]))
            if self.reporter.should_stop(state.global_step):
                self.stopped = True
                control.should_training_stop = True

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.reporter.should_stop(state.global_step):
            self.stopped = True
            control.should_training_stop = True


def save_adapter(model: PeftModel, directory: Path) -> Path:
    """Write the LoRA adapter as safetensors (adapter_model.safetensors + adapter_config.json)."""
    model.save_pretrained(directory, safe_serialization=True)
    return directory


def load_adapter(model: Any, directory: Path) -> PeftModel:
    """Apply a saved LoRA adapter (safetensors) to a base model, for evaluation."""
    if not (directory / "adapter_config.json").exists():
        raise HarnessError(f"{directory} is not a LoRA adapter: it has no adapter_config.json")
    return PeftModel.from_pretrained(model, directory, is_trainable=False)


def merge_adapter(model: Any, directory: Path) -> Any:
    """Fold a LoRA adapter into an unquantized base model's weights (`merge_and_unload`): a plain model again."""
    return load_adapter(model, directory).merge_and_unload()
