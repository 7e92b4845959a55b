"""From a study's winner to a registered model version (the gate that promotes it is `harness.promotion`).

register: refit the winning recipe at the profile's refit budget (a run of its own under the study's parent run)
-> reload the base model unquantized -> merge the adapter into it -> evaluate the merged model (validation for
int8 / nf4 trials, so the merge loss is visible; the stored test set always) -> log it as an MLflow model, a new
version of `<task>-extractor` with alias `challenger`, tagged with where it came from and how it scored.
`register_run` does the same from any training run's adapter (`harness train`), as trained; `register_model`
registers a model without an adapter (the zero-shot base, as a baseline version to gate against).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from harness import machine, model_loading, tracking, training
from harness.config import DEFAULT_MAX_NEW_TOKENS, TaskConfig, resolve_trial_config
from harness.errors import HarnessError
from harness.generation import AnswerReporter
from harness.memory import release_freed_memory
from harness.prompts import assistant_turn, prompt_turns
from harness.search.coordination import registration_claim
from harness.search.study import find_trial
from harness.task_data import load_split
from harness.trial import evaluate_model, generates_here
from harness.trial_process import run_trial_in_own_process


class RegistrationReporter(training.TrainingReporter, AnswerReporter, Protocol):
    """Hears a registration's refit (training steps) and its evaluations (stages, answers)."""


CHALLENGER, CHAMPION, PREVIOUS_CHAMPION = "challenger", "champion", "previous-champion"
QUANTIZED = ("int8", "nf4")
EVALUATION_TAG = "harness.evaluation"  # <tag>.<stored set>.<max_new_tokens> on a version: its recorded test figures


@dataclass
class Registration:
    name: str
    version: int
    source: str  # what was registered: "trial 3 of legal-cpu", "run <id>", "model embedded:..."
    run_id: str  # the run the model is logged on
    refit: bool
    validation: dict[str, float]  # the adapter's validation metrics (trial, refit or train run); empty for a model
    merged_validation: dict[str, float]  # the merged model's, for int8 / nf4 adapters; empty otherwise
    test: dict[str, float]  # the registered weights on the stored test set


@dataclass(frozen=True)
class AdapterRun:
    """A run that holds a trained adapter, and what the registration needs to know about its training."""

    run_id: str
    adapter_dir: Path
    base_model: str
    profile: str
    quantization: str
    validation: dict[str, float]
    validation_examples: int
    max_new_tokens: int


def register_trial(
    task: TaskConfig,
    *,
    study_name: str,
    storage: str | None = None,
    trial_number: int | None = None,
    refit: bool = True,
    reporter: RegistrationReporter | None = None,
) -> Registration:
    """Register a study's best trial (or trial `trial_number`) as a new `challenger` version; `reporter` hears the
    refit's steps and the evaluations' answers."""
    chosen = find_trial(study_name, storage=storage, number=trial_number)
    trial_params = tracking.run_params(chosen.mlflow_run_id)
    # The merged copy (a full model: 16 GB for an 8B) is logged to MLflow, then removed with the directory.
    with tempfile.TemporaryDirectory(prefix="harness-register-") as directory:
        work = Path(directory)
        config = resolve_trial_config(
            task, profile=trial_params["profile"], model=trial_params["model"], overrides=chosen.params, refit=refit
        )
        if refit:
            # Searches run at low fidelity: retrain the winning recipe with the profile's refit budget first.
            result = run_trial_in_own_process(
                task,
                config,
                parent_run_id=tracking.find_study_run(task.task.name, study_name),
                run_name=f"refit-trial-{chosen.number}",
                tags={"harness.study": study_name, "harness.refit": "true", "harness.trial_number": str(chosen.number)},
                output_dir=work / "refit",
                reporter=reporter,
            )
            run_id, adapter_dir, validation = str(result.run_id), result.adapter_dir, result.metrics
        else:
            run_id = chosen.mlflow_run_id
            adapter_dir = tracking.download_run_artifacts(run_id, "adapter", work)
            validation = tracking.run_metrics(run_id)
        adapter = AdapterRun(
            run_id,
            adapter_dir,
            config.model,
            config.profile,
            config.recipe.quantization,
            validation,
            config.budget.validation_examples,
            config.budget.max_new_tokens,
        )
        source = {"harness.study": study_name, "harness.trial": str(chosen.number), "harness.refit": str(refit).lower()}
        return _register_adapter(
            task, adapter, f"trial {chosen.number} of {study_name}", source, work, refit=refit, reporter=reporter
        )


