"""The full-budget evidence (bench/full_budget.py): which recipes it refits, the reference recipes it names, and the
rank correlation it reports."""

from __future__ import annotations

import importlib.util

import pytest
import yaml

from harness.config import apply_overrides
from harness.predictions import write_predictions
from harness.task_data import load_split
from tests.conftest import LEGAL_YAML

pytestmark = pytest.mark.fast  # the fast tier: no process started, no training (make test-fast)

ROOT = LEGAL_YAML.parent.parent
_spec = importlib.util.spec_from_file_location("full_budget", ROOT / "bench" / "full_budget.py")
assert _spec is not None and _spec.loader is not None
full_budget = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(full_budget)


def row(trial: int, state: str, value: float | None, steps: int, **recipe: object) -> dict[str, object]:
    """A leaderboard row as `harness results` writes it into the study's JSON."""
    keys = ("lora.r", "lora.alpha_ratio", "lora.target_modules", "train.learning_rate", "quantization")
    defaults = dict(zip(keys, (16, 2.0, "attn", 2e-4, "nf4"), strict=True))
    values = {**defaults, **{key.replace("__", "."): v for key, v in recipe.items()}}
    return {"trial": trial, "state": state, "f1_micro": value, "seed_recipe": trial == 0, "steps": steps, **values}


STUDY = {
    "study": "legal-cpu",
    "leaderboard": [
        row(0, "COMPLETE", 0.0, 12),
        row(1, "COMPLETE", 0.279, 12, quantization="int8"),
        row(2, "PRUNED", None, 2, lora__r=8),
        row(3, "PRUNED", None, 8, lora__r=64),
        row(4, "COMPLETE", 0.378, 12, lora__r=32),
        row(5, "PRUNED", None, 2, lora__r=4),
        row(6, "COMPLETE", 0.454, 12, lora__r=32, lora__target_modules="mlp", train__learning_rate=3e-3),
        row(7, "COMPLETE", 0.392, 12, lora__target_modules="all"),
    ],
}


def test_every_reference_recipe_is_a_valid_recipe_of_the_task_and_says_where_it_comes_from(legal):
    references = yaml.safe_load((ROOT / "bench" / "reference_recipes.yaml").read_text())
    assert {"axolotl-qlora", "llama-factory-lora"} <= set(references)
    for name, reference in references.items():
        assert reference["source"].startswith("https://github.com/") and "/blob/" in reference["source"], name
        recipe = apply_overrides(legal.recipe, reference["set"])  # raises on a key or value harness does not take
        assert recipe != legal.recipe, name


def test_the_tuned_recipe_is_the_best_trial_and_is_refit_once_with_the_top_three():
    chosen = full_budget.recipes(["tuned", "top-3", "pruned", "seed"], STUDY)
    names = [r["name"] for r in chosen]
    assert names == ["trial 6", "trial 7", "trial 4", "trial 2", "seed recipe"]  # 6 is tuned and top-1
    assert chosen[0]["kind"] == "tuned" and chosen[0]["trial_value"] == 0.454
    assert chosen[0]["set"] == {
        "lora.r": 32, "lora.alpha_ratio": 2.0, "lora.target_modules": "mlp", "train.learning_rate": 3e-3,
        "quantization": "nf4",
    }  # fmt: skip
    # the first trial pruned at the first rung (step 2), not the one pruned later
    assert chosen[3]["kind"] == "pruned" and chosen[3]["source"] == "legal-cpu, pruned at step 2"
    assert chosen[4]["set"] == {}


def test_spearman_is_one_for_the_same_order_minus_one_for_the_reverse_and_shares_ranks_between_ties():
    assert full_budget.spearman([0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.9, 0.95]) == pytest.approx(1.0)
    assert full_budget.spearman([0.1, 0.2, 0.3, 0.4], [0.9, 0.8, 0.7, 0.1]) == pytest.approx(-1.0)
    # ranks 1.5, 1.5, 3, 4 against 1, 2, 3, 4: the tie is neither order
    assert full_budget.spearman([0.0, 0.0, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4]) == pytest.approx(0.9487, abs=1e-4)


