"""Task configuration: `search_spaces/<task>.yaml` loaded into validated models.

The YAML has six sections in this order: `task` (name, instruction), `fields` (what to extract), `data` (where the
examples come from, the stored eval sets), `recipe` (the seed LoRA recipe every trial starts from), `profiles`
(base model and budget per hardware class) and `search` (the Optuna search space and objective). Every key is
declared below with a comment; unknown keys are errors, and each error names the file, line and key.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from harness.errors import HarnessError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
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
    instruction: str = Field(min_length=1)  # the user turn before the document; the JSON keys are appended


class FieldSpec(Strict):
    type: FieldType  # string | number | enum | date (ISO) | string_list (scored as a set)
    values: tuple[str, ...] | None = None  # the allowed values, enum only
    description: str = ""  # what the field means, shown to the model in the instruction

    @model_validator(mode="after")
    def _values_match_type(self) -> FieldSpec:
        if self.type == "enum" and not self.values:
            raise ValueError("an enum field needs a non-empty 'values' list")
        if self.type != "enum" and self.values is not None:
            raise ValueError(f"'values' is only allowed on enum fields, not on a {self.type} field")
        if self.values is not None and len(set(self.values)) != len(self.values):
            raise ValueError("'values' lists the same value twice")
        return self


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


class ProfileSpec(Strict):
    model: str  # model spec: embedded:..., tiny:llama, a hub id or a local directory
    why: str = ""  # printed when the profile is chosen
    budget: BudgetSpec  # the search's (low-fidelity) budget per trial
    refit: BudgetSpec  # the larger budget used to retrain the winner before registration


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
    def eval_set_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.data.eval_sets)

    def data_path(self, relative: str) -> Path:
        return (self._file.parent / relative).resolve()


def metric_names(fields: dict[str, FieldSpec]) -> list[str]:
    """Every metric name `harness score` reports for these fields, in print order."""
    names = ["n", "f1_micro"] + [f"f1_{name}" for name in fields]
    names += [f"acc_{name}" for name, spec in fields.items() if spec.type == "enum"]
    return [*names, "exact_match", "json_valid_rate", "schema_valid_rate"]


def apply_overrides(recipe: Recipe, overrides: dict[str, Any]) -> Recipe:
    """Return a copy of the recipe with dotted keys (`lora.r`) replaced; unknown keys and bad values are errors."""
    data = recipe.model_dump()
    for key, value in overrides.items():
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            if not isinstance(node.get(part), dict):
                raise HarnessError(f"unknown recipe key {key!r}; known keys: {', '.join(recipe_keys(recipe))}")
            node = node[part]
        if leaf not in node:
            raise HarnessError(f"unknown recipe key {key!r}; known keys: {', '.join(recipe_keys(recipe))}")
        node[leaf] = value
        if key == "lora.alpha_ratio":  # the two ways to give alpha exclude each other
            node["alpha"] = None
        elif key == "lora.alpha":
            node["alpha_ratio"] = None
    try:
        return Recipe.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(f"{_dotted(e['loc'])}: {e['msg']} (got {e['input']!r})" for e in error.errors())
        raise HarnessError(f"invalid recipe value: {problems}") from None


def recipe_keys(recipe: Recipe) -> list[str]:
    """The dotted names of every recipe value: the names used by `--set`, search params and MLflow params."""
    return list(recipe_values(recipe))


def recipe_values(recipe: Recipe) -> dict[str, Any]:
    """Every recipe value by its dotted name (`lora.r`, `train.learning_rate`), alpha given both ways (`lora.alpha`
    and `lora.alpha_ratio`, resolved): the one flattening of a recipe, for MLflow params and the seed's params."""
    values: dict[str, Any] = {}
    for section, value in recipe.model_dump().items():
        if isinstance(value, dict):
            values.update({f"{section}.{name}": item for name, item in value.items()})
        else:
            values[section] = value
    values["lora.alpha"] = recipe.lora.resolved_alpha
    values["lora.alpha_ratio"] = recipe.lora.resolved_alpha / recipe.lora.r
    return values


