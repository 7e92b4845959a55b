"""What a task YAML may say: every section and key, declared once as a validated model with a comment.

The sections, in this order: `task` (name, instruction), `fields` (what to extract), `normalization` (the words
values are written with), `data` (where the examples come from, the stored eval sets), `recipe` (the seed LoRA
recipe every trial starts from), `profiles` (base model and budget per hardware class) and `search` (the Optuna
search space and objective). Unknown keys are errors.
"""

from __future__ import annotations

import math
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from evaluators.normalization import Vocabulary

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent
SEARCH_SPACES_DIR = PROJECT_ROOT / "search_spaces"

FieldType = Literal["string", "number", "enum", "date", "string_list"]
Quantization = Literal["none", "int8", "nf4"]
TargetModules = Literal["attn", "mlp", "all"]
REQUIRED_PROFILES = ("smoke", "cpu", "gpu")


# Tokens an answer may take when nothing says otherwise: the legal answer is ~75 tokens, compact JSON.
DEFAULT_MAX_NEW_TOKENS = 128


class Strict(BaseModel):
    """Every config model rejects keys it does not declare: a typo must not pass silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class TaskInfo(Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")  # must match the file name
    description: str = ""  # one line for people reading the MLflow UI
    instruction: str = Field(min_length=1)  # the system turn before the document
    # Append each field's description to the instruction ("- initiator: Who filed ..."): what a field means, said
    # to the model as well as learnt from the examples; every prompt grows by the descriptions' tokens.
    describe_fields: bool = False


class FieldSpec(Strict):
    type: FieldType  # string | number | enum | date (ISO) | string_list (scored as a set)
    values: tuple[str, ...] | None = None  # the allowed values, enum only
    description: str = ""  # what the field means; shown to the model when `task.describe_fields` is on

    @model_validator(mode="after")
    def _values_match_type(self) -> FieldSpec:
        if self.type == "enum" and not self.values:
            raise ValueError("an enum field needs a non-empty 'values' list")
        if self.type != "enum" and self.values is not None:
            raise ValueError(f"'values' is only allowed on enum fields, not on a {self.type} field")
        if self.values is not None and len(set(self.values)) != len(self.values):
            raise ValueError("'values' lists the same value twice")
        return self


class NormalizationSpec(Strict):
    """The words this task's values are written with: the generic scorer knows no language, so a task brings its
    own (legal forms, currencies, number words). Gold reformatted with any of them scores as the gold."""

    # A canonical token and its spellings: `llc: [limited liability company, ooo]`. In string values every spelling
    # becomes the token, and tokens go first, so `"Vostok" LLC` equals `LLC "Vostok"`.
    synonyms: dict[Annotated[str, Field(pattern=r"^[\w-]+$")], tuple[str, ...]] = {}
    currency: tuple[str, ...] = ()  # words dropped from amounts: `rubles`, `руб`
    subunits: dict[str, float] = {}  # a word and its value in the main unit: `kopecks: 0.01`
    multipliers: dict[str, float] = {}  # a word after a number and its factor: `million: 1.0e6`
    # Characters written two ways for one meaning, replaced in every value (and in the words above) before it is
    # compared: `ё: е` (Russian print mostly writes е for ё), `ü: ue`. Each key is one character.
    fold: dict[str, str] = {}

    @field_validator("fold")
    @classmethod
    def _fold_replaces_characters(cls, fold: dict[str, str]) -> dict[str, str]:
        # Compared case-folded, so a key must stay one character case-folded too (not ß, which folds to ss).
        longer = [key for key in fold if len(key.casefold()) != 1]
        if longer:
            raise ValueError(f"fold replaces single characters; not {', '.join(map(repr, longer))}")
        return fold

    @cached_property
    def vocabulary(self) -> Vocabulary:
        """The scorer's form of these words (patterns compiled once)."""
        return Vocabulary(
            synonyms=self.synonyms,
            currency=self.currency,
            subunits=self.subunits,
            multipliers=self.multipliers,
            fold=self.fold,
        )


