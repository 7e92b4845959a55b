"""Registration and promotion on a real smoke study: real merges, a real MLflow registry, real evaluations."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient
from peft import PeftModel
from safetensors import safe_open

from harness import machine, model_loading, registry, tracking, training
from harness.config import LoraSpec, TaskConfig, load_task
from harness.errors import HarnessError
from harness.promotion import gate, promote, stored_test_metrics
from harness.regression import regress
from tests.conftest import SMOKE_TEST_EXAMPLES

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


@pytest.fixture
def task(smoke_study):
    """legal, its stored test set cut to 32 decisions: every registration and promotion here evaluates on it."""
    return smoke_study.task


# Each test below starts from its own copy of the shared smoke study (`smoke_store`): two trials, the best refit
# and registered as v1 @challenger, nothing promoted. No test depends on what another one did.


def test_registering_refits_the_best_trial_merges_it_and_makes_version_1_the_challenger(task, smoke_study, smoke_store):
    registration = smoke_study.registration
    client = MlflowClient()
    assert (registration.name, registration.version) == ("legal-extractor", 1)
    assert registration.source == f"trial {smoke_study.summary.best['trial']} of legal-smoke"
    assert tracking.model_aliases("legal-extractor") == {"challenger": 1}

    refit_run = client.get_run(registration.run_id)
    assert refit_run.info.status == "FINISHED"
    assert refit_run.data.tags["harness.refit"] == "true"
    assert refit_run.data.tags["mlflow.parentRunId"] == smoke_study.summary.parent_run_id
    assert refit_run.data.params["budget.max_steps"] == "4"  # the smoke profile's refit budget, not its search's
    assert {"test_f1_micro", "f1_micro"} <= set(refit_run.data.metrics)
    assert registration.test["n"] == SMOKE_TEST_EXAMPLES

    version = client.get_model_version("legal-extractor", "1")
    assert version.run_id == registration.run_id
    tags = version.tags
    assert tags["harness.study"] == "legal-smoke" and tags["harness.trial"] == str(smoke_study.summary.best["trial"])
    assert tags["harness.source"] == "adapter" and tags["harness.refit"] == "true"
    assert tags["harness.base_model"] == "tiny:llama"
    assert float(tags["test.f1_micro"]) == pytest.approx(registration.test["f1_micro"], abs=1e-4)
    assert "validation.f1_micro" in tags


def test_a_quantized_trial_is_scored_again_once_merged_and_served_unmerged_on_its_dequantized_base(task, smoke_store):
    seed_trial = 0  # the seed recipe is nf4: the merged model's validation figures sit beside the adapter's
    registration = registry.register_trial(task, study_name="legal-smoke", trial_number=seed_trial, refit=False)
    version = MlflowClient().get_model_version("legal-extractor", str(registration.version))
    assert version.tags["harness.quantization"] == "nf4"
    assert "merged_validation.f1_micro" in version.tags and registration.merged_validation["n"] > 0

    # `harness serve --lora` serves the adapter on the 4-bit weights it was trained against, dequantized once: it
    # computes what the merged version does, which the adapter on the unquantized base does not.
    base_dir = registry.materialise_lora_base("legal-extractor", registration.version)
    assert base_dir != model_loading.resolve_model("tiny:llama").path
    assert "quantization_config" not in json.loads((base_dir / "config.json").read_text())
    adapter_dir = registry.materialise_adapter("legal-extractor", registration.version)
    merged_dir = registry.materialise_version("legal-extractor", registration.version)
    ids = torch.randint(0, 1000, (2, 12))

    def logits(model_dir: Path, adapter: Path | None = None) -> torch.Tensor:
        model = model_loading.load_causal_lm(model_loading.resolve_model(str(model_dir)), dtype="float32")
        model = PeftModel.from_pretrained(model, adapter) if adapter else model
        with torch.no_grad():
            return model.eval()(input_ids=ids).logits

    merged = logits(merged_dir)
    error = (logits(base_dir, adapter_dir) - merged).abs().mean().item()
    unquantized_error = (
        (logits(model_loading.resolve_model("tiny:llama").path, adapter_dir) - merged).abs().mean().item()
    )
    assert error < unquantized_error / 4, (error, unquantized_error)
    written = (base_dir / "model.safetensors").stat().st_mtime_ns
    assert registry.materialise_lora_base("legal-extractor", registration.version) == base_dir  # written once
    assert (base_dir / "model.safetensors").stat().st_mtime_ns == written


def test_a_quantized_adapter_is_merged_into_the_weights_it_was_trained_against(tmp_path):
    """An nf4 adapter learned to correct the 4-bit weights: the merged model computes what the trained one did,
    which a merge into the unquantized weights does not (on the real model: validation f1_micro 0.942 -> 0.871)."""
    reference = model_loading.resolve_model("tiny:llama")
    trained = training.attach_lora(
        model_loading.load_for_training(reference, quantization="nf4"),
        LoraSpec(r=8, alpha=16, target_modules="all"),
        quantization="nf4",
        gradient_checkpointing=False,
        seed=0,
    )
    with torch.no_grad():  # a trained adapter: B is no longer zero
        for name, parameter in trained.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.02)
    trained.save_pretrained(tmp_path / "adapter", safe_serialization=True)
    ids = torch.randint(0, 1000, (2, 12))
    trained.eval()
    with torch.no_grad():
        expected = trained(input_ids=ids).logits.float()

    tokenizer = model_loading.load_tokenizer(reference)
    merged_dir = registry.merge_into_base(reference, tmp_path / "adapter", tmp_path / "merged", tokenizer,
                                          quantization="nf4")  # fmt: skip
    merged = model_loading.load_causal_lm(model_loading.resolve_model(str(merged_dir)), dtype="float32")
    unquantized = PeftModel.from_pretrained(model_loading.load_causal_lm(reference, dtype="float32"),
                                            tmp_path / "adapter").merge_and_unload()  # fmt: skip
    with torch.no_grad():
        error = (merged(input_ids=ids).logits - expected).abs().mean().item()
        unquantized_error = (unquantized(input_ids=ids).logits - expected).abs().mean().item()
    assert error < unquantized_error / 4, (error, unquantized_error)
    with safe_open(str(merged_dir / "model.safetensors"), "pt") as weights:  # a plain Llama: no 4-bit leftovers
        names = list(weights.keys())
    assert names and not [n for n in names if "base_layer" in n or "lora" in n or "absmax" in n]
    assert "quantization_config" not in json.loads((merged_dir / "config.json").read_text())


def test_the_registered_version_is_a_merged_16_bit_safetensors_model_with_its_chat_template(task, smoke_store):
    model_dir = registry.materialise_version("legal-extractor", 1)
    assert (model_dir / "chat_template.jinja").exists() and (model_dir / "tokenizer.json").exists()
    with safe_open(str(model_dir / "model.safetensors"), "pt") as weights:
        names = list(weights.keys())
        assert not [n for n in names if "lora" in n]  # merged: plain Llama weights only
        assert str(weights.get_tensor(names[0]).dtype) == "torch.bfloat16"


def test_promoting_the_first_version_makes_it_champion_and_records_the_decision(task, smoke_store):
    promotion = promote(task)
    assert (promotion.candidate, promotion.champion, promotion.verdict) == (1, None, "promoted")
    assert promotion.evaluations.startswith("candidate v1 recorded")  # at registration: same set, same budget
    assert tracking.model_aliases("legal-extractor") == {"challenger": 1, "champion": 1}
    client = MlflowClient()
    decision = client.get_run(promotion.run_id)
    assert decision.data.tags["harness.kind"] == "promotion"
    assert decision.data.tags["harness.promotion.verdict"] == "promoted"
    assert decision.data.params["candidate_version"] == "1"
    assert "candidate_f1_micro" in decision.data.metrics
    assert client.get_model_version("legal-extractor", "1").tags["harness.promotion.verdict"] == "promoted"


def test_a_second_version_promoted_keeps_the_old_champion_as_previous_champion(task, smoke_study, smoke_store):
    promote(task)
    registration = registry.register_trial(task, study_name="legal-smoke", refit=False)
    assert registration.version == 2 and not registration.refit
    # Without a refit the version is logged on the trial's own run.
    assert registration.run_id == smoke_study.summary.best["mlflow_run_id"]
    assert MlflowClient().get_run(registration.run_id).info.status == "FINISHED"
    promotion = promote(task, tolerance=0.0)
    assert promotion.champion == 1 and promotion.candidate == 2
    assert promotion.result.rows[0][2] is not None  # the champion was evaluated too
    assert tracking.model_aliases("legal-extractor") == {"challenger": 2, "champion": 2, "previous-champion": 1}


def test_the_gate_refuses_a_candidate_that_scores_below_the_champion_it_would_replace(task, smoke_study, smoke_store):
    scoring = registry.register_run(task, smoke_study.constant_answer_run_id)  # v2: f1_micro 0.163 on the set
    assert scoring.version == 2 and scoring.test["f1_micro"] > 0.1
    assert promote(task).verdict == "promoted"
    zero = registry.register_model(task, "tiny:llama", profile="smoke")  # v3: the untrained model, 0 on every field
    promotion = promote(task)
    assert (promotion.candidate, promotion.champion, promotion.verdict) == (3, 2, "refused")
    drop = scoring.test["f1_micro"] - zero.test["f1_micro"]
    assert promotion.result.reasons[0] == f"f1_micro drops by {drop:.4f} (> tolerance 0.01)"
    assert tracking.model_aliases("legal-extractor")["champion"] == 2


def test_the_gate_promotes_a_candidate_that_scores_above_the_champion(task, smoke_study, smoke_store):
    assert promote(task).verdict == "promoted"  # v1: the smoke search's, 0 on the set
    better = registry.register_run(task, smoke_study.constant_answer_run_id)
    promotion = promote(task, tolerance=0.0)
    assert (promotion.candidate, promotion.champion, promotion.verdict) == (better.version, 1, "promoted")
    metric, candidate, champion = promotion.result.rows[0]
    assert metric == "f1_micro" and candidate == pytest.approx(better.test["f1_micro"]) and candidate > champion
    assert tracking.model_aliases("legal-extractor") == {"challenger": 2, "champion": 2, "previous-champion": 1}


def test_promoting_the_champion_again_is_an_error(task, smoke_store):
    promote(task)
    with pytest.raises(HarnessError, match="version 1 is already @champion"):
        promote(task, version=1)


def test_a_version_s_recorded_figures_are_what_a_fresh_evaluation_gives(task, smoke_store):
    recorded, source = stored_test_metrics(task, "legal-extractor", 1, 64)
    again, fresh_source = stored_test_metrics(task, "legal-extractor", 1, 64, fresh=True)
    assert source.startswith("v1 recorded") and fresh_source == "v1 evaluated now"
    assert again == recorded  # greedy decoding of unchanged weights on an unchanged set: nothing to re-check
    _, other_budget = stored_test_metrics(task, "legal-extractor", 1, 32)
    assert other_budget == "v1 evaluated now"  # a recorded evaluation counts only for its own budget


def test_registering_an_unknown_study_names_the_studies_there(task, smoke_store):
    with pytest.raises(HarnessError, match=r"no study 'legal-gpu'.*studies there: legal-smoke"):
        registry.register_trial(task, study_name="legal-gpu")


def test_registering_a_trial_that_is_not_complete_lists_the_complete_ones(task, smoke_store):
    with pytest.raises(HarnessError, match=r"trial 7 of study 'legal-smoke' is not a complete trial.*: 0, 1"):
        registry.register_trial(task, study_name="legal-smoke", trial_number=7)


def test_a_training_run_is_registered_from_its_adapter_as_trained(task, smoke_study, smoke_store):
    trial_run = smoke_study.summary.best["mlflow_run_id"]
    registration = registry.register_run(task, trial_run)
    assert (registration.version, registration.source, registration.refit) == (2, f"run {trial_run}", False)
    tags = MlflowClient().get_model_version("legal-extractor", "2").tags
    assert tags["harness.run"] == trial_run and tags["harness.source"] == "adapter"
    assert tracking.model_aliases("legal-extractor")["challenger"] == 2


def test_a_model_without_an_adapter_is_registered_as_it_is_with_its_stored_test_figures(task, smoke_store):
    registration = registry.register_model(task, "tiny:llama", profile="smoke")
    assert (registration.version, registration.source) == (2, "model tiny:llama")
    assert registration.validation == {} and registration.test["n"] == SMOKE_TEST_EXAMPLES
    client = MlflowClient()
    run = client.get_run(registration.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["harness.kind"] == "registration"
    assert run.data.params["model"] == "tiny:llama"
    tags = client.get_model_version("legal-extractor", "2").tags
    assert (tags["harness.source"], tags["harness.base_model"]) == ("model", "tiny:llama")
    assert tags["harness.profile"] == "smoke"
    assert "harness.quantization" not in tags
    with safe_open(str(registry.materialise_version("legal-extractor", 2) / "model.safetensors"), "pt") as weights:
        assert str(weights.get_tensor("model.norm.weight").dtype) == "torch.bfloat16"


def test_registering_a_run_that_trained_nothing_says_what_is_expected(task, smoke_study, smoke_store):
    not_training = smoke_study.summary.parent_run_id
    with pytest.raises(HarnessError, match=rf"run {not_training} is not a legal training run"):
        registry.register_run(task, not_training)


def test_regress_checks_the_registered_champion_against_the_figures_stored_for_it(task, smoke_store, tmp_path):
    promote(task)
    task = task_with_expectations_in(tmp_path, task)
    [stored] = regress(task, update_baseline=True)  # default model: models:/legal-extractor@champion
    assert stored.updated and stored.path.name == "legal-extractor@champion.json"
    assert json.loads(stored.path.read_text())["max_new_tokens"] == 64  # the smoke profile's, as registered
    [again] = regress(task)
    assert not again.updated and again.regressed == []
    assert {"f1_micro", "f1_initiator", "json_valid_rate"} <= {c.metric for c in again.checks}


def test_regress_reads_a_logged_model_by_its_run_uri(task, smoke_store, tmp_path):
    task = task_with_expectations_in(tmp_path, task)
    logged = f"runs:/{MlflowClient().get_model_version('legal-extractor', '1').run_id}/model"
    [stored] = regress(task, model=logged, update_baseline=True)
    assert stored.path.name == f"{logged.removeprefix('runs:/').replace('/', '-')}.json"
    [again] = regress(task, model=logged)
    assert again.regressed == [] and again.checks[0].metric == "f1_micro"


def test_an_alias_that_is_not_set_is_an_error_listing_the_ones_that_are(task, smoke_store):
    message = "models:/legal-extractor@staging does not exist; aliases set: @challenger -> v1"
    with pytest.raises(HarnessError, match=re.escape(message)):
        registry.find_version("legal-extractor", alias="staging")


def task_with_expectations_in(directory: Path, task: TaskConfig) -> TaskConfig:
    """The task as a copy of its YAML and stored set in `directory`: expectations written beside the set stay this
    test's (the shared study's set is every test's)."""
    [eval_set] = task.data.eval_sets
    stored = task.data_path(eval_set.path)
    copy = directory / "task" / "search_spaces" / task.file.name
    target = copy.parent / eval_set.path
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(stored, target)
    copy.write_text(task.file.read_text())
    return load_task(str(copy))


