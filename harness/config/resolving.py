"""From a task and what a command asked for to one trial's plain values: `--set` overrides, a profile's budget,
the dotted names runs are logged under, and sizes such as `--max-memory 24G`."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ByteSize, TypeAdapter, ValidationError

from harness.config.schema import BudgetSpec, CategoricalParam, Recipe, TaskConfig, TrialConfig
from harness.errors import HarnessError

MB = 1024 * 1024


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
        problems = "; ".join(f"{dotted(e['loc'])}: {e['msg']} (got {e['input']!r})" for e in error.errors())
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
    task = for_profile(task, profile)
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
        problems = "; ".join(f"budget.{dotted(e['loc'])}: {e['msg']}" for e in error.errors())
        raise HarnessError(f"invalid budget value: {problems}") from None
    recipe = apply_overrides(task.recipe, recipe_overrides)
    if chosen.quantization and recipe.quantization not in chosen.quantization:
        raise HarnessError(
            f"quantization={recipe.quantization}: profile {profile} trains in {', '.join(chosen.quantization)} only"
            f" (its model does not fit its GPU otherwise; `harness plan {task.task.name} --profile {profile}`)"
        )
    return TrialConfig(
        task=task.task.name,
        profile=profile,
        model=model or chosen.model,
        recipe=recipe,
        budget=budget,
        gpus=chosen.gpus_per_trial,
    )


def for_profile(task: TaskConfig, profile: str) -> TaskConfig:
    """The task as `profile` trains and searches it: where the profile allows only some base quantizations, the
    space offers only those of its choices and the seed recipe, in another, takes the profile's first."""
    if profile not in task.profiles:
        raise HarnessError(f"unknown profile {profile!r}; the task defines {', '.join(task.profiles)} (and auto)")
    allowed = task.profiles[profile].quantization
    if not allowed:
        return task
    recipe = task.recipe
    if recipe.quantization not in allowed:
        recipe = recipe.model_copy(update={"quantization": allowed[0]})
    params = dict(task.search.params)
    if isinstance(space := params.get("quantization"), CategoricalParam):
        kept = tuple(choice for choice in space.choices if choice in allowed)
        if not kept:
            raise HarnessError(
                f"profile {profile} allows quantization {', '.join(allowed)}, none of the search space's"
                f" ({', '.join(map(str, space.choices))}) in {task.file}"
            )
        params["quantization"] = space.model_copy(update={"choices": kept})
    return task.model_copy(update={"recipe": recipe, "search": task.search.model_copy(update={"params": params})})


def flat_params(config: TrialConfig) -> dict[str, Any]:
    """The trial config as stable dotted names (`lora.r`, `train.learning_rate`, `budget.batch_size`)."""
    params: dict[str, Any] = {"task": config.task, "profile": config.profile, "model": config.model}
    params["gpus"] = config.gpus
    params.update(recipe_values(config.recipe))
    params.update({f"budget.{k}": v for k, v in config.budget.model_dump().items()})
    return params


def parse_memory_size(text: str) -> float:
    """`24GiB`, `24G`, `1500MB` -> megabytes (MiB). As pydantic's ByteSize reads them: G and GB are 10^9 bytes,
    GiB is 2^30."""
    try:
        return TypeAdapter(ByteSize).validate_python(text) / MB
    except ValidationError:
        raise HarnessError(
            f"cannot read memory size {text!r}; expected a number with a unit, like 24GiB, 24G or 1500MB"
        ) from None


def dotted(loc: tuple[Any, ...]) -> str:
    """A key's path as the YAML and `--set` write it: `search.params.lora.r`, `eval_sets[0].path`."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
