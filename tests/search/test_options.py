"""What a search is asked to do: refused when it means nothing, and passed whole to a pool's workers."""

from __future__ import annotations

import pytest

from harness.errors import HarnessError
from harness.search.options import SearchOptions

pytestmark = pytest.mark.fast


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"trials": 0}, "--trials must be at least 1"),
        ({"trials": 2, "max_failures": 0}, "--max-failures must be at least 1"),
        ({"trials": 2, "timeout_seconds": -1}, "--timeout must be a positive number"),
        ({"trials": 2, "max_memory_mb": 0}, "--max-memory must be a positive size"),
    ],
)
def test_search_options_that_mean_nothing_are_refused(options, message):
    with pytest.raises(HarnessError, match=message):
        SearchOptions(profile="smoke", **options)


def test_a_pool_worker_is_given_every_option_that_differs_from_the_default():
    """A field added to SearchOptions without a way to reach the workers fails here."""
    import dataclasses

    not_passed = {"storage", "worker_index"}  # the environment carries the storage; each worker gets its index
    changed = {
        "trials": 7, "profile": "gpu", "model": "tiny:llama", "study_name": "s", "sampler": "random",
        "pruner": "none", "seed": 3, "timeout_seconds": 60.0, "max_memory_mb": 2048.0, "max_failures": 5,
        "register": False,
    }  # fmt: skip
    fields = {f.name for f in dataclasses.fields(SearchOptions)}
    assert fields == set(changed) | not_passed
    default = SearchOptions().worker_arguments("legal")
    for name, value in changed.items():
        arguments = SearchOptions(**{name: value}).worker_arguments("legal")
        assert arguments != default, f"{name} does not reach the workers"
    everything = SearchOptions(**changed).worker_arguments("legal")
    assert everything == [
        "search", "legal", "--trials", "7", "--profile", "gpu", "--study", "s", "--sampler", "random",
        "--pruner", "none", "--seed", "3", "--max-failures", "5", "--model", "tiny:llama", "--timeout", "60.0",
        "--max-memory", "2048.0M", "--no-register",
    ]  # fmt: skip


def test_an_unknown_sampler_or_pruner_is_refused_before_anything_starts():
    with pytest.raises(HarnessError, match="unknown sampler 'bayes'; expected tpe, random, gp"):
        SearchOptions(sampler="bayes")
    with pytest.raises(HarnessError, match="unknown pruner 'asha'; expected halving, hyperband, median, none"):
        SearchOptions(pruner="asha")