# Faults in the middle of a registration or a download: a real SIGINT delivered at a chosen step.


@contextmanager
def ctrl_c_in(owner: object, name: str) -> Iterator[None]:
    """Ctrl-C (a real SIGINT to this process) the moment `owner.name` is called."""
    original = getattr(owner, name)

    def interrupted(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(10)  # the handler raises KeyboardInterrupt here
        return original(*args, **kwargs)

    # A test run started in the background ignores SIGINT; a user's terminal does not.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(owner, name, interrupted)
            yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.fixture
def empty_store(tmp_path):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HARNESS_MLRUNS", str(tmp_path / "mlruns"))
        tracking.configure()
        yield tmp_path / "mlruns"


def test_an_interrupt_before_the_alias_is_set_leaves_no_version_and_the_next_registration_is_whole(task, empty_store):
    with ctrl_c_in(MlflowClient, "set_registered_model_alias"), pytest.raises(KeyboardInterrupt):
        registry.register_model(task, "tiny:llama", profile="smoke")
    assert tracking.model_versions("legal-extractor") == []  # not a version without its alias
    assert tracking.model_aliases("legal-extractor") == {}

    registration = registry.register_model(task, "tiny:llama", profile="smoke")
    [version] = tracking.model_versions("legal-extractor")
    assert int(version.version) == registration.version
    assert tracking.model_aliases("legal-extractor") == {"challenger": registration.version}
    assert float(version.tags["test.f1_micro"]) == pytest.approx(registration.test["f1_micro"], abs=1e-4)
    assert f"{registry.EVALUATION_TAG}.test-head-v1.64" in version.tags  # its recorded evaluation came with it
    assert (registry.materialise_version("legal-extractor", registration.version) / "model.safetensors").exists()


def test_a_download_cut_short_leaves_no_copy_that_a_later_call_takes_for_whole(task, empty_store):
    registry.register_model(task, "tiny:llama", profile="smoke")
    # Interrupted after the weights arrived, while the tokenizer is copied beside them.
    with ctrl_c_in(shutil, "copy"), pytest.raises(KeyboardInterrupt):
        registry.materialise_version("legal-extractor", 1)
    assert list(tracking.cache_dir("models", "legal-extractor").iterdir()) == []  # nothing, not even a partial copy

    model_dir = registry.materialise_version("legal-extractor", 1)
    assert (model_dir / "tokenizer.json").exists() and (model_dir / "chat_template.jinja").exists()


def test_a_version_materialised_from_one_tracking_store_is_never_taken_for_another_s(task, tmp_path):
    another_model = tmp_path / "another-model"
    tokenizer_source = model_loading.resolve_model("embedded:smollm2-135m-instruct").path
    model_loading.build_tiny_llama(another_model, tokenizer_source=tokenizer_source, seed=1)
    copies = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HARNESS_MLRUNS", str(tmp_path / "mlruns"))  # one local cache for both stores
        for store, model in (("team-a", "tiny:llama"), ("team-b", str(another_model))):
            tracking.configure(f"sqlite:///{tmp_path / store}.db")
            assert registry.register_model(task, model, profile="smoke").version == 1
            copies[store] = registry.materialise_version("legal-extractor", 1)
    tracking.configure()
    assert copies["team-a"] != copies["team-b"]
    embeddings = []
    for model_dir in copies.values():
        with safe_open(str(model_dir / "model.safetensors"), "pt") as weights:
            embeddings.append(weights.get_tensor("model.embed_tokens.weight"))
    assert not torch.equal(*embeddings)  # each store's own version 1


@pytest.mark.parametrize(
    ("profile", "gpus", "card_gib", "refused"),
    [("gpu-70b-40gb", 2, 40, True), ("gpu-70b", 2, 80, False), ("gpu-70b", 1, 80, True)],
)
def test_a_registration_the_gpus_cannot_hold_is_refused_before_any_training(
    tmp_path, monkeypatch, profile, gpus, card_gib, refused
):
    """Llama 3.1 70B merged into bf16 is 141 GB: on 2 x 40 GB, or one 80 GB card, the search is refused up front and
    told how to go on; on 2 x 80 GB it goes ahead. The machine's GPUs are given; the model's shape is its config."""
    from harness.plan import LINEUP

    (tmp_path / "config.json").write_text(
        json.dumps({"model_type": "llama", **LINEUP["meta-llama/Llama-3.1-70B-Instruct"]}), encoding="utf-8"
    )
    monkeypatch.setattr(machine, "smallest_gpu_memory_mb", lambda: card_gib * 1024)
    monkeypatch.setattr(machine, "gpu_count", lambda: gpus)
    legal = load_task("legal")
    if not refused:
        registry.check_the_gpus_hold_registration(legal, profile=profile, model=str(tmp_path))
        return
    with pytest.raises(HarnessError) as error:
        registry.check_the_gpus_hold_registration(legal, profile=profile, model=str(tmp_path))
    message = str(error.value)
    assert re.search(rf"\d+ GiB per GPU over the {gpus} GPU\(s\) here, which hold {card_gib} GiB each", message)
    assert f"Search with --no-register, then `harness register legal --profile {profile}`" in message
