"""The GPU check (bench/gpu_check.py) and what it carries (bench/gpu_carry.py): where there is no GPU it says so in
one line; where a step cannot run it says why; a trial's planned and measured peaks come out side by side; the
carried packages are what the image lacks, never what it has."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).parent.parent


def load_bench(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


gpu_check = load_bench("gpu_check")
gpu_carry = load_bench("gpu_carry")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU: the check would run")
def test_without_a_gpu_the_check_says_so_in_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "gpu-check.json"
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines() == [
        f"gpu check: skipped, torch {torch.__version__} sees no CUDA GPU here (nothing run)"
    ]
    assert not out.exists()


def test_a_step_that_cannot_run_says_which_modules_are_missing_and_how_to_bring_them():
    step = gpu_check.Step("tiny-bf16", ["train", "legal"], ("torch", "no_such_module_here"), 60)
    assert gpu_check.why_not(step, {}) == (
        "not importable here: no_such_module_here (make gpu-carry prepares wheels that travel)"
    )


def test_a_step_after_a_failed_one_says_it_needs_it(monkeypatch):
    monkeypatch.setenv("HARNESS_VLLM_PYTHON", sys.executable)
    serving = next(step for step in gpu_check.STEPS if step.name == "serve-check")
    failed = {"search": gpu_check.Outcome("search", "failed", 12.0, "exit 1")}
    assert gpu_check.why_not(serving, failed) == "needs step search, which did not pass"
    assert gpu_check.why_not(serving, {"search": gpu_check.Outcome("search", "ok")}) == ""


def test_serving_without_vllm_is_not_run_and_says_so(monkeypatch, tmp_path):
    monkeypatch.setenv("HARNESS_VLLM_PYTHON", str(tmp_path / "python"))
    serving = next(step for step in gpu_check.STEPS if step.name == "serve-check")
    assert gpu_check.why_not(serving, {}).startswith(f"no vLLM here ({tmp_path / 'python'}")


def test_a_trials_planned_and_measured_peaks_come_out_side_by_side():
    """Training's peak against the estimate (which is of training); the trial's whole peak (the fold's on a GPU)
    beside it."""
    printed = 'training...\n{"f1_micro": 0.5, "train_loss": 1.25, "peak_memory_mb": 1200.0, ' \
              '"train_peak_memory_mb": 900.0, "estimated_peak_memory_mb": 750.0, "n": 4}\n'  # fmt: skip
    step = next(step for step in gpu_check.STEPS if step.name == "tiny-bf16")
    figures = gpu_check.figures_of(step, printed)
    assert figures == {"train_loss": 1.25, "f1_micro": 0.5, "peak_memory_mb": 1200.0, "train_peak_memory_mb": 900.0,
                       "estimated_peak_memory_mb": 750.0, "measured_over_planned": 1.2}  # fmt: skip


def test_the_carry_holds_what_the_checks_steps_import_and_nothing_the_image_has():
    needed = gpu_carry.closure(gpu_carry.ROOTS)
    assert {"trl", "datasets", "mlflow-skinny", "optuna", "sqlalchemy", "pydantic-core"} <= set(needed)
    assert not set(needed) & gpu_carry.IMAGE_HAS  # torch, transformers, numpy ... are there already
    assert "bitsandbytes" not in needed  # too big to travel, named as left out
    for name, version in needed.items():
        assert version == importlib.metadata.version(name)  # the versions the tests pass with


def test_the_split_step_needs_two_gpus_and_says_so_where_there_are_fewer(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    split = next(step for step in gpu_check.STEPS if step.name == "split-2gpu")
    assert gpu_check.why_not(split, {}) == "needs 2 GPUs; this machine shows 1"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert not gpu_check.why_not(split, {}).startswith("needs 2 GPUs")
