"""LoRA / QLoRA fine-tuning with PEFT and TRL's SFTTrainer: the only module that imports either.

The trainer sees prompt-completion conversations, so the loss covers the answer (the JSON) only. Training code
knows nothing of Optuna or MLflow: it reports to a `TrainingReporter`, and whoever runs it decides what a report
means (log it, prune the trial).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import datasets
import torch
from datasets import Dataset
from peft import LoraConfig, PeftModel, get_peft_model
from peft.helpers import disable_input_dtype_casting
from peft.tuners.lora import LoraLayer
from peft.utils.integrations import dequantize_module_weight, get_bnb_param_type
from transformers import AttentionInterface, PrinterCallback, TrainerCallback
from transformers.masking_utils import AttentionMaskInterface, eager_mask
from trl import SFTConfig, SFTTrainer

from harness.config import BudgetSpec, LoraSpec, Recipe
from harness.errors import HarnessError

datasets.disable_progress_bars()  # one line per example batch drowns the trial's own output
# PEFT's k-bit preparation still asks transformers for the old name of activation checkpointing; the renaming
# warning is addressed to PEFT, not to a user.
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)

TARGET_MODULE_SETS = {
    "attn": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "mlp": ("gate_proj", "up_proj", "down_proj"),
    "all": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
}


class TrainingReporter(Protocol):
    """Receives training progress; may ask training to stop (a pruned trial)."""

    def on_train_begin(self, total_steps: int) -> None: ...

    def on_log(self, step: int, metrics: dict[str, float]) -> None: ...

    def on_evaluate(self, step: int, validation_loss: float) -> None: ...

    def should_stop(self, step: int) -> bool: ...

    def on_train_end(self) -> None: ...


class SilentReporter:
    """A reporter that records nothing and never stops training."""

    def on_train_begin(self, total_steps: int) -> None:
        pass

    def on_log(self, step: int, metrics: dict[str, float]) -> None:
        pass

    def on_evaluate(self, step: int, validation_loss: float) -> None:
        pass

    def should_stop(self, step: int) -> bool:
        return False

    def on_train_end(self) -> None:
        pass


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


def attach_lora(model: Any, lora: LoraSpec, *, quantization: str, gradient_checkpointing: bool, seed: int) -> PeftModel:
    """Wrap the base model with fresh LoRA adapters on the named target-module set, drawn from `seed`."""
    targets = TARGET_MODULE_SETS[lora.target_modules]
    available = linear_layer_names(model)
    missing = [t for t in targets if t not in available]
    if missing:
        raise HarnessError(
            f"target-module set {lora.target_modules!r} names {', '.join(missing)}, which this model lacks;"
            f" its linear layers are: {', '.join(available)}"
        )
    if quantization != "none" and gradient_checkpointing:
        # Checkpointed layers recompute from their inputs, which need gradients when every base weight is frozen.
        # (PEFT's prepare_model_for_kbit_training would also upcast the norms and embeddings to fp32: then every
        # activation between the 4-bit matmuls is fp32, twice the memory and half the speed of the bf16 compute
        # the quantized layers already run in.)
        model.enable_input_require_grads()
    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.resolved_alpha,
        lora_dropout=lora.dropout,
        target_modules=list(targets),
        use_rslora=lora.use_rslora,
        bias="none",
        task_type="CAUSAL_LM",
    )
    # The adapters' initial weights come from the recipe's seed, not from whatever the process drew before: a
    # trial's result must not depend on what ran earlier in the same process (a search's earlier trials, a test
    # session). The caller's random state is left as it was.
    with torch.random.fork_rng(devices=list(range(torch.cuda.device_count()))):
        torch.manual_seed(seed)
        return get_peft_model(model, config)


class _CausalBlockAttention(torch.autograd.Function):
    """Causal softmax attention in query blocks, keeping only 16-bit probabilities for the backward pass.

    Queries are cut into `QUERY_BLOCKS` blocks, and each block is scored against the keys up to its own end only:
    the keys after it are masked anyway (causal), so a quarter to three eighths of the score matrix is never
    computed. transformers' eager attention computes all of it and keeps the softmax output twice (fp32 for the
    softmax's backward, 16-bit for the value product's: 6 bytes per head and position pair); the softmax backward
    here works from the 16-bit copy (2 bytes). PyTorch's fused attention keeps less still, but its CPU backward is
    slower than either (bench/training_speed.py)."""

    @staticmethod
    def forward(
        ctx: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: Any, scaling: float
    ) -> Any:
        length = query.shape[-2]
        ends = sorted({max(1, round(length * (i + 1) / QUERY_BLOCKS)) for i in range(QUERY_BLOCKS)})
        outputs, probabilities = [], []
        for start, end in zip([0, *ends[:-1]], ends, strict=True):
            scores = torch.matmul(query[..., start:end, :], key[..., :end, :].transpose(-1, -2)) * scaling
            if mask is not None:
                scores = scores + mask[..., start:end, :end]
            block = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
            probabilities.append(block)
            outputs.append(torch.matmul(block, value[..., :end, :]))
        ctx.save_for_backward(query, key, value, *probabilities)
        ctx.scaling, ctx.ends = scaling, ends
        return torch.cat(outputs, dim=-2)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> Any:
        query, key, value, *probabilities = ctx.saved_tensors
        grad_output = grad_output.to(query.dtype)  # autograd may hand an fp32 gradient back under mixed precision
        grad_query = torch.empty_like(query)
        grad_key = torch.zeros_like(key, dtype=torch.float32)  # summed over blocks: accumulate in fp32
        grad_value = torch.zeros_like(value, dtype=torch.float32)
        for start, end, block in zip([0, *ctx.ends[:-1]], ctx.ends, probabilities, strict=True):
            grad_block = grad_output[..., start:end, :]
            grad_value[..., :end, :] += torch.matmul(block.transpose(-1, -2), grad_block)
            grad_probabilities = torch.matmul(grad_block, value[..., :end, :].transpose(-1, -2))
            grad_scores = torch._softmax_backward_data(grad_probabilities.float(), block.float(), -1, torch.float32).to(
                query.dtype
            )  # the fused softmax backward eager attention uses, in fp32
            grad_query[..., start:end, :] = torch.matmul(grad_scores, key[..., :end, :]) * ctx.scaling
            grad_key[..., :end, :] += (
                torch.matmul(grad_scores.transpose(-1, -2), query[..., start:end, :]) * ctx.scaling
            )
        return grad_query, grad_key.to(key.dtype), grad_value.to(value.dtype), None, None


QUERY_BLOCKS = 4  # measured on SmolLM2's shape (2 x 480 tokens): attention forward + backward 28 ms eager, 16 ms here


def _training_attention(
    module: Any, query: Any, key: Any, value: Any, attention_mask: Any, scaling: float, dropout: float = 0.0, **_: Any
) -> tuple[Any, None]:
    """transformers' attention-function signature around `_CausalBlockAttention` (grouped key/value heads
    repeated)."""
    groups = query.shape[1] // key.shape[1]
    if groups > 1:
        key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    output = _CausalBlockAttention.apply(query, key, value, attention_mask, scaling)
    return output.transpose(1, 2).contiguous(), None


CPU_TRAINING_ATTENTION = "harness_cpu_training"
CPU_PAD_MULTIPLE: int | None = 64  # None: micro-batches padded to their longest sequence only
AttentionInterface.register(CPU_TRAINING_ATTENTION, _training_attention)
AttentionMaskInterface.register(CPU_TRAINING_ATTENTION, eager_mask)  # an additive mask, as eager attention takes


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
    evaluate_at_steps: tuple[int, ...] = (),
    logging_steps: int = 2,
) -> TrainingResult:
    """Fine-tune the adapters on `{"prompt": [...], "completion": [...]}` conversations; loss on completions.

    With `validation_conversations`, the completion loss on them is computed after each step in
    `evaluate_at_steps` and handed to `reporter.on_evaluate`: the values a search prunes on.
    """
    callback = _ReporterCallback(reporter, evaluate_at_steps if validation_conversations else ())
    trainer = build_trainer(
        model,
        tokenizer,
        conversations,
        recipe,
        budget,
        output_dir=output_dir,
        bf16=bf16,
        callbacks=[callback],
        validation_conversations=validation_conversations,
        logging_steps=logging_steps,
    )
    started = time.perf_counter()
    state = trainer.train()
    seconds = time.perf_counter() - started
    return TrainingResult(
        steps=state.global_step,
        seconds=seconds,
        tokens=trainer.trained_tokens,
        loss_history=callback.losses,
        stopped_early=callback.stopped,
    )


def build_trainer(
    model: PeftModel,
    tokenizer: Any,
    conversations: list[dict[str, list[dict[str, str]]]],
    recipe: Recipe,
    budget: BudgetSpec,
    *,
    output_dir: Path,
    bf16: bool,
    callbacks: list[TrainerCallback] | None = None,
    validation_conversations: list[dict[str, list[dict[str, str]]]] | None = None,
    logging_steps: int = 2,
) -> AnswerLossTrainer:
    """TRL's SFTTrainer set up for a trial: batches grouped by length, micro-batches accumulated to `batch_size`,
    the loss on answer tokens only. `bench/training_speed.py` drives the same trainer's batches by hand."""
    lengths = [_conversation_length(tokenizer, c) for c in conversations]
    too_long = [i for i, n in enumerate(lengths) if n > budget.max_seq_length]
    if too_long:
        raise HarnessError(
            f"{len(too_long)} training examples are longer than max_seq_length={budget.max_seq_length} tokens"
            f" (the longest has {max(lengths)}); raise the profile's max_seq_length rather than cut answers"
        )
    if not torch.cuda.is_available():
        # On a CPU, matmul-and-softmax attention trains faster than PyTorch's fused kernel; generation switches back.
        model.set_attn_implementation(CPU_TRAINING_ATTENTION)
    micro_batch_size = budget.micro_batch_size or budget.batch_size
    args = SFTConfig(
        output_dir=str(output_dir),
        per_device_train_batch_size=micro_batch_size,
        gradient_accumulation_steps=budget.batch_size // micro_batch_size,
        learning_rate=recipe.train.learning_rate,
        lr_scheduler_type=recipe.train.lr_scheduler,
        warmup_steps=recipe.train.warmup_ratio,  # a float below 1 is a ratio of the total steps
        weight_decay=recipe.train.weight_decay,
        num_train_epochs=budget.epochs or 1.0,
        max_steps=budget.max_steps or -1,
        max_length=budget.max_seq_length,
        completion_only_loss=True,
        # On a CPU, micro-batches padded to a multiple of 64 tokens: oneDNN builds a kernel for every new matrix
        # shape and keeps it (about 0.5 MB each). The seed-recipe trial built 163 instead of 705 and peaked at
        # 2.16 GB instead of 2.46, for 3-5% more training time (bench/trial_memory.py).
        pad_to_multiple_of=None if torch.cuda.is_available() else CPU_PAD_MULTIPLE,
        # Each optimizer step's examples sorted by length (within shuffled groups): micro-batches of similar
        # lengths carry little padding, which is pure waste on a CPU.
        train_sampling_strategy="group_by_length",
        activation_checkpointing=budget.gradient_checkpointing,
        bf16=bf16,
        use_cpu=not torch.cuda.is_available(),
        logging_steps=logging_steps,
        save_strategy="no",
        report_to="none",
        seed=recipe.seed,
        data_seed=recipe.seed,
        dataloader_num_workers=0,
        disable_tqdm=True,
        eval_strategy="no",  # evaluated when a callback asks (`evaluate_at_steps`), not on a fixed schedule
        per_device_eval_batch_size=micro_batch_size,
    )
    trainer = AnswerLossTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(conversations),
        eval_dataset=Dataset.from_list(validation_conversations) if validation_conversations else None,
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    trainer.remove_callback(PrinterCallback)  # progress goes to the reporter, not to stdout as dicts
    return trainer