def task_path(task: str) -> Path:
    """A task name resolves to `search_spaces/<name>.yaml`; anything with a suffix or slash is a path."""
    if task.endswith((".yaml", ".yml")) or "/" in task:
        return Path(task)
    path = SEARCH_SPACES_DIR / f"{task}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in SEARCH_SPACES_DIR.glob("*.yaml"))
        raise HarnessError(f"unknown task {task!r}: no {path}; known tasks: {', '.join(known) or 'none'}")
    return path


def load_task(task: str) -> TaskConfig:
    """Load and validate a task YAML; every problem is a HarnessError naming the file, line and key."""
    path = task_path(task)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise HarnessError(f"cannot read task file {path}: {error.strerror}") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(error, "problem", None) or str(error)
        raise HarnessError(f"{where}: malformed YAML: {problem}") from None
    if root is None or not isinstance(data, dict):
        raise HarnessError(
            f"{path}: expected a mapping with the sections {', '.join(TaskConfig.model_fields)};"
            f" got {type(data).__name__}"
        )
    lines = _key_lines(root, (), {}, path)
    try:
        config = TaskConfig.model_validate(data)
    except ValidationError as error:
        raise HarnessError(_describe(error, path, lines)) from None
    _cross_check(config, path, lines)
    config._file = path.resolve()
    return config


def _cross_check(config: TaskConfig, path: Path, lines: dict[tuple[Any, ...], int]) -> None:
    """Checks that span sections, each reported at the line of the key at fault."""

    def fail(loc: tuple[Any, ...], message: str) -> HarnessError:
        return HarnessError(f"{path}:{lines.get(loc, 1)}: {_dotted(loc)}: {message}")

    if config.task.name != path.stem:
        raise fail(("task", "name"), f"is {config.task.name!r} but the file is {path.name}; they must match")
    for name in config.fields:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            raise fail(("fields", name), "a field name must be lower_snake_case (it becomes a metric name)")
    missing = [p for p in REQUIRED_PROFILES if p not in config.profiles]
    if missing:
        raise fail(("profiles",), f"must define {', '.join(REQUIRED_PROFILES)}; missing {', '.join(missing)}")
    metrics = metric_names(config.fields)
    if config.search.objective.metric not in metrics:
        raise fail(
            ("search", "objective", "metric"),
            f"{config.search.objective.metric!r} is not a metric of this task; expected one of {', '.join(metrics)}",
        )
    for key, param in config.search.params.items():
        values = param.choices if isinstance(param, CategoricalParam) else (param.low, param.high)
        for index, value in enumerate(values):
            try:
                apply_overrides(config.recipe, {key: value})
            except HarnessError as error:
                loc = ("search", "params", key) + (("choices", index) if isinstance(param, CategoricalParam) else ())
                raise fail(loc, f"{value!r} is not a valid value: {error}") from None


def _key_lines(node: yaml.Node, path: tuple[Any, ...], lines: dict[tuple[Any, ...], int], file: Path) -> dict:
    """Map every key path in the YAML document to its 1-based line; duplicate keys are errors, not overwrites."""
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                raise HarnessError(
                    f"{file}:{key_node.start_mark.line + 1}: key {_dotted((*path, key))!r} appears twice"
                )
            seen.add(key)
            lines[(*path, key)] = key_node.start_mark.line + 1
            _key_lines(value_node, (*path, key), lines, file)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _key_lines(item, (*path, index), lines, file)
    return lines


def _describe(error: ValidationError, path: Path, lines: dict[tuple[Any, ...], int]) -> str:
    """Turn pydantic's errors into `file:line: key: what was wrong, what was expected` lines."""
    messages = []
    for item in error.errors():
        # Discriminated unions add the tag (`float`) to the location; it is not a key in the file.
        loc = tuple(part for part in item["loc"] if not (isinstance(part, str) and part in _UNION_TAGS))
        line = next((lines[loc[:n]] for n in range(len(loc), -1, -1) if loc[:n] in lines), 1)
        key = _dotted(loc) or "(top level)"
        if item["type"] == "extra_forbidden":
            allowed = _allowed_keys(TaskConfig, loc[:-1])
            hint = f"; expected one of: {', '.join(allowed)}" if allowed else ""
            messages.append(f"{path}:{line}: unknown key {key!r}{hint}")
        elif item["type"] == "missing":
            messages.append(f"{path}:{line}: missing required key {key!r}")
        else:
            message = item["msg"].removeprefix("Value error, ")
            shown = item.get("input")
            got = "" if isinstance(shown, dict | list) else f" (got {shown!r})"
            messages.append(f"{path}:{line}: {key}: {message}{got}")
    return "\n".join(messages)


