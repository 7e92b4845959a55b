"""The search space as Optuna sees it: what a trial samples and from which seed."""

from __future__ import annotations

import optuna
import pytest

from harness.config import load_task
from harness.search import space
from harness.search.options import SearchOptions

pytestmark = pytest.mark.fast


def drawn(study_seed: int, trials: int = 10) -> list[dict]:
    """The recipes a one-worker random search of the legal task seeded `study_seed` samples for trials 1..trials
    (trial 0 is the queued seed recipe), each from its own trial seed as the objective draws them."""
    task, options = load_task("legal"), SearchOptions(sampler="random")
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial(space.seed_params(task))
    study.tell(study.ask(), 0.0)
    recipes = []
    for number in range(1, trials + 1):
        study.sampler = space.sampler(options, seed=space.trial_seed(study_seed, number))
        trial = study.ask()
        assert trial.number == number
        recipes.append(space.suggest(trial, task))
        study.tell(trial, 0.0)
    return recipes


def test_a_study_seed_reproduces_its_draws_and_another_seed_draws_other_points():
    assert drawn(0) == drawn(0)
    first, second = drawn(0), drawn(1)
    # Not one recipe in common: seeding trial n with `study seed + n` made seed 1's trials seed 0's, one later.
    assert not [recipe for recipe in second if recipe in first]
    assert len({repr(r) for r in first}) == len(first)  # and no trial repeats another's draw


def test_trial_seeds_are_valid_numpy_seeds_and_differ_per_trial_and_per_study():
    seeds = {(s, n): space.trial_seed(s, n) for s in range(3) for n in range(50)}
    assert len(set(seeds.values())) == len(seeds)
    assert all(0 <= seed < 2**32 for seed in seeds.values())