class AnswerLossTrainer(SFTTrainer):
    """SFTTrainer with a loss that projects only the answer tokens through the LM head.

    TRL's own loss scores every position on devices without Triton (a CPU among them) and computes per-token
    entropy and top-1 accuracy for its logs: with a 49k-token vocabulary and answers a fifth of each sequence,
    that is most of the LM head's work thrown away. The loss here is the same quantity (mean negative
    log-likelihood of the answer tokens, normalised over the accumulated batch as TRL does).
    """

    trained_tokens = 0  # prompt + answer tokens trained on, padding excluded

    def compute_loss(
        self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        causal_lm = model.get_base_model() if isinstance(model, PeftModel) else model
        # Mixed precision as for the model's own forward, which accelerate wraps in autocast: calling the backbone
        # directly would bypass that and run the fp32 LoRA weights' matmuls in fp32.
        # And without PEFT's cast of each adapter's input to the adapter's fp32, which autocast casts straight back
        # to bf16 for the matmul: two copies of the activations per adapted layer, 6% of a CPU step.
        with self.accelerator.autocast(), disable_input_dtype_casting(model, active=self.args.bf16):
            hidden = causal_lm.model(
                input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], use_cache=False
            )
            # Position t predicts token t + 1; only positions whose next token is an answer token count. (On the
            # devices the model's last layer and its head are on: a model split over GPUs ends where it ends.)
            labels = inputs["labels"][:, 1:]
            answer = labels != -100
            states = hidden.last_hidden_state[:, :-1]
            logits = causal_lm.lm_head(states[answer.to(states.device)]).float()
        count = answer.sum() if num_items_in_batch is None else num_items_in_batch
        loss = torch.nn.functional.cross_entropy(
            logits, labels[answer].to(logits.device), reduction="sum"
        ) / torch.as_tensor(count, device=logits.device).clamp(min=1)
        loss = loss.to(labels.device)  # where the trainer sums the losses (a split model's head may be elsewhere)
        if model.training:
            self.trained_tokens += int(inputs["attention_mask"].sum())
        return (loss, {"loss": loss}) if return_outputs else loss