def run(name: str, kind: str, f1: float, *, seed: int = 0, train_seconds: float = 600.0) -> dict[str, object]:
    """A refit's row as bench/full_budget.py records it."""
    return {"name": name, "kind": kind, "seed": seed, "train_seconds": train_seconds, "set": {}, "source": "here",
            "eval": {"test-v1": {"f1_micro": f1, **dict.fromkeys(full_budget.SHOWN[1:], 0.5)}}}  # fmt: skip


def figures(*runs: dict[str, object]) -> dict[str, object]:
    machine = {"cpu": "AMD EPYC", "cores": 2, "avx512_bf16": True, "torch": "2.13"}
    return {
        "study": "legal-cpu", "profile": "cpu", "eval_sets": ["test-v1"], "machine": machine, "runs": list(runs),
        "budget": {"train_examples": 500, "epochs": 1.0, "batch_size": 4},
        "studies": [{"study": "legal-cpu", "machine": "AMD EPYC", "avx512_bf16": True, "to_registered_seconds": 2760,
                     "registered": {"test-v1": 0.9}}],
    }  # fmt: skip


def test_the_page_opens_with_what_the_search_buys_over_the_best_well_known_recipe_and_what_it_cost():
    text = full_budget.page(
        figures(run("trial 6", "tuned", 0.9), run("seed recipe", "seed", 0.45), run("axolotl", "reference", 0.5))
    )
    assert (
        "the searched recipe (trial 6) scores **0.900** test-v1 f1_micro; the best well-known recipe (axolotl)"
        " scores 0.500: the search buys **+0.400**. The search that found it took 46 min from its start"
    ) in text
    assert text.index("## What the search buys") < text.index("## Side by side")


def test_a_search_that_buys_nothing_says_so():
    text = full_budget.page(figures(run("trial 6", "tuned", 0.5), run("axolotl", "reference", 0.52)))
    assert "the search buys nothing here (-0.020)" in text


def test_without_a_well_known_recipe_at_the_tuned_seed_the_page_claims_nothing():
    text = full_budget.page(figures(run("trial 6", "tuned", 0.9), run("seed recipe", "seed", 0.45, seed=1)))
    assert "What the search buys" not in text


def test_initiator_answers_are_counted_by_how_the_ruling_words_the_initiator(legal, tmp_path):
    """Answers that always say `plaintiff` are right exactly on the plaintiff-initiated rulings of each group."""
    test_v1 = load_split(legal, "test-v1")
    answers = tmp_path / "answers.jsonl"
    write_predictions(answers, [e.id for e in test_v1], ['{"initiator": "plaintiff"}'] * len(test_v1))
    counts = full_budget.initiator_by_wording(legal, "test-v1", answers)
    assert set(counts) == {"appeal, by name", "appeal, by role", "claim or counterclaim"}
    assert sum(total for _, total in counts.values()) == 200
    appeals = sum(counts[group][1] for group in ("appeal, by name", "appeal, by role"))
    assert appeals == 58  # the stored set's appeals (bench/initiator_errors.py --recoverable)
    plaintiff_initiated = sum(e.fields["initiator"] == "plaintiff" for e in test_v1)
    assert sum(right for right, _ in counts.values()) == plaintiff_initiated == 128


def test_the_initiator_section_shows_each_explanations_figure():
    initiator = {"appeal, by name": [10, 23], "appeal, by role": [33, 35], "claim or counterclaim": [140, 142]}
    tuned = {
        **run("trial 6", "tuned", 0.9),
        "answers": "results/answers/x/trial-6-seed0-test-v1.jsonl",
        "initiator": initiator,
    }
    text = full_budget.page(
        {
            **figures(tuned),
            "initiator_rules": {"appeals": 58, "named": 27, "right": 27},
            "learning_curve": [
                {
                    "file": "lc.json",
                    "machine": "AMD EPYC",
                    "train_examples": 2000,
                    "acc_initiator": 0.925,
                    "f1_micro": 0.989,
                },
            ],
        }
    )
    assert "of 58 appeals in test-v1, 27 name the appellant by its company" in text
    assert "reads the appellant's role right from the text in 27 of those 27" in text
    assert "| trial 6 | 0 | 0.500 | 10 / 23 | 33 / 35 | 140 / 142 |" in " ".join(text.split())
    assert "(results/lc.json, AMD EPYC): acc_initiator (f1_micro) at 2,000 examples 0.925 (0.989)" in text
