"""Registration and promotion on a real smoke study: real merges, a real MLflow registry, real evaluations."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient
from safetensors import safe_open

from harness import registry, tracking
from harness.errors import HarnessError
from harness.registry import gate
from harness.search import SearchOptions, run_search

FIELDS = ["plaintiff", "initiator"]


def metrics(f1_micro: float, plaintiff: float, initiator: float) -> dict[str, float]:
    return {"f1_micro": f1_micro, "f1_plaintiff": plaintiff, "f1_initiator": initiator}


def test_the_first_promotion_needs_no_champion():
    assert gate(metrics(0.1, 0.1, 0.1), None, FIELDS, 0.01).passed


def test_the_gate_passes_a_candidate_within_tolerance():
    result = gate(metrics(0.795, 0.79, 0.80), metrics(0.80, 0.80, 0.80), FIELDS, 0.01)
    assert result.passed and result.reasons == []
    assert result.rows[0] == ("f1_micro", 0.795, 0.80)


def test_the_gate_refuses_an_f1_micro_drop_beyond_tolerance():
    result = gate(metrics(0.78, 0.80, 0.80), metrics(0.80, 0.80, 0.80), FIELDS, 0.01)
    assert not result.passed
    assert result.reasons == ["f1_micro drops by 0.0200 (> tolerance 0.01)"]


def test_the_gate_refuses_one_field_dropping_beyond_twice_the_tolerance():
    result = gate(metrics(0.80, 0.90, 0.70), metrics(0.80, 0.80, 0.80), FIELDS, 0.01)
    assert not result.passed
    assert result.reasons == ["f1_initiator drops by 0.1000 (> 2 x tolerance = 0.02)"]


@pytest.fixture(scope="module")
def smoke_study(legal, tmp_path_factory):
    """One smoke search (the seed recipe, nf4) in its own mlruns; the registry tests run in order on it."""
    mlruns = tmp_path_factory.mktemp("registry") / "mlruns"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HARNESS_MLRUNS", str(mlruns))
        tracking.configure()
        summary = run_search(legal, SearchOptions(trials=1, profile="smoke"))
        yield summary


def test_registering_refits_the_best_trial_merges_it_and_makes_version_1_the_challenger(legal, smoke_study):
    registration = registry.register_trial(legal, study_name="legal-smoke")
    client = MlflowClient()
    assert (registration.name, registration.version, registration.trial) == ("legal-extractor", 1, 0)
    assert tracking.model_aliases("legal-extractor") == {"challenger": 1}

    refit_run = client.get_run(registration.run_id)
    assert refit_run.info.status == "FINISHED"
    assert refit_run.data.tags["harness.refit"] == "true"
    assert refit_run.data.tags["mlflow.parentRunId"] == smoke_study.parent_run_id
    assert refit_run.data.params["budget.max_steps"] == "4"  # the smoke profile's refit budget, not its search's
    # The seed recipe is nf4: the merged model's validation figures sit beside the adapter's.
    assert {"merged_f1_micro", "test_f1_micro", "f1_micro"} <= set(refit_run.data.metrics)
    assert registration.test["n"] == 200

    version = client.get_model_version("legal-extractor", "1")
    assert version.run_id == registration.run_id
    tags = version.tags
    assert tags["harness.study"] == "legal-smoke" and tags["harness.trial"] == "0"
    assert tags["harness.base_model"] == "tiny:llama" and tags["harness.quantization"] == "nf4"
    assert float(tags["test.f1_micro"]) == pytest.approx(registration.test["f1_micro"], abs=1e-4)
    assert "merged_validation.f1_micro" in tags and "validation.f1_micro" in tags


def test_the_registered_version_is_a_merged_16_bit_safetensors_model_with_its_chat_template(legal, smoke_study):
    model_dir = registry.materialise_version("legal-extractor", 1)
    assert (model_dir / "chat_template.jinja").exists() and (model_dir / "tokenizer.json").exists()
    with safe_open(str(model_dir / "model.safetensors"), "pt") as weights:
        names = list(weights.keys())
        assert not [n for n in names if "lora" in n]  # merged: plain Llama weights only
        assert str(weights.get_tensor(names[0]).dtype) == "torch.bfloat16"


def test_promoting_the_first_version_makes_it_champion_and_records_the_decision(legal, smoke_study):
    promotion = registry.promote(legal)
    assert (promotion.candidate, promotion.champion, promotion.verdict) == (1, None, "promoted")
    assert tracking.model_aliases("legal-extractor") == {"challenger": 1, "champion": 1}
    client = MlflowClient()
    decision = client.get_run(promotion.run_id)
    assert decision.data.tags["harness.kind"] == "promotion"
    assert decision.data.tags["harness.promotion.verdict"] == "promoted"
    assert decision.data.params["candidate_version"] == "1"
    assert "candidate_f1_micro" in decision.data.metrics
    assert client.get_model_version("legal-extractor", "1").tags["harness.promotion.verdict"] == "promoted"


def test_a_second_version_promoted_keeps_the_old_champion_as_previous_champion(legal, smoke_study):
    registration = registry.register_trial(legal, study_name="legal-smoke", refit=False)
    assert registration.version == 2 and not registration.refit
    # Without a refit the version is logged on the trial's own run.
    assert registration.run_id == smoke_study.best["mlflow_run_id"]
    assert MlflowClient().get_run(registration.run_id).info.status == "FINISHED"
    promotion = registry.promote(legal, tolerance=0.0)
    assert promotion.champion == 1 and promotion.candidate == 2
    assert promotion.result.rows[0][2] is not None  # the champion was evaluated too
    assert tracking.model_aliases("legal-extractor") == {"challenger": 2, "champion": 2, "previous-champion": 1}


def test_promoting_the_champion_again_is_an_error(legal, smoke_study):
    with pytest.raises(HarnessError, match="version 2 is already @champion"):
        registry.promote(legal, version=2)


def test_registering_an_unknown_study_names_the_studies_there(legal, smoke_study):
    with pytest.raises(HarnessError, match=r"no study 'legal-gpu'.*studies there: legal-smoke"):
        registry.register_trial(legal, study_name="legal-gpu")


def test_registering_a_trial_that_is_not_complete_lists_the_complete_ones(legal, smoke_study):
    with pytest.raises(HarnessError, match=r"trial 7 of study 'legal-smoke' is not a complete trial.*: 0"):
        registry.register_trial(legal, study_name="legal-smoke", trial_number=7)
