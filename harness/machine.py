"""What this machine is and can do, for the modules that only need to ask: whether CUDA is there, how many GPUs,
and the description published beside every figure (CPU model and flags, cores, memory, GPU, torch)."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import torch


def has_cuda() -> bool:
    return bool(torch.cuda.is_available())


def gpu_count() -> int:
    return int(torch.cuda.device_count())


def describe() -> dict[str, Any]:
    """The machine the figures come from: CPU model and flags that decide training speed, cores, memory, GPU."""
    import psutil

    cpu: dict[str, Any] = {"model": platform.processor() or "unknown", "flags": []}
    try:
        info = Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines()
        cpu["model"] = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
        flags = next(line.split(":", 1)[1].split() for line in info if line.startswith("flags"))
        cpu["flags"] = sorted(f for f in flags if f.startswith(("avx", "amx", "fma")))
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu["model"],
        "cpu_flags": cpu["flags"],
        "avx512_bf16": bool(torch.cpu._is_avx512_bf16_supported()),
        "cores": psutil.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "torch": torch.__version__,
    }