def register_after_search(
    task: TaskConfig,
    *,
    study_name: str,
    total: int,
    storage: str | None,
    on_start: Callable[[str], None],
    reporter: RegistrationReporter | None = None,
) -> tuple[Registration | None, str]:
    """Register the study's best trial if this worker is the one to: the study has its `total` trials, none runs,
    and this worker's claim landed first (`on_start(why)` is called before the refit begins). Otherwise None and
    why not. A registration that fails or is interrupted registers nothing (no version, no alias) and gives the
    claim back, so the same command registers next time."""
    with registration_claim(study_name, total, storage=storage) as (claimed, why):
        if not claimed:
            return None, why
        on_start(why)
        return register_trial(task, study_name=study_name, storage=storage, reporter=reporter), why


def check_the_gpus_hold_registration(task: TaskConfig, *, profile: str, model: str | None = None) -> None:
    """Refuse, before a search trains for hours, a registration the GPUs here cannot hold: it merges the winner into
    bf16 weights and evaluates them, split by layers over every GPU this process sees (Llama 3.1 70B: 141 GB, more
    than two 40 GB cards). No GPU: nothing to check (a CPU profile's model is small)."""
    gpu_memory_mb = machine.smallest_gpu_memory_mb()
    if gpu_memory_mb is None:
        return
    config = resolve_trial_config(task, profile=profile, model=model)
    model_dir = model_loading.resolve_model(config.model, weights=False).path
    fits, needed = generates_here(model_dir, config.budget.max_seq_length, weight_bytes=2)  # merged in bf16
    if not fits:
        raise HarnessError(
            f"registration merges the winner into bf16 and evaluates it: {needed.total_mb / 1024:.0f} GiB per GPU"
            f" over the {machine.gpu_count()} GPU(s) here, which hold {gpu_memory_mb / 1024:.0f} GiB each. Search with"
            f" --no-register, then `harness register {task.task.name} --profile {profile}` where more or larger"
            f" GPUs are (`harness plan {task.task.name} --profile {profile} --gpu ... --gpus N` says which fit)"
        )


def register_run(task: TaskConfig, run_id: str, *, reporter: AnswerReporter | None = None) -> Registration:
    """Register the adapter of any finished training run (`harness train`, a trial) as it is."""
    params = tracking.run_params(run_id)
    if params.get("task") != task.task.name or "model" not in params:
        raise HarnessError(
            f"MLflow run {run_id} is not a {task.task.name} training run (it has no task/model params of one);"
            " give the id of a `harness train` or trial run"
        )
    with tempfile.TemporaryDirectory(prefix="harness-register-") as directory:
        work = Path(directory)
        adapter = AdapterRun(
            run_id,
            tracking.download_run_artifacts(run_id, "adapter", work),
            params["model"],
            params["profile"],
            params["quantization"],
            tracking.run_metrics(run_id),
            int(params["budget.validation_examples"]),
            int(params["budget.max_new_tokens"]),
        )
        return _register_adapter(
            task, adapter, f"run {run_id}", {"harness.run": run_id}, work, refit=False, reporter=reporter
        )


def register_model(
    task: TaskConfig, model_spec: str, *, profile: str, reporter: AnswerReporter | None = None
) -> Registration:
    """Register a model as it is, without an adapter: the zero-shot base as a baseline version, or any
    local model directory. Its stored-test figures are computed and tagged like any other version's."""
    with tempfile.TemporaryDirectory(prefix="harness-register-") as directory:
        work = Path(directory)
        model_ref = model_loading.resolve_model(model_spec)
        tokenizer = model_loading.load_tokenizer(model_ref)
        saved = model_loading.save_bf16(
            model_loading.load_causal_lm(model_ref, dtype="auto"), tokenizer, work / "model"
        )
        max_new_tokens = task.profiles[profile].refit.max_new_tokens
        _stage(reporter, f"scoring {model_spec} on the stored test set {task.data.eval_sets[0].name}")
        test_scores, _ = evaluate_model(
            task, str(saved), split="test", max_new_tokens=max_new_tokens, reporter=reporter
        )
        test = dict(test_scores.metrics)
        run_id = tracking.log_decision_run(
            task.task.name,
            run_name=f"register-{model_ref.path.name}",
            params={"model": model_spec, "profile": profile},
            metrics={f"test_{k}": v for k, v in test.items()},
            tags={"harness.kind": "registration", "harness.profile": profile},
        )
        tags = {
            "harness.source": "model",
            "harness.base_model": model_spec,
            "harness.profile": profile,
            **_metric_tags({}, {}, test),
            **evaluation_tag(task, max_new_tokens, test),
        }
        version = _log_version(task, saved, tokenizer, run_id, tags)
        return Registration(task.registered_name, version, f"model {model_spec}", run_id, False, {}, {}, test)


