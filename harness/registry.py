"""From a study's winner to a registered, gated model version: register, then promote.

register: refit the winning recipe at the profile's refit budget (a run of its own under the study's parent run)
-> reload the base model unquantized -> merge the adapter into it -> evaluate the merged model (validation for
int8 / nf4 trials, so the merge loss is visible; the stored test set always) -> log it as an MLflow model, a new
version of `<task>-extractor` with alias `challenger`, tagged with where it came from and how it scored.

promote: evaluate the candidate and the current champion on the stored test set and move the `champion` alias
only if the gate passes (`gate`); every decision is recorded on the version and as a run.
"""

from __future__ import annotations

import getpass
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness import model_loading, search, tracking, training
from harness.config import TaskConfig, TrialConfig, resolve_trial_config
from harness.errors import HarnessError
from harness.prompts import assistant_turn, user_turn
from harness.task_data import load_split
from harness.trial import evaluate_model, run_trial

CHALLENGER, CHAMPION, PREVIOUS_CHAMPION = "challenger", "champion", "previous-champion"
QUANTIZED = ("int8", "nf4")


def registered_name(task: TaskConfig) -> str:
    return f"{task.task.name}-extractor"


@dataclass
class Registration:
    name: str
    version: int
    trial: int
    run_id: str  # the run the model is logged on: the refit run, or the trial's own with --no-refit
    refit: bool
    validation: dict[str, float]  # the adapter's validation metrics (trial or refit run)
    merged_validation: dict[str, float]  # the merged model's, for int8 / nf4 trials; empty otherwise
    test: dict[str, float]  # the merged model on the stored test set


def register_trial(
    task: TaskConfig,
    *,
    study_name: str,
    storage: str | None = None,
    trial_number: int | None = None,
    refit: bool = True,
) -> Registration:
    """Register a study's best trial (or trial `trial_number`) as a new `challenger` version."""
    chosen = search.find_trial(study_name, storage=storage, number=trial_number)
    trial_params = tracking.run_params(chosen.mlflow_run_id)
    profile, model_spec = trial_params["profile"], trial_params["model"]
    work = Path(tempfile.mkdtemp(prefix="harness-register-"))
    config = resolve_trial_config(task, profile=profile, model=model_spec, overrides=chosen.params, refit=refit)
    if refit:
        # Searches run at low fidelity: retrain the winning recipe with the profile's refit budget first.
        result = run_trial(
            task,
            config,
            parent_run_id=tracking.find_study_run(task.task.name, study_name),
            run_name=f"refit-trial-{chosen.number}",
            tags={"harness.study": study_name, "harness.refit": "true", "harness.trial_number": str(chosen.number)},
            output_dir=work / "refit",
        )
        run_id, adapter_dir, validation = str(result.run_id), result.adapter_dir, result.metrics
    else:
        run_id = chosen.mlflow_run_id
        adapter_dir = tracking.download_run_artifacts(run_id, "adapter", work)
        validation = tracking.run_metrics(run_id)

    # merge: the adapter goes into the unquantized base, never into 4- or 8-bit weights (that merge is lossy)
    base_ref = model_loading.resolve_model(config.model)
    tokenizer = model_loading.load_tokenizer(base_ref)
    merged = merge_into_base(base_ref, adapter_dir, work / "merged", tokenizer)
    budget = config.budget
    merged_validation: dict[str, float] = {}
    if config.recipe.quantization in QUANTIZED:
        scores, _ = evaluate_model(
            task,
            str(merged),
            split="validation",
            limit=budget.validation_examples,
            max_new_tokens=budget.max_new_tokens,
        )
        merged_validation = dict(scores.metrics)
    test_scores, _ = evaluate_model(task, str(merged), split="test", max_new_tokens=budget.max_new_tokens)
    test = dict(test_scores.metrics)
    tracking.log_to_run(
        run_id,
        metrics={
            **{f"merged_{k}": v for k, v in merged_validation.items()},
            **{f"test_{k}": v for k, v in test.items()},
        },
    )

    name = registered_name(task)
    example = load_split(task, "validation")[0]
    prompt = tokenizer.apply_chat_template(user_turn(task, example.text), tokenize=False, add_generation_prompt=True)
    model = model_loading.load_causal_lm(model_loading.resolve_model(str(merged)), dtype="auto")
    version = tracking.log_and_register_model(
        run_id,
        model,
        tokenizer,
        registered_name=name,
        input_example=prompt,
        output_example=assistant_turn(example.fields)[0]["content"],
        alias=CHALLENGER,
        version_tags=_version_tags(study_name, chosen.number, config, refit, validation, merged_validation, test),
    )
    return Registration(name, version, chosen.number, run_id, refit, validation, merged_validation, test)


def merge_into_base(base_ref: model_loading.ResolvedModel, adapter_dir: Path, out_dir: Path, tokenizer: Any) -> Path:
    """Base model in fp32 + adapter -> merged weights saved in bf16 (16-bit) safetensors, with the tokenizer and
    chat template: a directory transformers and vLLM load as is."""
    import torch

    base = model_loading.load_causal_lm(base_ref, dtype=torch.float32)
    merged = training.merge_adapter(base, adapter_dir).to(torch.bfloat16)
    merged.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def _version_tags(
    study_name: str,
    trial: int,
    config: TrialConfig,
    refit: bool,
    validation: dict[str, float],
    merged_validation: dict[str, float],
    test: dict[str, float],
) -> dict[str, str]:
    tags = {
        "harness.study": study_name,
        "harness.trial": str(trial),
        "harness.base_model": config.model,
        "harness.profile": config.profile,
        "harness.quantization": config.recipe.quantization,
        "harness.refit": str(refit).lower(),
    }
    for prefix, metrics in (("validation", validation), ("merged_validation", merged_validation), ("test", test)):
        for key in ("f1_micro", "exact_match", "json_valid_rate"):
            if key in metrics:
                tags[f"{prefix}.{key}"] = f"{metrics[key]:.4f}"
    tags.update({f"test.{k}": f"{v:.4f}" for k, v in test.items() if k.startswith(("f1_", "acc_"))})
    return tags