_UNION_TAGS = {"categorical", "int", "float"}


def _allowed_keys(model: Any, loc: tuple[Any, ...]) -> list[str]:
    """The keys the model declares at `loc`, for 'expected one of' hints."""
    annotation = model
    for part in loc:
        annotation = _unwrap(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if part not in annotation.model_fields:
                return []
            annotation = annotation.model_fields[part].annotation
        elif get_origin(annotation) in (dict, tuple, list):
            annotation = get_args(annotation)[-1] if get_origin(annotation) is dict else get_args(annotation)[0]
        else:
            return []
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return list(annotation.model_fields)
    return []


def _unwrap(annotation: Any) -> Any:
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) is Union:
        models = [a for a in get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
        if len(models) == 1:
            return models[0]
    return annotation


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class TrialConfig(Strict):
    """Everything one trial needs, fully resolved: logged with every run so any run can be re-created."""

    task: str
    profile: str
    model: str
    recipe: Recipe
    budget: BudgetSpec


def parse_set_options(options: list[str]) -> dict[str, Any]:
    """`--set key=value` options to a dict; values read as JSON where they can be (numbers, true, null)."""
    overrides: dict[str, Any] = {}
    for option in options:
        key, separator, raw = option.partition("=")
        if not separator or not key.strip():
            raise HarnessError(f"--set {option!r}: expected key=value, e.g. --set lora.r=32")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        overrides[key.strip()] = value
    return overrides


def resolve_trial_config(
    task: TaskConfig,
    *,
    profile: str,
    model: str | None = None,
    overrides: dict[str, Any] | None = None,
    refit: bool = False,
) -> TrialConfig:
    """Apply a profile, a model choice and `--set` overrides (recipe keys, or `budget.<key>`) to the task.

    `refit` takes the profile's refit budget (retraining a winner before registration) instead of its search budget.
    """
    if profile not in task.profiles:
        raise HarnessError(f"unknown profile {profile!r}; the task defines {', '.join(task.profiles)} (and auto)")
    chosen = task.profiles[profile]
    recipe_overrides = {k: v for k, v in (overrides or {}).items() if not k.startswith("budget.")}
    budget_overrides = {k.removeprefix("budget."): v for k, v in (overrides or {}).items() if k.startswith("budget.")}
    unknown = sorted(set(budget_overrides) - set(BudgetSpec.model_fields))
    if unknown:
        raise HarnessError(
            f"unknown budget key(s) {', '.join('budget.' + k for k in unknown)};"
            f" known: {', '.join('budget.' + k for k in BudgetSpec.model_fields)}"
        )
    budget_data = {**(chosen.refit if refit else chosen.budget).model_dump(), **budget_overrides}
    # Steps and epochs exclude each other: setting one replaces the profile's other.
    for given, other in (("max_steps", "epochs"), ("epochs", "max_steps")):
        if given in budget_overrides and other not in budget_overrides:
            budget_data[other] = None
    try:
        budget = BudgetSpec.model_validate(budget_data)
    except ValidationError as error:
        problems = "; ".join(f"budget.{_dotted(e['loc'])}: {e['msg']}" for e in error.errors())
        raise HarnessError(f"invalid budget value: {problems}") from None
    return TrialConfig(
        task=task.task.name,
        profile=profile,
        model=model or chosen.model,
        recipe=apply_overrides(task.recipe, recipe_overrides),
        budget=budget,
    )


def flat_params(config: TrialConfig) -> dict[str, Any]:
    """The trial config as stable dotted names (`lora.r`, `train.learning_rate`, `budget.batch_size`)."""
    params: dict[str, Any] = {"task": config.task, "profile": config.profile, "model": config.model}
    params.update(recipe_values(config.recipe))
    params.update({f"budget.{k}": v for k, v in config.budget.model_dump().items()})
    return params