def _register_adapter(
    task: TaskConfig,
    adapter: AdapterRun,
    source: str,
    source_tags: dict[str, str],
    work: Path,
    *,
    refit: bool,
    reporter: AnswerReporter | None,
) -> Registration:
    """adapter -> merged into the base it was trained on -> evaluated -> logged and registered as @challenger."""
    # merge: into the (dequantized) weights the adapter was trained against, saved as a plain 16-bit model
    _stage(reporter, f"merging the adapter into its base model {adapter.base_model} ({adapter.quantization})")
    base_ref = model_loading.resolve_model(adapter.base_model)
    tokenizer = model_loading.load_tokenizer(base_ref)
    merged = merge_into_base(
        base_ref, adapter.adapter_dir, work / "merged", tokenizer, quantization=adapter.quantization
    )
    merged_validation: dict[str, float] = {}
    if adapter.quantization in QUANTIZED:
        _stage(reporter, "scoring the merged model on the validation slice (what a merge into k-bit weights lost)")
        scores, _ = evaluate_model(
            task,
            str(merged),
            split="validation",
            limit=adapter.validation_examples,
            max_new_tokens=adapter.max_new_tokens,
            reporter=reporter,
        )
        merged_validation = dict(scores.metrics)
    _stage(reporter, f"scoring the merged model on the stored test set {task.data.eval_sets[0].name}")
    test_scores, _ = evaluate_model(
        task, str(merged), split="test", max_new_tokens=adapter.max_new_tokens, reporter=reporter
    )
    test = dict(test_scores.metrics)
    tracking.log_to_run(
        adapter.run_id,
        metrics={
            **{f"merged_{k}": v for k, v in merged_validation.items()},
            **{f"test_{k}": v for k, v in test.items()},
        },
    )
    tags = {
        **source_tags,
        "harness.source": "adapter",
        "harness.base_model": adapter.base_model,
        "harness.profile": adapter.profile,
        "harness.quantization": adapter.quantization,
        **_metric_tags(adapter.validation, merged_validation, test),
        **evaluation_tag(task, adapter.max_new_tokens, test),
    }
    _stage(reporter, f"logging the merged model and registering it as a version of {task.registered_name}")
    version = _log_version(task, merged, tokenizer, adapter.run_id, tags)
    return Registration(
        task.registered_name, version, source, adapter.run_id, refit, adapter.validation, merged_validation, test
    )


def _log_version(task: TaskConfig, model_dir: Path, tokenizer: Any, run_id: str, tags: dict[str, str]) -> int:
    example = load_split(task, "validation")[0]
    prompt = tokenizer.apply_chat_template(prompt_turns(task, example.text), tokenize=False, add_generation_prompt=True)
    model = model_loading.load_causal_lm(model_loading.resolve_model(str(model_dir)), dtype="auto")
    return tracking.log_and_register_model(
        run_id,
        model,
        tokenizer,
        registered_name=task.registered_name,
        input_example=prompt,
        output_example=assistant_turn(example.fields)[0]["content"],
        alias=CHALLENGER,
        version_tags=tags,
    )


def merge_into_base(
    base_ref: model_loading.ResolvedModel, adapter_dir: Path, out_dir: Path, tokenizer: Any, *, quantization: str
) -> Path:
    """Base model + adapter -> merged weights saved in bf16 (16-bit) safetensors, with the tokenizer and chat
    template: a directory transformers and vLLM load as is.

    The base is loaded as the adapter was trained on it, an int8 or nf4 one dequantized once, and the adapter folded
    in as the trial's generation does: an adapter trained on 4-bit weights learned to correct *their* errors, and
    folded into the unquantized weights it computes something else (make search's nf4 refit: validation f1_micro
    0.942 from the trained model, 0.871 from that merge)."""
    base = model_loading.load_for_training(base_ref, quantization=quantization)
    folded = training.merge_adapter(base, adapter_dir)
    return model_loading.save_bf16(model_loading.forget_quantizer(folded), tokenizer, out_dir)