def _conversation_length(tokenizer: Any, conversation: dict[str, list[dict[str, str]]]) -> int:
    ids = tokenizer.apply_chat_template(conversation["prompt"] + conversation["completion"], tokenize=True)
    return len(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)


class _ReporterCallback(TrainerCallback):
    """Forwards the trainer's progress to the reporter, asks for the validation loss at the given steps, and stops
    training when the reporter says so."""

    def __init__(self, reporter: TrainingReporter, evaluate_at_steps: tuple[int, ...] = ()) -> None:
        self.reporter = reporter
        self.evaluate_at_steps = set(evaluate_at_steps)
        self.losses: list[tuple[int, float]] = []
        self.stopped = False

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.reporter.on_train_begin(state.max_steps)

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

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.reporter.on_train_end()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step in self.evaluate_at_steps:
            control.should_evaluate = True
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


def fold_adapter_for_generation(model: PeftModel, *, dtype: torch.dtype) -> Any:
    """The trained model with every LoRA pair folded into its base weight, as plain `dtype` linear layers: the
    model generation runs on. The PEFT wrapper is consumed (use it for nothing else afterwards).

    Generating through unmerged adapters costs a third more per token, and through bitsandbytes' 4- and 8-bit
    layers on a CPU more again (their weights are dequantized on every call). An int8 or nf4 base is dequantized
    once here, so the answers still come from the weights the adapter was trained against; only int8's
    quantization of activations is not reproduced."""
    _fold_into_plain_linears(model, dtype)
    return _cast_parameters(model.get_base_model(), dtype)