class EvalSetSpec(Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*-v[0-9]+$")  # versioned: test-v1, robust-amounts-v1, ...
    path: str  # JSONL, relative to this YAML file
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")  # checked on every load: a stored set never changes


MODULE_PATH = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$"  # tasks.legal.generator


class DataSpec(Strict):
    source: Literal["generator", "jsonl"]
    # source=generator: the module that writes the task's examples, `generate_split(seed, split, size)` -> records
    generator: str | None = Field(default=None, pattern=MODULE_PATH)
    # Any source: a module whose `predict(text)` answers without a model (rules), the row every model must beat.
    baseline: str | None = Field(default=None, pattern=MODULE_PATH)
    seed: int = 0  # source=generator: the seed of train and validation
    train_size: int | None = Field(default=None, gt=0)  # source=generator
    validation_size: int | None = Field(default=None, gt=0)  # source=generator
    train: str | None = None  # source=jsonl: path relative to this YAML file
    validation: str | None = None  # source=jsonl
    eval_sets: tuple[EvalSetSpec, ...] = Field(min_length=1)  # the first is the default `test` split

    @field_validator("generator", mode="before")
    @classmethod
    def _generator_is_a_module(cls, value: Any) -> Any:
        if value == "legal":  # how task files named the built-in generator before tasks had packages of their own
            raise ValueError(
                "'legal' is now a module path: generator: tasks.legal.generator (and baseline: tasks.legal.rules"
                " for its rule baseline)"
            )
        return value

    @model_validator(mode="after")
    def _source_has_its_keys(self) -> DataSpec:
        if self.source == "generator":
            missing = [k for k in ("generator", "train_size", "validation_size") if getattr(self, k) is None]
            extra = [k for k in ("train", "validation") if getattr(self, k) is not None]
        else:
            missing = [k for k in ("train", "validation") if getattr(self, k) is None]
            extra = [k for k in ("generator", "train_size", "validation_size") if getattr(self, k) is not None]
        if missing:
            raise ValueError(f"source={self.source} needs {', '.join(missing)}")
        if extra:
            raise ValueError(f"source={self.source} does not use {', '.join(extra)}")
        names = [s.name for s in self.eval_sets]
        if len(set(names)) != len(names):
            raise ValueError("two eval sets share a name")
        return self


class LoraSpec(Strict):
    r: int = Field(gt=0)  # adapter rank
    alpha: float | None = Field(default=None, gt=0)  # scaling numerator; give alpha or alpha_ratio
    alpha_ratio: float | None = Field(default=None, gt=0)  # alpha / r, what the search samples
    dropout: float = Field(default=0.0, ge=0, lt=1)
    target_modules: TargetModules = "attn"  # attn: q,k,v,o; mlp: gate,up,down; all: both
    use_rslora: bool = False  # rank-stabilised scaling alpha / sqrt(r)

    @model_validator(mode="after")
    def _one_alpha(self) -> LoraSpec:
        if self.alpha is not None and self.alpha_ratio is not None:
            raise ValueError("give alpha or alpha_ratio, not both")
        if self.alpha is None and self.alpha_ratio is None:
            raise ValueError("give alpha or alpha_ratio")
        return self

    @property
    def resolved_alpha(self) -> float:
        return self.alpha if self.alpha is not None else self.r * (self.alpha_ratio or 0.0)


class TrainSpec(Strict):
    learning_rate: float = Field(gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    warmup_ratio: float = Field(default=0.03, ge=0, lt=1)
    lr_scheduler: Literal["linear", "cosine", "constant"] = "cosine"


class Recipe(Strict):
    """One trainable configuration: what a trial samples and `--set` overrides."""

    lora: LoraSpec
    train: TrainSpec
    quantization: Quantization = "nf4"  # none: bf16 (fp32 without bf16 support); int8; nf4 (4-bit QLoRA)
    seed: int = 0


class BudgetSpec(Strict):
    train_examples: int = Field(gt=0)  # how many training examples the trial sees
    epochs: float | None = Field(default=None, gt=0)  # give epochs or max_steps
    max_steps: int | None = Field(default=None, gt=0)
    batch_size: int = Field(gt=0)  # examples per optimizer step
    # Examples per forward and backward pass; batch_size / micro_batch_size of them are accumulated per optimizer
    # step. Smaller holds fewer activations in memory at the same speed (measured: bench/training_speed.py).
    micro_batch_size: int | None = Field(default=None, gt=0)
    max_seq_length: int = Field(gt=0)  # prompt + answer tokens; longer examples are an error, not cut
    validation_examples: int = Field(gt=0)  # how many validation examples are generated and scored
    max_new_tokens: int = Field(default=DEFAULT_MAX_NEW_TOKENS, gt=0)  # the generation budget of each answer
    # Recompute activations in the backward pass: saves GPU memory on big models, costs a third more compute.
    gradient_checkpointing: bool = False
    # A search prunes on the completion loss of a small fixed slice (the last examples of the validation split),
    # computed at the pruner's rungs.
    report_examples: int = Field(default=8, gt=0)

    @model_validator(mode="after")
    def _epochs_or_steps(self) -> BudgetSpec:
        if (self.epochs is None) == (self.max_steps is None):
            raise ValueError("give exactly one of epochs or max_steps")
        if self.micro_batch_size is not None and self.batch_size % self.micro_batch_size:
            raise ValueError(
                f"batch_size {self.batch_size} is not a multiple of micro_batch_size {self.micro_batch_size}"
            )
        return self

    def total_steps(self, available_examples: int) -> int:
        """Optimizer steps the budget trains for, given how many training examples there are."""
        if self.max_steps:
            return self.max_steps
        # As transformers' Trainer counts them: accumulated micro-batches per epoch (a last, shorter accumulation
        # is a step too), then epochs, rounded up.
        micro_batch_size = self.micro_batch_size or self.batch_size
        micro_batches = math.ceil(min(self.train_examples, available_examples) / micro_batch_size)
        per_epoch = max(math.ceil(micro_batches / (self.batch_size // micro_batch_size)), 1)
        return math.ceil((self.epochs or 1.0) * per_epoch)


class SizedFor(Strict):
    """The machine a GPU profile's budget was sized for: `harness search TASK --trials 30` with its refit within
    `hours` of wall-clock time on `gpus` GPUs of the kind `gpu` (a card `harness plan --gpu` knows), as `harness plan`
    estimates it (tests/test_plan.py holds every profile to its hours)."""

    gpu: str
    gpus: int = Field(default=1, ge=1)
    hours: float = Field(gt=0)


class ProfileSpec(Strict):
    model: str  # model spec: embedded:..., tiny:llama, a hub id or a local directory
    why: str = ""  # printed when the profile is chosen
    budget: BudgetSpec  # the search's (low-fidelity) budget per trial
    refit: BudgetSpec  # the larger budget used to retrain the winner before registration
    # The only base quantizations this profile's trials may use (a 70B model fits an 80 GB GPU in nf4 only): the
    # search samples those of the space's choices, and a recipe in another takes the first. None: any.
    quantization: tuple[Quantization, ...] | None = Field(default=None, min_length=1)
    sized_for: SizedFor | None = None  # a GPU profile: what its budget was sized for
    # GPUs each trial's model is split over by layers (model_loading.split_by_layers): for a model that does not fit
    # one card (70B in nf4 on 40 GB cards). `--n-workers` then gives each worker this many.
    gpus_per_trial: int = Field(default=1, ge=1)


class CategoricalParam(Strict):
    type: Literal["categorical"]
    choices: tuple[str | int | float | bool, ...] = Field(min_length=1)


class IntParam(Strict):
    type: Literal["int"]
    low: int
    high: int
    step: int = Field(default=1, gt=0)
    log: bool = False

    @model_validator(mode="after")
    def _range(self) -> IntParam:
        _check_range(self.low, self.high, self.log)
        return self


class FloatParam(Strict):
    type: Literal["float"]
    low: float
    high: float
    log: bool = False

    @model_validator(mode="after")
    def _range(self) -> FloatParam:
        _check_range(self.low, self.high, self.log)
        return self


def _check_range(low: float, high: float, log: bool) -> None:
    if low > high:
        raise ValueError(f"low ({low}) is greater than high ({high})")
    if log and low <= 0:
        raise ValueError(f"a log range needs low > 0, got {low}")


SearchParam = Annotated[CategoricalParam | IntParam | FloatParam, Field(discriminator="type")]


class ObjectiveSpec(Strict):
    metric: str = "f1_micro"  # any metric `harness score` prints
    direction: Literal["maximize", "minimize"] = "maximize"


class PruningSpec(Strict):
    """Multi-fidelity: successive halving over training steps. Every trial trains to the first rung; at each rung
    the pruner compares the trials' validation loss and only the best 1/reduction_factor train on to the next rung
    (reduction_factor times further), the last of them to the full budget."""

    first_rung: float = Field(default=0.125, gt=0, lt=1)  # the first rung, as a fraction of a trial's steps
    reduction_factor: int = Field(default=3, ge=2)

    def rung_steps(self, total_steps: int) -> tuple[int, ...]:
        """The steps at which a trial reports its validation loss: first_rung x total, then x reduction_factor,
        below the total (a trial that reaches the total completes and is scored)."""
        first = max(1, round(self.first_rung * total_steps))
        rungs: list[int] = []
        while first * self.reduction_factor ** len(rungs) < total_steps:
            rungs.append(first * self.reduction_factor ** len(rungs))
        return tuple(rungs)


class SearchSpec(Strict):
    objective: ObjectiveSpec = ObjectiveSpec()
    pruning: PruningSpec = PruningSpec()
    params: dict[str, SearchParam] = Field(min_length=1)  # dotted recipe keys: lora.r, train.learning_rate, ...


class TaskConfig(Strict):
    task: TaskInfo
    fields: dict[str, FieldSpec] = Field(min_length=1)
    normalization: NormalizationSpec = NormalizationSpec()
    data: DataSpec
    recipe: Recipe
    profiles: dict[str, ProfileSpec]
    search: SearchSpec

    _file: Path = PrivateAttr(default=Path("."))

    @property
    def file(self) -> Path:
        """The YAML file this task was loaded from; data paths are relative to it."""
        return self._file

    @property
    def registered_name(self) -> str:
        """The task's registered model: every version `harness register` makes, every alias the gate moves."""
        return f"{self.task.name}-extractor"

    @property
    def vocabulary(self) -> Vocabulary:
        """The words the scorer compares this task's values in (its `normalization` section)."""
        return self.normalization.vocabulary

    @property
    def eval_set_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.data.eval_sets)

    def data_path(self, relative: str) -> Path:
        return (self._file.parent / relative).resolve()


class TrialConfig(Strict):
    """Everything one trial needs, fully resolved: logged with every run so any run can be re-created."""

    task: str
    profile: str
    model: str
    recipe: Recipe
    budget: BudgetSpec
    gpus: int = Field(default=1, ge=1)  # GPUs the model is split over (the profile's gpus_per_trial; 1 on a CPU)


def metric_names(fields: dict[str, FieldSpec]) -> list[str]:
    """Every metric name `harness score` reports for these fields, in print order."""
    names = ["n", "f1_micro"] + [f"f1_{name}" for name in fields]
    names += [f"acc_{name}" for name, spec in fields.items() if spec.type == "enum"]
    return [*names, "exact_match", "json_valid_rate", "schema_valid_rate"]
