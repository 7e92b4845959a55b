"""The real-model check: LoRA on SmolLM2-135M-Instruct learns the task, measured against its zero-shot baseline.

Slow (about a quarter of an hour on 2 CPU cores without native bf16), so marked; CI still runs it.
"""

from __future__ import annotations

import pytest

from harness import tracking
from harness.config import resolve_trial_config
from harness.trial import evaluate_model, run_trial

VALIDATION_EXAMPLES = 32
# A reduced cpu budget: 10 steps of 4 examples at a high learning rate. Measured on the project machine
# (python -m pytest tests/test_real_model.py -s): see the README's figures.
REDUCED_BUDGET = {
    "budget.train_examples": 40,
    "budget.max_steps": 10,
    "budget.batch_size": 4,
    "budget.validation_examples": VALIDATION_EXAMPLES,
    "budget.max_new_tokens": 96,
    "train.learning_rate": 2e-3,
    "lora.target_modules": "all",
    "quantization": "none",
}


@pytest.mark.slow
def test_lora_fine_tune_of_smollm2_beats_its_zero_shot_baseline(legal, tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_MLRUNS", str(tmp_path / "mlruns"))
    tracking.configure()
    zero_shot, _ = evaluate_model(
        legal, "embedded:smollm2-135m-instruct", split="validation", limit=VALIDATION_EXAMPLES, max_new_tokens=96
    )
    config = resolve_trial_config(legal, profile="cpu", overrides=REDUCED_BUDGET)
    fine_tuned = run_trial(legal, config)
    before, after = zero_shot.metrics["f1_micro"], fine_tuned.metrics["f1_micro"]
    print(
        f"\nSmolLM2 on {VALIDATION_EXAMPLES} validation examples: zero-shot f1_micro {before:.3f},"
        f" after 10 LoRA steps {after:.3f}; json_valid {zero_shot.metrics['json_valid_rate']:.2f}"
        f" -> {fine_tuned.metrics['json_valid_rate']:.2f}"
    )
    assert fine_tuned.metrics["json_valid_rate"] >= zero_shot.metrics["json_valid_rate"] + 0.5
    assert after >= before + 0.1
