"""`harness plan`: whether a task's training fits a GPU, and how long its search takes, before the hours are paid.

For full fine-tuning, LoRA on a 16-bit base, LoRA on an 8-bit base and QLoRA on a 4-bit (nf4) base, a plan gives
the peak memory per GPU (harness's own estimate, `harness/memory.py`, plus the CUDA context) with and without
gradient checkpointing, whether it fits the card, where it runs when there are several, and for the LoRA methods
the time of a trial and of the whole search with its refit (harness's own cost model, `harness/estimates.py`, at
the card's matmul rate from `GPUS`). Nothing here touches a GPU: a plan is arithmetic on the model's config.json and
the task's token counts.

The estimate is held against published tables in tests/test_plan.py; docs/gpu.md says which source it follows
where they disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness import estimates, machine
from harness.config import BudgetSpec, CategoricalParam, TaskConfig, for_profile, resolve_trial_config
from harness.errors import HarnessError
from harness.memory import (
    CUDA_CONTEXT_MB,
    MB,
    MemoryEstimate,
    ModelShape,
    estimate_peak_memory,
    generation_memory,
    model_shape,
)
from harness.task_data import load_split

GIB_MB = 1024.0  # MB (2^20 bytes) in a GiB


@dataclass(frozen=True)
class Gpu:
    name: str
    memory_gib: float  # as sold; nvidia-smi shows a little less
    matmul_tflops: float  # bf16, what large matmuls reach on it (estimates.measure_machine's figure)

    def machine(self, *, train_slowdown: float = 1.0) -> estimates.Machine:
        """The card as the cost model sees it (training `train_slowdown` times slower than that model says)."""
        return estimates.Machine("cuda", self.name, self.matmul_tflops * 1e12, train_slowdown=train_slowdown)


# Matmul rates: about 90% of the datasheet's dense bf16 peak on Ampere and Ada cards, 70% on Hopper ones (what
# large bf16 GEMMs reach on them; the figures bench/search_budget.py has used since the gpu profile was sized).
GPUS = {
    "l4-24gb": Gpu("NVIDIA L4 24GB", 24, 0.9 * 121),
    "a10-24gb": Gpu("NVIDIA A10 24GB", 24, 0.9 * 125),
    "a100-40gb": Gpu("NVIDIA A100 40GB", 40, 0.9 * 312),
    "l40s-48gb": Gpu("NVIDIA L40S 48GB", 48, 0.9 * 362),
    "a100-80gb": Gpu("NVIDIA A100 80GB", 80, 0.9 * 312),
    "h100-80gb": Gpu("NVIDIA H100 80GB SXM", 80, 0.7 * 989),
    "h200-141gb": Gpu("NVIDIA H200 141GB", 141, 0.7 * 989),
}

# The seed's lineup, from each model's config.json on the hub (read here without the hub: plans are made offline).
LINEUP: dict[str, dict[str, Any]] = {
    "meta-llama/Llama-3.2-1B-Instruct": dict(
        hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
        num_key_value_heads=8, head_dim=64, vocab_size=128256, tie_word_embeddings=True,
    ),
    "meta-llama/Llama-3.2-3B-Instruct": dict(
        hidden_size=3072, intermediate_size=8192, num_hidden_layers=28, num_attention_heads=24,
        num_key_value_heads=8, head_dim=128, vocab_size=128256, tie_word_embeddings=True,
    ),
    "meta-llama/Llama-3.1-8B-Instruct": dict(
        hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
        num_key_value_heads=8, head_dim=128, vocab_size=128256, tie_word_embeddings=False,
    ),
    "meta-llama/Llama-3.1-70B-Instruct": dict(
        hidden_size=8192, intermediate_size=28672, num_hidden_layers=80, num_attention_heads=64,
        num_key_value_heads=8, head_dim=128, vocab_size=128256, tie_word_embeddings=False,
    ),
}  # fmt: skip

# The one GPU training figure published for the lineup: the seed's "Llama 3.1 8B on an A100, 3,200 examples x 3
# epochs, 4 hours". The FLOP model makes that refit several times faster, so a plan also gives each search with
# training as slow as that figure says, on every card alike, and GPU profiles are sized on that (docs/gpu.md).
SEED_REFIT = ("meta-llama/Llama-3.1-8B-Instruct", "a100-80gb", 3200 * 3, 4.0)  # model, card, examples, hours

# bf16 gradients (2 bytes), an fp32 master copy (4) and AdamW's two fp32 moments (8) for every weight.
FULL_FINE_TUNING_STATE_BYTES = 14
MAX_GPUS = 8  # the most a plan splits one model over


@dataclass(frozen=True)
class Method:
    name: str
    quantization: str | None  # the recipe's quantization for the LoRA methods; None for full fine-tuning
    what: str


METHODS = (
    Method(
        "full", None, "every weight trained in bf16 with an fp32 master copy and AdamW (harness searches LoRA only)"
    ),
    Method("lora-16bit", "none", "LoRA on a bf16 base"),
    Method("lora-8bit", "int8", "LoRA on an 8-bit base (bitsandbytes LLM.int8)"),
    Method("qlora-4bit", "nf4", "QLoRA: LoRA on a 4-bit nf4 base, double-quantised (bitsandbytes)"),
)


@dataclass(frozen=True)
class Adapter:
    rank: int
    target_modules: str
    dropout: float


@dataclass(frozen=True)
class PlanRow:
    method: Method
    memory: MemoryEstimate  # per GPU, where it runs, with the profile's checkpointing setting
    without_checkpointing_gib: float  # on one GPU
    with_checkpointing_gib: float  # on one GPU
    placement: str  # "one GPU", "a worker on each of 2 GPUs", "split over 2 GPUs", or "does not fit"
    trial_seconds: float | None  # a trial at the full search budget
    search_seconds: float | None  # the whole search with its refit, as placed
    search_seconds_at_seed_speed: float | None  # the same with training as slow as the seed's figure (SEED_REFIT)
    advice: tuple[str, ...]
    # Whether its trials fold the adapter into bf16 to generate (memory.folds_for_generation) on the GPUs a trial
    # has; False: through the adapter on the quantized base. None: full fine-tuning, or it does not fit.
    folds: bool | None = None

    @property
    def fits(self) -> bool:
        return self.placement != "does not fit"


@dataclass(frozen=True)
class Plan:
    task: str
    profile: str
    model: str
    shape: ModelShape
    gpu: Gpu
    gpus: int
    budget: BudgetSpec
    adapter: Adapter
    trials: int
    tokens: estimates.TokenCounts
    seed_slowdown: float  # how many times slower than the FLOP model the seed's figure trains
    rows: tuple[PlanRow, ...]
    # Registration: the winner merged into bf16 weights and evaluated, split over all `gpus` (per GPU)
    registration: MemoryEstimate


def training_memory(
    shape: ModelShape,
    method: Method,
    *,
    micro_batch_size: int,
    sequence_length: int,
    adapter: Adapter,
    gradient_checkpointing: bool,
    gpus: int = 1,
) -> MemoryEstimate:
    """Peak memory per GPU of one training run, the model split by layers over `gpus` GPUs."""
    estimate = estimate_peak_memory(
        shape,
        quantization=method.quantization or "none",
        bf16=True,
        lora_rank=adapter.rank,
        target_modules=adapter.target_modules,
        lora_dropout=adapter.dropout,
        batch_size=micro_batch_size,
        sequence_length=sequence_length,
        gradient_checkpointing=gradient_checkpointing,
        on_gpu=True,
    )
    parts = dict(estimate.parts_mb)
    if method.quantization is None:
        del parts["adapter+optimizer"]
        parts["gradients+optimizer"] = shape.parameters * FULL_FINE_TUNING_STATE_BYTES / MB
    if gpus > 1:
        # Split by layers (device_map): each GPU holds its share, and the busiest one a layer more (the ends also
        # hold the embeddings and the head).
        per_layer = (parts["weights"] + parts.get("gradients+optimizer", 0.0)) / shape.layers
        parts = {name: value / gpus for name, value in parts.items()}
        parts["uneven split"] = per_layer
    parts["cuda context"] = CUDA_CONTEXT_MB
    return MemoryEstimate(total_mb=sum(parts.values()), parts_mb=parts)


def largest_adapter(task: TaskConfig) -> Adapter:
    """The largest adapter the task's search can draw (its memory is the search's peak): the highest rank, and all
    target modules where the space offers them."""

    def choices(key: str, default: Any) -> list[Any]:
        param = task.search.params.get(key)
        if param is None:
            return [default]
        return list(getattr(param, "choices", None) or [param.high])  # type: ignore[union-attr]

    targets = choices("lora.target_modules", task.recipe.lora.target_modules)
    widest = "all" if "all" in targets or {"attn", "mlp"} <= set(targets) else str(targets[0])
    return Adapter(int(max(choices("lora.r", task.recipe.lora.r))), widest, task.recipe.lora.dropout)


def search_estimate(
    task: TaskConfig, *, profile: str, machine: estimates.Machine, shape: ModelShape, tokens: Any, trials: int
) -> estimates.SearchEstimate:
    """`harness search TASK --trials N` with its refit and registration, on a machine given rather than measured."""
    from harness.trial import GENERATION_BATCH_SIZE

    budget = resolve_trial_config(task, profile=profile).budget
    refit = resolve_trial_config(task, profile=profile, refit=True).budget
    available = len(load_split(task, "train"))
    return estimates.search_estimate(
        estimates.Workload(machine, shape, tokens),
        budget,
        refit,
        trials=trials,
        total_steps=budget.total_steps(available),
        refit_steps=refit.total_steps(available),
        pruning=task.search.pruning,
        zero_shot=True,
        test_examples=len(load_split(task, task.eval_set_names[0])),
        generation_batch_size=GENERATION_BATCH_SIZE,
        promoted=estimates.promotion_share("tpe", task.search.pruning),
    )


def make_plan(
    task: TaskConfig,
    *,
    profile: str,
    model: str,
    shape: ModelShape,
    gpu: Gpu,
    gpus: int,
    tokens: estimates.TokenCounts,
    trials: int = 30,
) -> Plan:
    from harness.trial import GENERATION_BATCH_SIZE

    if gpus < 1:
        raise HarnessError(f"--gpus {gpus}: give 1 or more")
    budget = resolve_trial_config(task, profile=profile).budget
    adapter = largest_adapter(task)
    micro_batch = budget.micro_batch_size or budget.batch_size

    def memory(method: Method, *, checkpointing: bool, split: int = 1, micro: int = micro_batch) -> MemoryEstimate:
        return training_memory(
            shape,
            method,
            micro_batch_size=micro,
            sequence_length=budget.max_seq_length,
            adapter=adapter,
            gradient_checkpointing=checkpointing,
            gpus=split,
        )

    def fits(estimate: MemoryEstimate) -> bool:
        return estimate.total_mb <= gpu.memory_gib * GIB_MB

    machine = gpu.machine()
    # Every LoRA method computes in bf16 (bitsandbytes dequantises a layer's weights for its matmul); what the
    # dequantisation itself costs is not modelled: the GPU check measures it.
    search = search_estimate(task, profile=profile, machine=machine, shape=shape, tokens=tokens, trials=trials)
    slowdown = seed_slowdown(tokens)
    slow_machine = gpu.machine(train_slowdown=slowdown)
    slow = search_estimate(task, profile=profile, machine=slow_machine, shape=shape, tokens=tokens, trials=trials)

    def placed(estimate: estimates.SearchEstimate, placement: str) -> float | None:
        if placement == "does not fit":
            return None
        if placement.startswith("split"):
            return estimate.total_seconds  # layers run one GPU after another: no faster than one GPU
        # Workers share the trials; the zero-shot baseline and the refit run once.
        return estimate.trial_seconds / gpus + estimate.zero_shot_seconds + estimate.refit_seconds

    def generation(split: int) -> MemoryEstimate:
        return generation_memory(
            shape, weight_bytes=2, batch_size=GENERATION_BATCH_SIZE, sequence_length=budget.max_seq_length, gpus=split
        )

    checkpointing = budget.gradient_checkpointing
    per_trial = task.profiles[profile].gpus_per_trial  # a profile may split every trial, whether or not it must
    rows = []
    for method in METHODS:
        one = memory(method, checkpointing=checkpointing)
        split = next(
            (
                n
                for n in range(max(2, per_trial), gpus + 1)
                if fits(memory(method, checkpointing=checkpointing, split=n))
            ),
            None,
        )
        if per_trial == 1 and fits(one):
            placement, chosen = ("one GPU" if gpus == 1 else f"a worker on each of {gpus} GPUs"), one
        elif split is not None:
            placement, chosen = f"split over {split} GPUs", memory(method, checkpointing=checkpointing, split=split)
        else:
            placement, chosen = "does not fit", one
        lora = method.quantization is not None
        rows.append(
            PlanRow(
                method=method,
                memory=chosen,
                without_checkpointing_gib=memory(method, checkpointing=False).total_mb / GIB_MB,
                with_checkpointing_gib=memory(method, checkpointing=True).total_mb / GIB_MB,
                placement=placement,
                trial_seconds=search.per_full_trial_seconds if lora and placement != "does not fit" else None,
                search_seconds=placed(search, placement) if lora else None,
                search_seconds_at_seed_speed=placed(slow, placement) if lora else None,
                advice=() if placement != "does not fit" else tuple(_advice(method, memory, fits, budget, gpus)),
                folds=(
                    fits(generation(split if placement.startswith("split") and split else 1))
                    if lora and placement != "does not fit"
                    else None
                ),
            )
        )
    return Plan(
        task.task.name, profile, model, shape, gpu, gpus, budget, adapter, trials, tokens, slowdown, tuple(rows),
        registration=generation(gpus),
    )  # fmt: skip


def drawn_rows(made: Plan, task: TaskConfig) -> list[PlanRow]:
    """The rows of the base quantizations the profile's trials may draw: the search space's choices as the profile
    narrows them (the recipe's alone where the space samples none)."""
    narrowed = for_profile(task, made.profile)
    space = narrowed.search.params.get("quantization")
    drawn = space.choices if isinstance(space, CategoricalParam) else (narrowed.recipe.quantization,)
    return [row for row in made.rows if row.method.quantization in drawn]


def seed_slowdown(tokens: estimates.TokenCounts) -> float:
    """How many times slower than the FLOP model the seed's 8B refit trained (`SEED_REFIT`), at these tokens."""
    model, card, examples, hours = SEED_REFIT
    a100 = GPUS[card].machine()
    shape = lineup_shape(model)
    assert shape is not None  # the lineup's own
    flop_model = estimates.Workload(a100, shape, tokens).train_seconds(examples, checkpointing=True)
    return hours * 3600 / flop_model


def _advice(method: Method, memory: Any, fits: Any, budget: BudgetSpec, gpus: int) -> list[str]:
    """What would make a method fit, cheapest change first."""
    advice = []
    checkpointed = memory(method, checkpointing=True)
    peak = checkpointed.total_mb / GIB_MB
    if not budget.gradient_checkpointing and fits(checkpointed):
        advice.append(
            f"fits with gradient checkpointing (budget.gradient_checkpointing: true): {peak:.1f} GiB,"
            " a third more compute"
        )
    micro = budget.micro_batch_size or budget.batch_size
    if micro > 1 and fits(one_sequence := memory(method, checkpointing=True, micro=1)):
        gib = one_sequence.total_mb / GIB_MB
        advice.append(
            f"fits with gradient checkpointing and budget.micro_batch_size: 1 (the same batch): {gib:.1f} GiB"
        )
    needed = next((n for n in range(2, MAX_GPUS + 1) if fits(memory(method, checkpointing=True, split=n))), None)
    if needed is not None and needed > gpus:
        advice.append(f"fits split over {needed} GPUs of this kind (--gpus {needed}), with gradient checkpointing")
    cards = [name for name, card in GPUS.items() if card.memory_gib >= peak]
    if cards:
        advice.append(f"fits on a bigger card: {', '.join(cards)} ({peak:.1f} GiB with gradient checkpointing)")
    if not advice:
        advice.append(
            f"fits nowhere here: {peak:.1f} GiB is more than {MAX_GPUS} GPUs of this kind hold;"
            " a smaller method or model"
        )
    return advice


def lineup_shape(spec: str) -> ModelShape | None:
    """The shape of one of the seed's lineup, known offline; None for another model."""
    config = LINEUP.get(spec)
    return model_shape(config) if config else None


def known_gpu(name: str) -> Gpu:
    if name not in GPUS:
        raise HarnessError(f"unknown GPU {name!r}; known: {', '.join(GPUS)}")
    return GPUS[name]


def local_gpu() -> Gpu | None:
    """This machine's first GPU, its matmul rate measured on the spot; None without CUDA."""
    if not machine.has_cuda():
        return None
    measured = estimates.measure_machine()
    return Gpu(measured.description, round(machine.gpu_memory_gib(), 1), measured.matmul_flops / 1e12)


def model_and_tokens(task: TaskConfig, spec: str, *, tokenizer_spec: str) -> tuple[ModelShape, Any, str]:
    """A model's shape, the task's mean token counts in its tokenizer, and where the counts come from. The
    lineup's shapes are known offline; their tokenizers are not: the counts then come from `tokenizer_spec`'s."""
    from harness import model_loading
    from harness.memory import read_model_shape
    from harness.prompts import compact_json, prompt_turns

    shape = lineup_shape(spec)
    if shape is None:
        resolved = model_loading.resolve_model(spec, weights=False)
        shape, source, note = read_model_shape(resolved.path), resolved, f"{spec}'s tokenizer"
    else:
        source = model_loading.resolve_model(tokenizer_spec)
        note = (
            f"{tokenizer_spec}'s tokenizer ({spec}'s is not read offline; Llama 3's makes fewer tokens of the same"
            " text, of Russian far fewer: the times are upper bounds)"
        )
    tokenizer = model_loading.load_tokenizer(source)
    sample = load_split(task, "train")[:64]
    tokens = estimates.mean_token_counts(
        tokenizer, [prompt_turns(task, e.text) for e in sample], [compact_json(e.fields) for e in sample]
    )
    return shape, tokens, f"{note}, {len(sample)} training examples"