def model_for_generation(model: PeftModel, *, dtype: torch.dtype, fold: bool) -> Any:
    """The trained model to generate with: folded into plain `dtype` weights (`fold_adapter_for_generation`), or,
    where those would not fit (`memory.folds_for_generation`), the adapter left on its quantized base."""
    return fold_adapter_for_generation(model, dtype=dtype) if fold else model


def dequantize(model: Any) -> Any:
    """A base model loaded in int8 or nf4 (`load_for_training`) with every quantized layer replaced by a plain fp32
    one holding its dequantized weight: the weights a QLoRA adapter was trained against, for serving it unmerged."""
    _fold_into_plain_linears(model, torch.float32)
    return _cast_parameters(model, torch.float32)


def _fold_into_plain_linears(model: Any, dtype: torch.dtype) -> None:
    """Replace each LoRA layer (base weight dequantized, adapters added) and each quantized layer without one
    (dequantized) by a plain `dtype` linear layer holding the weight it computes with.

    One layer at a time, on the layer's own device: the new layer is allocated there without an initialisation
    (no random init to overwrite, no trip through the host), and nothing here keeps a replaced layer alive, so the
    peak is the model plus one layer's fp32 weight (an 8B model on a GPU: its weights and about 0.25 GB)."""
    folded_prefix = None
    for name in [name for name, _ in model.named_modules()]:  # parents before their children; names, not modules
        if folded_prefix and name.startswith(folded_prefix):
            continue  # the base layer and the A and B of a LoRA layer folded already: gone with it
        layer = model.get_submodule(name)
        if isinstance(layer, LoraLayer):
            base = layer.get_base_layer()
            weight = dequantize_module_weight(base).detach().float()
            for adapter in layer.active_adapters:
                weight = weight + layer.get_delta_weight(adapter).float()
        elif isinstance(getattr(layer, "weight", None), torch.nn.Parameter) and get_bnb_param_type(layer.weight):
            base, weight = layer, dequantize_module_weight(layer).detach()  # a quantized layer without an adapter
        else:
            continue
        folded = torch.nn.utils.skip_init(
            torch.nn.Linear, base.in_features, base.out_features, bias=base.bias is not None, device=weight.device,
            dtype=dtype,
        )  # fmt: skip
        with torch.no_grad():
            folded.weight.copy_(weight)
            if base.bias is not None:
                folded.bias.copy_(base.bias.detach())
        parent, _, attribute = name.rpartition(".")
        setattr(model.get_submodule(parent), attribute, folded)
        folded_prefix = f"{name}."
        del layer, base, weight, folded  # the replaced layer's memory goes now, not at the end of the loop


def _cast_parameters(model: Any, dtype: torch.dtype) -> Any:
    # k-bit preparation upcast the frozen norms and embeddings to fp32 for training under autocast; they were
    # loaded in `dtype`, so casting back loses nothing. (Parameter by parameter: transformers refuses `.to(dtype)`
    # on a model loaded through bitsandbytes, although none of its layers is quantized any more.)
    for parameter in model.parameters():
        parameter.data = parameter.data.to(dtype)
    return model


def merge_adapter(model: Any, directory: Path) -> Any:
    """Fold a saved LoRA adapter into the base model it was trained on (`fold_adapter_for_generation`): a plain
    model again, computing what the trained one did. Each sum is taken in fp32 and rounded once to bf16, the dtype
    the merged version is saved in, so the weights are those an fp32 merge saves, without an fp32 copy of the whole
    model (an 8B model: 16 GB, not 32, on the GPU at registration)."""
    return fold_adapter_for_generation(load_adapter(model, directory), dtype=torch.bfloat16)
