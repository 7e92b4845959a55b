"""The full-budget evidence (bench/full_budget.py): which recipes it refits, the reference recipes it names, and the
rank correlation it reports."""

from __future__ import annotations

import importlib.util
import json

import pytest
import yaml

from harness.config import apply_overrides
from tests.conftest import LEGAL_YAML

pytestmark = pytest.mark.fast  # the fast tier: no process started, no training (make test-fast)

ROOT = LEGAL_YAML.parent.parent
_spec = importlib.util.spec_from_file_location("full_budget", ROOT / "bench" / "full_budget.py")
assert _spec is not None and _spec.loader is not None
full_budget = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(full_budget)

STUDY = json.loads((ROOT / "results" / "legal-cpu.json").read_text())  # the committed study's page


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
    assert names == ["trial 25", "trial 16", "trial 21", "trial 2", "seed recipe"]  # 25 is tuned and top-1
    assert chosen[0]["kind"] == "tuned" and chosen[0]["trial_value"] == pytest.approx(0.4543, abs=1e-4)
    assert chosen[0]["set"] == {
        "lora.r": 32, "lora.alpha_ratio": 2.0, "lora.target_modules": "mlp",
        "train.learning_rate": 0.0030390994, "quantization": "nf4",
    }  # fmt: skip
    assert chosen[3]["kind"] == "pruned" and "pruned at step 2" in chosen[3]["source"]
    assert chosen[4]["set"] == {}


def test_spearman_is_one_for_the_same_order_minus_one_for_the_reverse_and_shares_ranks_between_ties():
    assert full_budget.spearman([0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.9, 0.95]) == pytest.approx(1.0)
    assert full_budget.spearman([0.1, 0.2, 0.3, 0.4], [0.9, 0.8, 0.7, 0.1]) == pytest.approx(-1.0)
    # ranks 1.5, 1.5, 3, 4 against 1, 2, 3, 4: the tie is neither order
    assert full_budget.spearman([0.0, 0.0, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4]) == pytest.approx(0.9487, abs=1e-4)