def _metric_tags(
    validation: dict[str, float], merged_validation: dict[str, float], test: dict[str, float]
) -> dict[str, str]:
    tags = {}
    for prefix, metrics in (("validation", validation), ("merged_validation", merged_validation), ("test", test)):
        for key in ("f1_micro", "exact_match", "json_valid_rate"):
            if key in metrics:
                tags[f"{prefix}.{key}"] = f"{metrics[key]:.4f}"
    tags.update({f"test.{k}": f"{v:.4f}" for k, v in test.items() if k.startswith(("f1_", "acc_"))})
    return tags


# Promotion: the regression gate.


def evaluation_tag(task: TaskConfig, max_new_tokens: int, metrics: dict[str, float]) -> dict[str, str]:
    """The version tag that records an evaluation on the stored test set (`stored_test_metrics` reads it)."""
    stored = task.data.eval_sets[0]
    evaluation = {
        "sha256": stored.sha256,
        "max_new_tokens": max_new_tokens,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "metrics": metrics,
    }
    return {f"{EVALUATION_TAG}.{stored.name}.{max_new_tokens}": json.dumps(evaluation)}


def evaluate_version(
    task: TaskConfig, name: str, version: int, *, max_new_tokens: int, reporter: AnswerReporter | None = None
) -> tuple[dict[str, float], list[str]]:
    """A registered version's metrics and answers on the stored test set, computed now from its weights."""
    model_dir = materialise_version(name, version)
    scores, generated = evaluate_model(
        task, str(model_dir), split="test", max_new_tokens=max_new_tokens, reporter=reporter
    )
    return dict(scores.metrics), list(generated.outputs)


def materialise_version(name: str, version: int) -> Path:
    """The version's weights in a local directory, downloaded once (`tracking.cache_dir`)."""
    return tracking.download_model_version(name, version)


def find_version(name: str, *, alias: str | None = None, version: int | None = None, hint: str = "") -> Any:
    """A registered version by alias or number; a clear error listing the aliases that are set when it is not."""
    found = tracking.model_version(name, alias=alias) if alias else tracking.model_version(name, version=version)
    if found is None:
        wanted = f"models:/{name}@{alias}" if alias else f"models:/{name}/{version}"
        aliases = ", ".join(f"@{a} -> v{v}" for a, v in tracking.model_aliases(name).items()) or "none"
        raise HarnessError(f"{wanted} does not exist; aliases set: {aliases}{hint}")
    return found


def materialise_adapter(name: str, version: int) -> Path:
    """The LoRA adapter a version was merged from, in a local directory, for serving unmerged."""
    found = tracking.model_version(name, version=version)
    if found is None or found.tags.get("harness.source", "adapter") != "adapter":
        raise HarnessError(f"{name} version {version} was registered without an adapter: serve it merged")
    return tracking.download_run_directory(found.run_id, "adapter")


def materialise_lora_base(name: str, version: int) -> Path:
    """The base model a version's adapter was trained against, as a directory vLLM serves it on unmerged: the base
    itself, or for an int8 or nf4 adapter the base's dequantized weights, written once into the model cache. An
    adapter that learned to correct 4-bit weights computes something else on the unquantized ones (the merge's
    reason, `merge_into_base`)."""
    found = find_version(name, version=version)
    base_ref = model_loading.resolve_model(found.tags["harness.base_model"])
    quantization = found.tags.get("harness.quantization", "none")
    if quantization not in QUANTIZED:
        return base_ref.path

    def dequantize(directory: Path) -> None:
        base = training.dequantize(model_loading.load_for_training(base_ref, quantization=quantization))
        model_loading.save_bf16(model_loading.forget_quantizer(base), model_loading.load_tokenizer(base_ref), directory)

    digest = hashlib.sha256(str(base_ref.path.resolve()).encode()).hexdigest()[:8]
    directory = model_loading.cached_model_dir(f"{base_ref.path.name}-{digest}-{quantization}-dequantized", dequantize)
    release_freed_memory()  # the dequantised base held GPU memory that `serve --lora`'s vLLM is about to ask for
    return directory


def max_new_tokens_for(task: TaskConfig, version_tags: dict[str, str]) -> int:
    profile = version_tags.get("harness.profile")
    return task.profiles[profile].refit.max_new_tokens if profile in task.profiles else DEFAULT_MAX_NEW_TOKENS


def _stage(reporter: AnswerReporter | None, text: str) -> None:
    if reporter is not None:
        reporter.stage(text)
