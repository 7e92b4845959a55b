"""What a trial, a search and its refit will cost on this machine, before they run.

The cost model counts floating-point operations from the model's shape and the task's token counts, and turns
them into seconds with a matmul rate measured on the spot (a fraction of a second) and the share of that rate
each kind of work reaches, measured once per device kind with harness itself (`EFFICIENCY`). A running search
corrects the estimate with what its finished trials actually took (`Correction`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch

from harness import machine
from harness.config import BudgetSpec, PruningSpec
from harness.memory import ModelShape
from harness.progress import minutes

# Share of the measured matmul rate each kind of work reaches, by device kind: measured with harness itself on
# SmolLM2 (cpu), typical of LoRA fine-tuning on one data-centre GPU (cuda); the first trials correct them as they do
# every estimate. The measurements: docs/benchmarks.md, "What the estimate is calibrated on".
EFFICIENCY = {
    "cpu": {"train": 0.31, "prefill": 0.55, "decode_layer_seconds": 0.0027},
    "cuda": {"train": 0.37, "prefill": 0.5, "decode_layer_seconds": 0.0002},
}
SECONDS_PER_TRIAL = {"cpu": 20.0, "cuda": 60.0}  # load the base model, log the run (datasets, adapter); measured on cpu
# Share of the trials reaching a rung that train on, with a sampler that learns: more than halving's
# 1/reduction_factor, since TPE draws better trials as it learns and asynchronous halving compares a trial with
# those that reached the rung so far (measured on legal-cpu: docs/benchmarks.md, as above).
LEARNING_SAMPLER_PROMOTION = 0.4
# The time left weighs the mean of the trials finished so far against the model's mean as if it were this many
# trials: the first trial (the seed recipe, always complete) does not stand for the rest.
PRIOR_TRIALS = 3


@dataclass(frozen=True)
class Machine:
    kind: str  # cpu | cuda
    description: str  # what a person reads: "2 cores of AMD EPYC, AVX-512 bf16" / "NVIDIA H100 80GB HBM3"
    matmul_flops: float  # per second, in the compute dtype, measured now
    # Training as many times slower than the FLOP model says (1: as it says). Plans use the one GPU training figure
    # published for the lineup, the seed's 8B refit (`plan.seed_slowdown`), as a pessimistic second estimate.
    train_slowdown: float = 1.0


@dataclass(frozen=True)
class TokenCounts:
    prompt: float  # mean tokens of a prompt (system + user turns, with the chat template)
    answer: float  # mean tokens of a gold answer


@dataclass(frozen=True)
class Workload:
    """Per-token costs of one model on one machine."""

    machine: Machine
    shape: ModelShape
    tokens: TokenCounts

    def train_seconds(self, examples: float, *, checkpointing: bool = False) -> float:
        # Frozen weights: the backward pass costs about one forward (no weight gradients); checkpointing recomputes
        # the forward once more.
        per_token = (3 if checkpointing else 2) * self._forward_flops(answer_fraction=self._answer_fraction)
        tokens = examples * (self.tokens.prompt + self.tokens.answer)
        seconds = tokens * per_token / (self.machine.matmul_flops * EFFICIENCY[self.machine.kind]["train"])
        return seconds * self.machine.train_slowdown

    def loss_seconds(self, examples: float) -> float:
        """The validation loss of `examples` (a pruning rung): a forward pass each."""
        tokens = examples * (self.tokens.prompt + self.tokens.answer)
        flops = tokens * self._forward_flops(answer_fraction=self._answer_fraction)
        return flops / (self.machine.matmul_flops * EFFICIENCY[self.machine.kind]["prefill"])

    def generate_seconds(self, examples: float, *, answer_tokens: float, batch_size: int) -> float:
        prefill = examples * self.tokens.prompt * self._forward_flops(answer_fraction=0.0)
        prefill_seconds = prefill / (self.machine.matmul_flops * EFFICIENCY[self.machine.kind]["prefill"])
        steps = math.ceil(examples / batch_size) * answer_tokens
        step_seconds = self.shape.layers * EFFICIENCY[self.machine.kind]["decode_layer_seconds"]
        return prefill_seconds + steps * step_seconds

    @property
    def _answer_fraction(self) -> float:
        return self.tokens.answer / (self.tokens.prompt + self.tokens.answer)

    def _forward_flops(self, *, answer_fraction: float) -> float:
        shape = self.shape
        dense = shape.parameters - shape.embedding_parameters
        context = (self.tokens.prompt + self.tokens.answer) / 2  # causal: a token attends to half the sequence
        attention = 4 * shape.layers * shape.hidden_size * context
        head = 2 * shape.hidden_size * shape.vocab_size * answer_fraction
        return 2 * dense + attention + head


@dataclass(frozen=True)
class SearchEstimate:
    trials: int
    trial_seconds: float  # the trials still to run, pruning included
    zero_shot_seconds: float
    refit_seconds: float  # refit training, its validation, the merge and the stored test set of registration
    per_full_trial_seconds: float
    mean_trial_seconds: float  # a trial as pruning leaves it, on average
    refit_train_seconds: float = 0.0  # the refit's training alone (part of refit_seconds)
    refit_train_tokens: float = 0.0

    @property
    def total_seconds(self) -> float:
        return self.trial_seconds + self.zero_shot_seconds + self.refit_seconds

    def describe(self) -> str:
        return (
            f"{self.trials} trials ≈ {minutes(self.trial_seconds)} (a trial at full budget ≈"
            f" {minutes(self.per_full_trial_seconds)}), zero-shot baseline ≈ {minutes(self.zero_shot_seconds)},"
            f" refit and registration ≈ {minutes(self.refit_seconds)}: ≈ {minutes(self.total_seconds)} in all"
        )


def promotion_share(sampler: str, pruning: PruningSpec | None) -> float | None:
    """The share of trials that pass each rung: successive halving's own for random draws, more with a sampler that
    learns (tpe, gp)."""
    if pruning is None:
        return None
    halving = 1 / pruning.reduction_factor
    return halving if sampler == "random" else max(halving, LEARNING_SAMPLER_PROMOTION)


def trial_fates(
    total_steps: int, pruning: PruningSpec | None, *, promoted: float | None = None
) -> list[tuple[int, float]]:
    """(steps trained, share of trials) for each way a trial can end: pruned at each rung, or complete. Of the
    trials reaching a rung, `promoted` go on (default: successive halving's 1/reduction_factor)."""
    rungs = pruning.rung_steps(total_steps) if pruning else ()
    if not pruning or not rungs:
        return [(total_steps, 1.0)]
    share = promoted if promoted is not None else 1 / pruning.reduction_factor
    fates, reaching = [], 1.0
    for rung in rungs:
        going_on = reaching * share
        fates.append((rung, reaching - going_on))
        reaching = going_on
    return [*fates, (total_steps, reaching)]


def trial_seconds(
    workload: Workload,
    budget: BudgetSpec,
    *,
    steps: int,
    complete: bool,
    rungs_passed: int,
    generation_batch_size: int,
) -> float:
    """One trial that trains `steps` steps, computes the pruning loss `rungs_passed` times and, when complete,
    generates and scores the validation answers."""
    kind = workload.machine.kind
    seconds = SECONDS_PER_TRIAL[kind] + workload.train_seconds(
        steps * budget.batch_size, checkpointing=budget.gradient_checkpointing
    )
    seconds += rungs_passed * workload.loss_seconds(budget.report_examples)
    if complete:
        seconds += workload.generate_seconds(
            budget.validation_examples,
            answer_tokens=min(workload.tokens.answer * 1.1, budget.max_new_tokens),
            batch_size=generation_batch_size,
        )
    return seconds


def search_estimate(
    workload: Workload,
    budget: BudgetSpec,
    refit: BudgetSpec,
    *,
    trials: int,
    total_steps: int,
    refit_steps: int,
    pruning: PruningSpec | None,
    zero_shot: bool,
    test_examples: int,
    generation_batch_size: int,
    promoted: float | None = None,
) -> SearchEstimate:
    """The whole search: `trials` trials still to run (the first complete: it is the seed recipe, or the best of a
    rung with no rivals yet), the zero-shot baseline, then the refit and the registration's test evaluation."""
    fates = trial_fates(total_steps, pruning, promoted=promoted)
    rungs = [steps for steps, _ in fates[:-1]]

    def fate_seconds(steps: int, complete: bool) -> float:
        passed = sum(1 for rung in rungs if rung <= steps)
        return trial_seconds(
            workload,
            budget,
            steps=steps,
            complete=complete,
            rungs_passed=passed,
            generation_batch_size=generation_batch_size,
        )

    full = fate_seconds(total_steps, True)
    mean = sum(share * fate_seconds(steps, steps == total_steps) for steps, share in fates)
    trial_total = (full + (trials - 1) * mean) if trials > 0 else 0.0
    zero_shot_seconds = (
        workload.generate_seconds(
            budget.validation_examples, answer_tokens=budget.max_new_tokens, batch_size=generation_batch_size
        )
        if zero_shot
        else 0.0
    )
    answers = min(workload.tokens.answer * 1.1, refit.max_new_tokens)
    refit_examples = refit_steps * refit.batch_size
    refit_train_seconds = workload.train_seconds(refit_examples, checkpointing=refit.gradient_checkpointing)
    refit_seconds = (
        trial_seconds(
            workload,
            refit,
            steps=refit_steps,
            complete=True,
            rungs_passed=0,
            generation_batch_size=generation_batch_size,
        )
        + SECONDS_PER_TRIAL[workload.machine.kind]  # the merge: the base model loaded again
        + workload.generate_seconds(test_examples, answer_tokens=answers, batch_size=generation_batch_size)
    )
    refit_tokens = refit_examples * (workload.tokens.prompt + workload.tokens.answer)
    return SearchEstimate(
        trials, trial_total, zero_shot_seconds, refit_seconds, full, mean, refit_train_seconds, refit_tokens
    )


@dataclass
class Forecast:
    """A search's estimate, corrected as its trials finish: the time left scales by measured over predicted seconds
    of the trials finished so far."""

    estimate: SearchEstimate
    workload: Workload
    budget: BudgetSpec
    rungs: tuple[int, ...]
    generation_batch_size: int
    measured: float = 0.0
    predicted: float = 0.0
    finished: int = 0
    # The best trial's measured training speed: the refit trains its recipe, and target modules and quantization
    # change the speed by up to 1.6x on a CPU (mlp with nf4 against attn with none), which the FLOP count misses.
    refit_tokens_per_second: float | None = None

    def trial_finished(self, *, seconds: float, steps: int, complete: bool) -> None:
        self.finished += 1
        self.measured += seconds
        self.predicted += trial_seconds(
            self.workload,
            self.budget,
            steps=steps,
            complete=complete,
            rungs_passed=sum(1 for rung in self.rungs if rung <= steps),
            generation_batch_size=self.generation_batch_size,
        )

    @property
    def factor(self) -> float:
        return self.measured / self.predicted if self.predicted else 1.0

    def seconds_left(self, trials_left: int) -> float:
        """The trials still missing, then the refit and registration. The refit scales with this machine's speed
        as the trials measured it; a trial left costs the mean of those finished (their speed and how far pruning
        let them go), weighed against the model's mean."""
        prior = self.estimate.mean_trial_seconds * self.factor
        mean_trial = (self.measured + PRIOR_TRIALS * prior) / (self.finished + PRIOR_TRIALS)
        refit = self.estimate.refit_seconds * self.factor
        if self.refit_tokens_per_second:
            refit += (
                self.estimate.refit_train_tokens / self.refit_tokens_per_second
                - self.estimate.refit_train_seconds * self.factor
            )
        return max(trials_left, 0) * mean_trial + refit


def measure_machine() -> Machine:
    """This machine's kind, a description, and its matmul rate in the compute dtype (a 0.2 s probe)."""
    from harness.model_loading import training_dtype

    dtype = training_dtype()
    if torch.cuda.is_available():
        device, description, size = "cuda", torch.cuda.get_device_name(), 4096
    else:
        device, size = "cpu", 1024
        description = f"{torch.get_num_threads()} threads of {machine.cpu_info()[0]}, " + (
            "AVX-512 bf16" if dtype == torch.bfloat16 else "no native bf16 (fp32)"
        )
    a = torch.randn(size, size, dtype=dtype, device=device)
    b = torch.randn(size, size, dtype=dtype, device=device)
    a @ b  # warm-up
    repeats, started = 0, time.perf_counter()
    while time.perf_counter() - started < 0.2:
        a @ b
        repeats += 1
    if device == "cuda":
        torch.cuda.synchronize()
    rate = 2 * size**3 * repeats / (time.perf_counter() - started)
    return Machine(device, description, rate)


def mean_token_counts(tokenizer: Any, prompts: list[list[dict[str, str]]], answers: list[str]) -> TokenCounts:
    """Mean prompt and answer lengths in tokens (the answer with the end-of-turn tokens the model learns)."""
    prompt_texts = [tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in prompts]
    prompt_lengths = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in prompt_texts]
    answer_lengths = [len(tokenizer(a, add_special_tokens=False)["input_ids"]) + 2 for a in answers]
    return TokenCounts(sum(prompt_lengths) / len(prompt_lengths), sum(answer_lengths) / len(answer_lengths))
