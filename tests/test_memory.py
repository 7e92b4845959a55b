"""harness.memory: how a trial's process keeps its memory small."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from harness import memory, model_loading

# 300 bf16 matmuls of distinct shapes, then the first shape again: is its kernel still in oneDNN's cache?
PROBE = """
import harness.memory, torch
weight = torch.ones(64, 64, dtype=torch.bfloat16)
for rows in range(64, 364):  # (tiny matmuls do not go through oneDNN)
    torch.ones(rows, 64, dtype=torch.bfloat16) @ weight
print("again", flush=True)
torch.ones(64, 64, dtype=torch.bfloat16) @ weight
"""


def kernel_cache_probe(**env: str) -> str:
    """In a fresh process that imports harness.memory (with `env`): was the first shape's kernel rebuilt
    ('cache_miss') or found ('cache_hit')?"""
    environment = {k: v for k, v in os.environ.items() if k != "ONEDNN_PRIMITIVE_CACHE_CAPACITY"}
    environment |= {"ONEDNN_VERBOSE": "profile_create", **env}
    done = subprocess.run([sys.executable, "-c", PROBE], env=environment, capture_output=True, text=True, check=True)
    after = done.stdout.split("again", 1)[1]
    return "cache_miss" if "create:cache_miss" in after else "cache_hit"


@pytest.mark.skipif(not model_loading.supports_bf16(), reason="bf16 matmuls run on oneDNN only where native")
def test_a_trial_process_keeps_256_onednn_kernels_unless_the_user_says_otherwise():
    """A search's trials each build their own kernels (one per matrix shape, ~0.5 MB each): kept without bound
    they grew into every later trial's peak memory."""
    assert memory.KERNEL_CACHE_CAPACITY == 256
    assert kernel_cache_probe() == "cache_miss"  # 300 shapes: the first one's kernel was dropped
    assert kernel_cache_probe(ONEDNN_PRIMITIVE_CACHE_CAPACITY="1024") == "cache_hit"
