"""The real-model check: LoRA on SmolLM2-135M-Instruct learns the task, and the promotion gate keeps that fine-tuned
model as champion against the zero-shot base it came from (refused, exit 1) unless forced (recorded).

Slow (about a quarter of an hour on 2 CPU cores without native bf16), so marked; CI still runs it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from harness import registry, tracking
from harness.config import load_task, resolve_trial_config
from harness.promotion import promote
from harness.trial import run_trial

HARNESS = str(Path(sys.executable).parent / "harness")
SMOLLM2 = "embedded:smollm2-135m-instruct"
STORED_TEST_EXAMPLES = 8
# A reduced cpu budget: 10 steps of 4 examples at a high learning rate. Measured on the project machine
# (python -m pytest tests/test_real_model.py -s): see docs/benchmarks.md.
REDUCED_BUDGET = {
    "budget.train_examples": 40,
    "budget.max_steps": 10,
    "budget.batch_size": 4,
    "budget.validation_examples": 8,
    "budget.max_new_tokens": 96,
    "train.learning_rate": 2e-3,
    "lora.target_modules": "all",
    "quantization": "none",
}


def promote_command(task_path: Path, mlruns: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [HARNESS, "promote", str(task_path), "--version", "2", *extra],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "HARNESS_MLRUNS": str(mlruns), "COLUMNS": "200"},
    )


@pytest.mark.slow
def test_a_fine_tuned_smollm2_beats_its_zero_shot_base_and_the_gate_keeps_it_champion(
    legal_test_head, tmp_path, monkeypatch
):
    # Every registration and promotion below scores on the stored set: 8 decisions take SmolLM2 about 30 s.
    task_path = legal_test_head(STORED_TEST_EXAMPLES)
    mlruns = tmp_path / "mlruns"
    monkeypatch.setenv("HARNESS_MLRUNS", str(mlruns))
    tracking.configure()
    task = load_task(str(task_path))
    assert task.data.eval_sets[0].name == "test-head-v1"

    fine_tuned = run_trial(
        task, resolve_trial_config(task, profile="cpu", overrides=REDUCED_BUDGET), output_dir=tmp_path / "trial"
    )
    tuned = registry.register_run(task, str(fine_tuned.run_id))
    assert tuned.version == 1 and tuned.test["n"] == STORED_TEST_EXAMPLES
    assert promote(task).verdict == "promoted"
    zero_shot = registry.register_model(task, SMOLLM2, profile="cpu")
    assert zero_shot.version == 2
    print(
        f"\nSmolLM2 on {STORED_TEST_EXAMPLES} stored test decisions:"
        f" zero-shot f1_micro {zero_shot.test['f1_micro']:.3f},"
        f" after 10 LoRA steps {tuned.test['f1_micro']:.3f} (validation {fine_tuned.metrics['f1_micro']:.3f});"
        f" json_valid {zero_shot.test['json_valid_rate']:.2f} -> {tuned.test['json_valid_rate']:.2f}"
    )
    assert tuned.test["json_valid_rate"] >= zero_shot.test["json_valid_rate"] + 0.5
    assert tuned.test["f1_micro"] >= zero_shot.test["f1_micro"] + 0.1

    # The zero-shot base is measurably worse on the stored set: the gate refuses it, the champion stays.
    refused = promote_command(task_path, mlruns)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "verdict: refused" in refused.stdout and "gate: f1_micro drops by" in refused.stdout
    assert tracking.model_aliases("legal-extractor") == {"challenger": 2, "champion": 1}
    client = MlflowClient()
    assert client.get_model_version("legal-extractor", "2").tags["harness.promotion.verdict"] == "refused"

    # --force overrides the gate, and the record says it was forced and why the gate objected.
    forced = promote_command(task_path, mlruns, "--force")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert "verdict: forced" in forced.stdout
    assert tracking.model_aliases("legal-extractor") == {"challenger": 2, "champion": 2, "previous-champion": 1}
    tags = client.get_model_version("legal-extractor", "2").tags
    assert tags["harness.promotion.verdict"] == "forced"
    assert tags["harness.promotion.reasons"].startswith("f1_micro drops by")
    decisions = client.search_runs(
        [client.get_experiment_by_name("legal").experiment_id], filter_string="tags.`harness.kind` = 'promotion'"
    )
    assert sorted(run.data.tags["harness.promotion.verdict"] for run in decisions) == ["forced", "promoted", "refused"]
