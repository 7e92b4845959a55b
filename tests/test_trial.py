"""One trial end to end on the tiny model: every quantization mode and target set trains, scores and is tracked."""

from __future__ import annotations

import hashlib
import itertools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from harness import machine, tracking
from harness.config import metric_names, resolve_trial_config
from harness.errors import HarnessError, TrialStopped
from harness.training import SilentReporter
from harness.trial import run_trial
from tests.conftest import component_missing

EXPECTED_PARAMS = {
    "task", "profile", "model", "seed", "quantization",
    "lora.r", "lora.alpha", "lora.alpha_ratio", "lora.dropout", "lora.target_modules", "lora.use_rslora",
    "train.learning_rate", "train.lr_scheduler", "train.warmup_ratio", "train.weight_decay",
    "budget.train_examples", "budget.max_steps", "budget.batch_size", "budget.max_seq_length",
}  # fmt: skip
HARNESS = str(Path(sys.executable).parent / "harness")
RUN_METRICS = {
    "train_seconds", "eval_seconds", "train_tokens_per_second", "eval_tokens_per_second", "peak_memory_mb",
    "estimated_peak_memory_mb", "train_peak_memory_mb", "trainable_params", "train_loss", "final_train_loss",
}  # fmt: skip


@pytest.fixture
def mlruns(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_MLRUNS", str(tmp_path / "mlruns"))
    tracking.configure()
    return tmp_path / "mlruns"


def smoke(legal, **overrides):
    return resolve_trial_config(legal, profile="smoke", overrides=overrides)


def run_of(result):
    return MlflowClient().get_run(result.run_id)


def artifact_paths(run_id, path=""):
    client = MlflowClient()
    paths = []
    for item in client.list_artifacts(run_id, path):
        paths += artifact_paths(run_id, item.path) if item.is_dir else [item.path]
    return paths


@pytest.mark.parametrize(
    ("quantization", "targets"), list(itertools.product(["none", "int8", "nf4"], ["attn", "mlp", "all"]))
)
def test_every_quantization_mode_and_target_set_trains_and_scores(legal, mlruns, quantization, targets):
    result = run_trial(
        legal, smoke(legal, quantization=quantization, **{"lora.target_modules": targets}), output_dir=mlruns / "a"
    )
    run = run_of(result)
    assert run.info.status == "FINISHED"
    assert run.data.params["quantization"] == quantization and run.data.params["lora.target_modules"] == targets
    assert set(metric_names(legal.fields)) <= set(result.metrics)
    # r=16 LoRA on 2 layers of the tiny model: attn = q,k,v,o; mlp = gate,up,down.
    per_layer = {"attn": 16 * (256 + 192 + 192 + 256), "mlp": 16 * (384 * 2 + 384)}
    per_layer["all"] = per_layer["attn"] + per_layer["mlp"]
    assert result.metrics["trainable_params"] == 2 * per_layer[targets]
    assert (result.adapter_dir / "adapter_model.safetensors").exists()


def test_the_run_records_every_param_metric_artifact_and_dataset(legal, mlruns):
    result = run_trial(legal, smoke(legal), output_dir=mlruns / "a")
    run = run_of(result)
    assert set(run.data.params) >= EXPECTED_PARAMS
    assert run.data.params["lora.alpha"] == "32.0" and run.data.params["train.learning_rate"] == "0.0002"
    metrics = run.data.metrics
    assert set(metric_names(legal.fields)) | RUN_METRICS <= set(metrics)
    assert all(isinstance(value, float) for value in metrics.values())
    assert any(name.startswith("system/") for name in metrics)  # MLflow system metrics
    assert metrics["peak_memory_mb"] > 100 and metrics["trainable_params"] == 28672
    assert metrics["gpus"] == (machine.gpu_count() if machine.has_cuda() else 0)  # the model's on the CPU here
    assert 100 < metrics["train_peak_memory_mb"] <= metrics["peak_memory_mb"]  # training's, within the trial's
    history = MlflowClient().get_metric_history(result.run_id, "train_loss")
    assert [m.step for m in history] == [2] and history[0].value > 0
    assert metrics["final_train_loss"] == history[-1].value  # the last logged loss, printed with the result too
    inputs = {(i.dataset.name, i.tags[0].value) for i in run.inputs.dataset_inputs}
    assert inputs == {("legal-train", "training"), ("legal-validation", "validation")}
    assert all(i.dataset.digest for i in run.inputs.dataset_inputs)
    assert run.data.tags["harness.generation"] == "folded"  # a tiny model folds wherever it is
    assert {
        "config/resolved.yaml",
        "config/legal.yaml",
        "environment/packages.yaml",
        "adapter/adapter_model.safetensors",
        "adapter/adapter_config.json",
        "predictions.json",
    } <= set(artifact_paths(result.run_id))
    assert not [p for p in artifact_paths(result.run_id) if p.endswith((".bin", ".pt", ".pkl"))]
    table = MlflowClient().load_table(run.info.experiment_id, "predictions.json", run_ids=[result.run_id])
    assert len(table) == 4
    assert {"id", "input", "gold", "output", "correct_plaintiff", "correct_initiator"} <= set(table.columns)


def test_lora_weights_change_and_base_weights_do_not(legal, mlruns):
    from safetensors.torch import load_file

    from harness.model_loading import resolve_model

    cached_base = resolve_model("tiny:llama").path / "model.safetensors"
    before = hashlib.sha256(cached_base.read_bytes()).hexdigest()
    result = run_trial(
        legal, smoke(legal, quantization="none", **{"train.learning_rate": 1e-2}), output_dir=mlruns / "a"
    )
    adapter = load_file(result.adapter_dir / "adapter_model.safetensors")
    lora_b = [tensor for name, tensor in adapter.items() if "lora_B" in name]
    assert lora_b and all(tensor.abs().sum() > 0 for tensor in lora_b)  # B starts at zero: training moved it
    assert not [name for name in adapter if "lora" not in name]  # only adapter weights are saved
    assert hashlib.sha256(cached_base.read_bytes()).hexdigest() == before  # the cached base model was not written to


def test_the_same_seed_reproduces_the_same_metrics(legal, mlruns):
    first = run_trial(legal, smoke(legal, quantization="none"), output_dir=mlruns / "a")
    second = run_trial(legal, smoke(legal, quantization="none"), output_dir=mlruns / "b")
    losses = [MlflowClient().get_metric_history(r.run_id, "train_loss")[0].value for r in (first, second)]
    assert losses[0] == losses[1]
    quality = [k for k in metric_names(legal.fields)]
    assert {k: first.metrics[k] for k in quality} == {k: second.metrics[k] for k in quality}


def test_a_crash_inside_training_leaves_a_failed_run_with_the_error(legal, mlruns):
    class Exploding(SilentReporter):
        def on_log(self, step, metrics):
            raise RuntimeError(f"boom at step {step}")

    with pytest.raises(RuntimeError, match="boom at step 2"):
        run_trial(legal, smoke(legal), reporter=Exploding(), output_dir=mlruns / "a")
    client = MlflowClient()
    (run,) = client.search_runs([client.get_experiment_by_name("legal").experiment_id])
    assert run.info.status == "FAILED"
    assert run.data.tags["harness.error"] == "RuntimeError: boom at step 2"
    assert run.data.tags["harness.state"] == "failed"


def test_a_stopped_trial_ends_its_run_killed_and_tagged_pruned(legal, mlruns):
    class StopAfterFirstEvaluation(SilentReporter):
        def __init__(self):
            self.losses = []

        def on_evaluate(self, step, validation_loss):
            self.losses.append((step, validation_loss))

        def should_stop(self, step):
            return bool(self.losses)

    reporter = StopAfterFirstEvaluation()
    config = resolve_trial_config(legal, profile="smoke", overrides={"budget.max_steps": 4})
    with pytest.raises(TrialStopped, match="stopped at step 2 on request"):
        run_trial(legal, config, reporter=reporter, evaluate_at_steps=(2,), output_dir=mlruns / "a")
    assert [step for step, _ in reporter.losses] == [2] and reporter.losses[0][1] > 0
    client = MlflowClient()
    (run,) = client.search_runs([client.get_experiment_by_name("legal").experiment_id])
    assert (run.info.status, run.data.tags["harness.state"]) == ("KILLED", "pruned")
    assert [m.step for m in client.get_metric_history(run.info.run_id, "validation_loss")] == [2]


def test_a_trial_over_the_memory_limit_is_refused_before_loading(legal, mlruns):
    with pytest.raises(HarnessError, match=r"estimated peak memory \d+ MB exceeds --max-memory 10 MB \(weights"):
        run_trial(legal, smoke(legal), max_memory_mb=10, output_dir=mlruns / "a")
    client = MlflowClient()
    experiment = client.get_experiment_by_name("legal")
    assert experiment is None or not client.search_runs([experiment.experiment_id])


def test_unknown_budget_keys_and_profiles_are_errors(legal):
    with pytest.raises(HarnessError, match=r"unknown budget key\(s\) budget.steps; known: budget.train_examples"):
        resolve_trial_config(legal, profile="smoke", overrides={"budget.steps": 3})
    with pytest.raises(HarnessError, match=r"unknown profile 'tpu'; the task defines smoke, cpu, gpu"):
        resolve_trial_config(legal, profile="tpu")
    config = resolve_trial_config(legal, profile="cpu", overrides={"budget.max_steps": 3})
    assert (config.budget.max_steps, config.budget.epochs) == (3, None)


def test_a_target_set_the_model_lacks_names_the_real_linear_layers(legal):
    import torch

    from harness.config import LoraSpec
    from harness.training import attach_lora

    class TwoLinears(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.query = torch.nn.Linear(4, 4)
            self.value = torch.nn.Linear(4, 4)

    with pytest.raises(HarnessError, match=r"'attn' names q_proj, k_proj, v_proj, o_proj.*layers are: query, value"):
        attach_lora(TwoLinears(), LoraSpec(r=4, alpha=8), quantization="none", gradient_checkpointing=False, seed=0)


def with_small_disk(size: str, mount_at: Path, command: list[str]) -> list[str]:
    """`command` run with a tmpfs of `size` mounted at `mount_at`: a disk that fills up, in a user and mount
    namespace of its own (no root needed, nothing mounted outside it)."""
    script = 'mount -t tmpfs -o size="$1" tmpfs "$2" && shift 2 && exec "$@"'
    namespace = ["unshare", "--user", "--map-root-user", "--mount"]
    if shutil.which("unshare") is None or subprocess.run([*namespace, "true"], capture_output=True).returncode:
        component_missing("unshare (util-linux) with user namespaces, to mount a small tmpfs, is not available")
    return [*namespace, "sh", "-c", script, "sh", size, str(mount_at), *command]


def test_a_full_disk_while_saving_the_adapter_fails_the_run_in_one_line_and_logs_no_figures(tmp_path, mlruns):
    small_disk = mlruns / "train"  # where `harness train` writes its adapter
    small_disk.mkdir(parents=True)
    # 64 KiB: room for what a trial writes before it saves its adapter (116 KiB of LoRA weights on the tiny model).
    command = with_small_disk("64k", small_disk, [HARNESS, "train", "legal", "--profile", "smoke"])
    result = subprocess.run(
        command,
        env={**os.environ, "HARNESS_MLRUNS": str(mlruns)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 2, result.stderr[-3000:]
    assert "error: no space left on the device" in result.stderr and "Traceback" not in result.stderr
    client = MlflowClient()
    [run] = client.search_runs([tracking.experiment_for("legal")])
    assert run.info.status == "FAILED"
    assert run.data.tags["harness.error"].startswith("no space left on the device")
    assert "f1_micro" not in run.data.metrics  # no figures for an adapter that was never saved
    assert "adapter" not in [artifact.path for artifact in client.list_artifacts(run.info.run_id)]
