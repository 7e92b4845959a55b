"""The GPU check (bench/gpu_check.py) and what it carries (bench/gpu_carry.py): where there is no GPU it says so in
one line; where a step cannot run it says why; a trial's planned and measured peaks come out side by side; the
carried packages are what the image lacks, never what it has."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch

from harness import model_loading
from harness.config import load_task, parse_set_options, resolve_trial_config

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


def test_a_step_that_needs_what_cannot_travel_says_so_and_not_how_to_carry_it(monkeypatch):
    monkeypatch.setitem(gpu_check.DOES_NOT_TRAVEL, "no_such_package_here", "94 MB, does not travel")
    step = gpu_check.Step("smollm2-bf16", ["train", "legal"], ("torch", "no_such_package_here"), 60)
    assert gpu_check.why_not(step, {}) == "not importable here: no_such_package_here (94 MB, does not travel)"


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


@pytest.mark.parametrize("name", ["tiny-bf16", "tiny-nf4", "smollm2-bf16"])
def test_each_training_step_trains_what_its_name_says(name):
    """harness's own resolution of the step's command: `harness train` runs the seed recipe, which is nf4, unless
    the command says otherwise."""
    step = next(step for step in gpu_check.STEPS if step.name == name)
    task, profile = step.command[1], step.command[step.command.index("--profile") + 1]
    options = [step.command[i + 1] for i, word in enumerate(step.command) if word == "--set"]
    config = resolve_trial_config(load_task(task), profile=profile, overrides=parse_set_options(options))
    assert config.recipe.quantization == {"bf16": "none", "nf4": "nf4"}[name.split("-")[1]]
    assert config.budget.max_steps == 8


def test_a_trials_planned_and_measured_peaks_come_out_side_by_side():
    """Training's peak against the estimate (which is of training); the trial's whole peak (the fold's on a GPU)
    beside it."""
    printed = 'training...\n{"f1_micro": 0.5, "final_train_loss": 1.25, "peak_memory_mb": 1200.0, ' \
              '"train_peak_memory_mb": 900.0, "estimated_peak_memory_mb": 750.0, "n": 4}\n'  # fmt: skip
    step = next(step for step in gpu_check.STEPS if step.name == "tiny-bf16")
    figures = gpu_check.figures_of(step, printed)
    assert figures == {"final_train_loss": 1.25, "f1_micro": 0.5, "peak_memory_mb": 1200.0,
                       "train_peak_memory_mb": 900.0, "estimated_peak_memory_mb": 750.0,
                       "measured_over_planned": 1.2}  # fmt: skip


def test_the_carry_holds_what_the_image_lacks_or_holds_at_a_version_harness_does_not_admit():
    needed, unverified = gpu_carry.closure(gpu_carry.ROOTS)
    assert {"trl", "datasets", "mlflow-skinny", "optuna", "sqlalchemy", "pydantic-core"} <= set(needed)  # missing
    assert gpu_carry.IMAGE["transformers"] == "5.17.0" and "transformers" in needed  # harness asks >=5.20
    assert gpu_carry.IMAGE["peft"] is None and "peft" in needed  # a version nobody recorded may be too old
    assert gpu_carry.IMAGE["accelerate"] == "1.15.0" and "accelerate" not in needed  # meets harness's >=1.15
    assert "numpy" not in needed and "safetensors" not in needed  # recorded, and what is asked of them
    assert "torch" not in needed  # the image's CUDA build is what the check is for
    assert "bitsandbytes" in needed  # slimmed to the image's CUDA libraries, it fits
    for name, version in needed.items():
        assert version == importlib.metadata.version(name)  # the versions the tests pass with
    assert set(unverified) == {"pyarrow", "pandas"}  # too big to carry: reported, with what is asked of them
    assert unverified["pyarrow"].contains("24.0.0") and not unverified["pyarrow"].contains("23.0.0")


def test_a_slimmed_wheel_keeps_the_images_cuda_library_and_the_record_of_what_it_keeps(tmp_path):
    wheel = tmp_path / "bitsandbytes-0.50.2-py3-none-manylinux_2_24_x86_64.whl"
    libraries = ["cpu", "cuda130", "cuda128", "cuda132", "rocm71", "xpu2025"]
    members = ["bitsandbytes/__init__.py", *(f"bitsandbytes/libbitsandbytes_{name}.so" for name in libraries)]
    record = "bitsandbytes-0.50.2.dist-info/RECORD"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name in members:
            archive.writestr(name, name * 100)
        archive.writestr(record, "".join(f"{name},sha256=x,{len(name) * 100}\n" for name in members) + f"{record},,\n")
    gpu_carry.slim(wheel, gpu_carry.NOT_FOR_THIS_IMAGE["bitsandbytes"])
    kept = members[:3]
    with zipfile.ZipFile(wheel) as archive:
        assert archive.namelist() == [*kept, record]
        assert archive.read(kept[2]) == kept[2].encode() * 100
        assert [row.split(",")[0] for row in archive.read(record).decode().splitlines()] == [*kept, record]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU: the check would run for real")
def test_a_rehearsal_runs_a_step_on_the_cpu_and_a_check_cut_short_keeps_what_it_found(tmp_path):
    """What the check does on a GPU, done here: the tiny model built from a carried tokenizer, harness's own command
    in a store of its own, its printed result read into figures (the last loss, the planned peak beside the
    measured one) and written down before the next step starts, so that a device call's hard limit, killing the
    check during `search`, leaves the JSON of what was done."""
    carry = tmp_path / "carry"
    tiny = model_loading.tiny_llama_dir(seed=0)
    shutil.copytree(tiny, carry / "tokenizer", ignore=shutil.ignore_patterns("*.safetensors", "config.json"))
    out = tmp_path / "gpu-check.json"
    command = [sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--rehearse", "--only", "tiny-bf16,search"]
    check = subprocess.Popen([*command, "--carry", str(carry), "--out", str(out)], start_new_session=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while not out.exists() and check.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert out.exists(), check.communicate(timeout=10)[0] if check.poll() is not None else "no report in 300 s"
        report = json.loads(out.read_text())
    finally:
        os.killpg(check.pid, signal.SIGKILL)  # the check and the search it started
        check.wait(timeout=30)
    assert report["complete"] is False and [step["step"] for step in report["steps"]] == ["tiny-bf16"]
    assert report["device"]["rehearsal_on_cpu"] and report["device"]["cores"] == os.cpu_count()
    assert isinstance(report["unmet_requirements"], list)
    [step] = report["steps"]
    assert step["status"] == "ok", step["why"]
    figures = step["figures"]
    assert 0 < figures["final_train_loss"] < 20 and figures["gpus"] == 0
    measured, planned = figures["train_peak_memory_mb"], figures["estimated_peak_memory_mb"]
    assert figures["measured_over_planned"] == round(measured / planned, 3)


def test_steps_left_out_by_only_are_not_run_and_say_so(tmp_path):
    out = tmp_path / "gpu-check.json"
    command = [sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--rehearse", "--only", "serve-check"]
    done = subprocess.run([*command, "--carry", str(tmp_path), "--out", str(out)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "HARNESS_VLLM_PYTHON": str(tmp_path / "python")})  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert report["complete"] is True
    steps = {step["step"]: (step["status"], step["why"]) for step in report["steps"]}
    assert steps["tiny-bf16"] == steps["search"] == ("not run", "not among --only")
    assert steps["serve-check"][0] == "not run" and steps["serve-check"][1].startswith("no vLLM here")


def test_a_step_not_among_the_checks_is_refused_by_name():
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--only", "tiny-bf16,tiny-fp8"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2
    assert "no such step: tiny-fp8; the steps: tiny-bf16, tiny-nf4, split-2gpu" in done.stderr


def test_the_split_step_needs_two_gpus_and_says_so_where_there_are_fewer(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    split = next(step for step in gpu_check.STEPS if step.name == "split-2gpu")
    assert gpu_check.why_not(split, {}) == "needs 2 GPUs; this machine shows 1"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert not gpu_check.why_not(split, {}).startswith("needs 2 GPUs")