# Promotion: the regression gate.


@dataclass
class GateResult:
    passed: bool
    reasons: list[str]  # why it failed; empty when it passed
    rows: list[tuple[str, float, float | None]] = field(default_factory=list)  # metric, candidate, champion


def gate(
    candidate: dict[str, float], champion: dict[str, float] | None, field_names: list[str], tolerance: float
) -> GateResult:
    """Pass unless f1_micro drops by more than `tolerance` or any field's F1 by more than twice that."""
    metrics = ["f1_micro", *(f"f1_{name}" for name in field_names), "exact_match", "json_valid_rate"]
    rows = [(m, candidate[m], champion[m] if champion else None) for m in metrics if m in candidate]
    if champion is None:
        return GateResult(True, [], rows)
    reasons = []
    drop = champion["f1_micro"] - candidate["f1_micro"]
    if drop > tolerance:
        reasons.append(f"f1_micro drops by {drop:.4f} (> tolerance {tolerance})")
    for name in field_names:
        key = f"f1_{name}"
        drop = champion[key] - candidate[key]
        if drop > 2 * tolerance:
            reasons.append(f"{key} drops by {drop:.4f} (> 2 x tolerance = {2 * tolerance})")
    return GateResult(not reasons, reasons, rows)


@dataclass
class Promotion:
    name: str
    candidate: int
    champion: int | None  # the champion before this decision
    result: GateResult
    forced: bool
    promoted: bool
    verdict: str  # promoted | refused | forced
    run_id: str


def promote(task: TaskConfig, *, version: int | None = None, tolerance: float = 0.01, force: bool = False) -> Promotion:
    """Evaluate the candidate (default `@challenger`) and `@champion` on the stored test set; gate the alias."""
    name = registered_name(task)
    candidate = (
        tracking.model_version(name, version=version) if version else tracking.model_version(name, alias=CHALLENGER)
    )
    if candidate is None:
        which = f"version {version}" if version else f"alias @{CHALLENGER}"
        raise HarnessError(f"registered model {name} has no {which}; run `harness register {task.task.name}` first")
    champion = tracking.model_version(name, alias=CHAMPION)
    candidate_number = int(candidate.version)
    champion_number = int(champion.version) if champion else None
    if champion_number == candidate_number:
        raise HarnessError(f"{name} version {candidate_number} is already @{CHAMPION}")
    max_new_tokens = max_new_tokens_for(task, candidate.tags)
    candidate_metrics = evaluate_version(task, name, candidate_number, max_new_tokens=max_new_tokens)
    champion_metrics = (
        evaluate_version(task, name, champion_number, max_new_tokens=max_new_tokens) if champion_number else None
    )
    result = gate(candidate_metrics, champion_metrics, list(task.fields), tolerance)
    promoted = result.passed or force
    verdict = "promoted" if result.passed else ("forced" if force else "refused")
    if promoted:
        if champion_number is not None:
            tracking.set_model_alias(name, PREVIOUS_CHAMPION, champion_number)
        tracking.set_model_alias(name, CHAMPION, candidate_number)
    decided = {
        "harness.promotion.verdict": verdict,
        "harness.promotion.by": getpass.getuser(),
        "harness.promotion.at": datetime.now(UTC).isoformat(timespec="seconds"),
        "harness.promotion.champion_version": str(champion_number or "none"),
        "harness.promotion.tolerance": str(tolerance),
        "harness.promotion.reasons": "; ".join(result.reasons) or "none",
    }
    tracking.tag_model_version(name, candidate_number, decided)
    run_id = tracking.log_decision_run(
        task.task.name,
        run_name=f"promote-v{candidate_number}",
        params={
            "candidate_version": candidate_number,
            "champion_version": champion_number,
            "tolerance": tolerance,
            "force": force,
        },
        metrics={
            **{f"candidate_{k}": v for k, v in candidate_metrics.items()},
            **{f"champion_{k}": v for k, v in (champion_metrics or {}).items()},
        },
        tags={"harness.kind": "promotion", **decided},
    )
    return Promotion(name, candidate_number, champion_number, result, force, promoted, verdict, run_id)


def evaluate_version(task: TaskConfig, name: str, version: int, *, max_new_tokens: int) -> dict[str, float]:
    """A registered version's metrics on the stored test set, computed now from its registered weights."""
    model_dir = materialise_version(name, version)
    scores, _ = evaluate_model(task, str(model_dir), split="test", max_new_tokens=max_new_tokens)
    return dict(scores.metrics)


def materialise_version(name: str, version: int) -> Path:
    """The version's weights in a local directory (`<mlruns>/models/<name>/v<N>`), downloaded once."""
    target = tracking.mlruns_dir() / "models" / name / f"v{version}"
    model_dir = target / "model"
    if not (model_dir / "config.json").exists():
        model_dir = tracking.download_model_version(name, version, target)
    return model_dir


def max_new_tokens_for(task: TaskConfig, version_tags: dict[str, str]) -> int:
    profile = version_tags.get("harness.profile")
    return task.profiles[profile].refit.max_new_tokens if profile in task.profiles else 128
