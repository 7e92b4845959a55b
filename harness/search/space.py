"""The search space as Optuna sees it, built from the task's YAML (`search:`): the parameters a trial samples, the
sampler, the pruner, and the seed recipe written in the space's own parameters (trial 0 of every study)."""

from __future__ import annotations

from typing import Any

import numpy
import optuna

from harness.config import CategoricalParam, FloatParam, TaskConfig, recipe_values
from harness.errors import HarnessError
from harness.search.options import SearchOptions


def sampler(options: SearchOptions, *, seed: int) -> optuna.samplers.BaseSampler:
    if options.sampler == "tpe":
        # Constant liar: concurrent workers do not all sample the same point while trials are running.
        return optuna.samplers.TPESampler(multivariate=True, group=True, seed=seed, constant_liar=True)
    if options.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.GPSampler(seed=seed)  # `SearchOptions` admits no other


def trial_seed(study_seed: int, trial_number: int) -> int:
    """The seed trial `trial_number` of a study seeded `study_seed` samples with: a seed of its own per trial (workers
    sharing a study never repeat each other's random draws, as same-seeded samplers would), reproducible, and mixed
    so that another study seed draws other points. (`study_seed + trial_number` made study 1's trial n study 0's
    trial n + 1: "three seeds" were one sequence shifted.)"""
    return int(numpy.random.SeedSequence([study_seed, trial_number]).generate_state(1)[0])


def pruner(options: SearchOptions, task: TaskConfig, total_steps: int) -> optuna.pruners.BasePruner:
    """The pruner; every one of them sees the validation loss at the same rungs (`PruningSpec.rung_steps`)."""
    rungs = task.search.pruning.rung_steps(total_steps)
    first, factor = (rungs[0] if rungs else total_steps), task.search.pruning.reduction_factor
    if options.pruner == "none":
        return optuna.pruners.NopPruner()
    if options.pruner == "halving":
        # Asynchronous successive halving: a trial goes on past a rung when it is in the best 1/factor of the
        # trials that reached that rung so far.
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=first, reduction_factor=factor)
    if options.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=first, max_resource=total_steps, reduction_factor=factor)
    # "median": `SearchOptions` admits no other.
    return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)


def suggest(trial: optuna.Trial, task: TaskConfig) -> dict[str, Any]:
    """One point of the space, sampled for `trial`, keyed as `search.params` names them."""
    values: dict[str, Any] = {}
    for key, param in task.search.params.items():
        if isinstance(param, CategoricalParam):
            values[key] = trial.suggest_categorical(key, list(param.choices))
        elif isinstance(param, FloatParam):
            values[key] = trial.suggest_float(key, param.low, param.high, log=param.log)
        else:
            values[key] = trial.suggest_int(key, param.low, param.high, step=param.step, log=param.log)
    return values


def seed_params(task: TaskConfig) -> dict[str, Any]:
    """The seed recipe, in the search's own parameters (alpha as alpha_ratio where the space samples that)."""
    values = recipe_values(task.recipe)
    return {key: values[key] for key in task.search.params}


def check_seed_in_space(task: TaskConfig) -> None:
    """Trial 0 is the seed recipe, so the space must contain it: otherwise the study could not answer
    "did the search beat the standard recipe?"."""
    for key, value in seed_params(task).items():
        param = task.search.params[key]
        inside = value in param.choices if isinstance(param, CategoricalParam) else param.low <= value <= param.high
        if not inside:
            allowed = (
                ", ".join(map(str, param.choices))
                if isinstance(param, CategoricalParam)
                else f"{param.low}..{param.high}"
            )
            raise HarnessError(
                f"the seed recipe's {key}={value} is outside the search space ({allowed}) in {task.file};"
                " every study starts with the seed recipe, so widen search.params or change the recipe"
            )
