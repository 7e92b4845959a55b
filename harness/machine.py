"""What this machine is and can do, for the modules that only need to ask: whether CUDA is there, how many GPUs,
and the description published beside every figure (CPU model and flags, cores, memory, GPU, torch)."""

from __future__ import annotations

import contextlib
import os
import platform
from pathlib import Path
from typing import Any

import torch

from harness.errors import HarnessError


def has_cuda() -> bool:
    return bool(torch.cuda.is_available())


def gpu_count() -> int:
    return int(torch.cuda.device_count())


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES names them; empty on a CPU machine."""
    named = os.environ.get("CUDA_VISIBLE_DEVICES")
    if named is not None:
        return [gpu.strip() for gpu in named.split(",") if gpu.strip() and gpu.strip() != "-1"]
    return [str(i) for i in range(gpu_count())]


def trial_gpu_environment(environment: dict[str, str], gpus: list[str], per_trial: int) -> dict[str, str]:
    """The environment for a trial's process where this one sees `gpus`: the first `per_trial` of them (its
    profile's gpus_per_trial), over which the trial splits its model by layers. Not all: Trainer wraps a model it
    finds on one of several visible GPUs in nn.DataParallel, which TRL refuses, so every trial would fail; the
    other GPUs are for other workers (`--n-workers`)."""
    if len(gpus) == per_trial or not gpus:
        return environment
    if len(gpus) < per_trial:
        raise HarnessError(
            f"a trial splits its model over {per_trial} GPUs (the profile's gpus_per_trial) and this process sees"
            f" {len(gpus)} (CUDA_VISIBLE_DEVICES={','.join(gpus)})"
        )
    return {**environment, "CUDA_VISIBLE_DEVICES": ",".join(gpus[:per_trial])}


def gpu_memory_gib(device: int = 0) -> float:
    return float(torch.cuda.get_device_properties(device).total_memory / 2**30)


def smallest_gpu_memory_mb() -> float | None:
    """What the smallest GPU this process sees holds, in MB; None on a CPU machine."""
    if not has_cuda():
        return None
    return min(gpu_memory_gib(device) for device in range(gpu_count())) * 1024


def choose_profile(task: Any, profile: str, *, trains: bool = False) -> tuple[str, str]:
    """The task profile to run and why: `auto` is gpu where CUDA is available, else cpu. A command that `trains`
    refuses a GPU profile (gpu, or any sized for a GPU) without CUDA: its model (Llama 3.1 8B, say) would train on
    the CPU for days."""
    chosen_spec = task.profiles.get(profile)
    gpu_profile = profile == "gpu" or (chosen_spec is not None and chosen_spec.sized_for is not None)
    if gpu_profile and trains and not has_cuda():
        build = (
            f"torch {torch.__version__} is a CPU build"
            if torch.version.cuda is None
            else f"torch {torch.__version__} is built for CUDA {torch.version.cuda} but sees no GPU"
        )
        raise HarnessError(
            f"profile {profile} trains on a CUDA GPU and this machine has none ({build}): use --profile cpu or auto"
            " here, or run on a GPU machine (`harness plan TASK --gpu ...` says what it needs)"
        )
    if chosen_spec is not None and trains and has_cuda() and len(visible_gpus()) < chosen_spec.gpus_per_trial:
        raise HarnessError(
            f"profile {profile} splits each trial's model over {chosen_spec.gpus_per_trial} GPUs and this machine"
            f" shows {len(visible_gpus())} (CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')})"
        )
    if profile != "auto":
        return profile, "asked for"
    chosen = "gpu" if has_cuda() else "cpu"
    why = task.profiles[chosen].why if chosen in task.profiles else ""
    return chosen, f"auto: {why}" if why else "auto"


def cpu_info() -> tuple[str, list[str]]:
    """The CPU's model name and the flags that decide training speed (AVX, AMX, FMA), from Linux's /proc/cpuinfo
    (psutil does not read the model name); elsewhere what `platform` knows."""
    model, flags = platform.processor() or "an unknown CPU", []
    with contextlib.suppress(OSError, StopIteration):
        info = Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines()
        model = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
        every_flag = next(line.split(":", 1)[1].split() for line in info if line.startswith("flags"))
        flags = sorted(f for f in every_flag if f.startswith(("avx", "amx", "fma")))
    return model, flags


def cpu_generation() -> str | None:
    """The CPU's family and model numbers ("family 25 model 17"): a virtual machine's model name is often just
    "AMD EPYC", which hides a generation that changes training speed (Zen 4 and Zen 5 both say it)."""
    with contextlib.suppress(OSError):
        info = dict(
            line.split(":", 1) for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines() if ":" in line
        )
        numbers = {key.strip(): value.strip() for key, value in info.items()}
        if "cpu family" in numbers and "model" in numbers:
            return f"family {numbers['cpu family']} model {numbers['model']}"
    return None


def describe() -> dict[str, Any]:
    """The machine the figures come from: CPU model and flags that decide training speed, cores, memory, GPU."""
    import psutil

    model, flags = cpu_info()
    return {
        "cpu": model,
        "cpu_generation": cpu_generation(),
        "cpu_flags": flags,
        "avx512_bf16": bool(torch.cpu._is_avx512_bf16_supported()),
        "cores": psutil.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "torch": torch.__version__,
    }
