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


def lineup(name):
    from harness.plan import LINEUP

    return memory.model_shape(LINEUP[name])


@pytest.mark.parametrize(
    ("model", "gpus", "card_gib", "folds"),
    [
        ("meta-llama/Llama-3.1-70B-Instruct", 1, 80, False),  # 141 GB of bf16 weights: generate on the nf4 base
        ("meta-llama/Llama-3.1-70B-Instruct", 2, 80, True),  # split by layers: 71 GB each
        ("meta-llama/Llama-3.1-70B-Instruct", 2, 40, False),
        ("meta-llama/Llama-3.1-8B-Instruct", 1, 24, True),  # 16 GB
        ("meta-llama/Llama-3.1-8B-Instruct", 1, 16, False),
        ("meta-llama/Llama-3.2-1B-Instruct", 1, 24, True),
    ],
)
def test_a_trial_folds_its_adapter_to_generate_only_where_the_16_bit_model_fits_its_gpus(model, gpus, card_gib, folds):
    needed = memory.generation_memory(lineup(model), weight_bytes=2, batch_size=16, sequence_length=1024, gpus=gpus)
    assert memory.folds_for_generation(needed, card_gib * 1024) is folds


def test_generation_memory_is_the_16_bit_weights_split_over_the_gpus_and_a_batchs_cache():
    shape = lineup("meta-llama/Llama-3.1-70B-Instruct")
    one = memory.generation_memory(shape, weight_bytes=2, batch_size=16, sequence_length=1024)
    two = memory.generation_memory(shape, weight_bytes=2, batch_size=16, sequence_length=1024, gpus=2)
    assert one.parts_mb["weights"] / 1024 == pytest.approx(70.55e9 * 2 / 2**30, rel=0.01)  # 131 GiB
    # keys and values: 80 layers x 2 x 1024 wide x 2 bytes a token: 320 KiB, 5 GiB for 16 x 1024 tokens
    assert one.parts_mb["kv cache"] == pytest.approx(16 * 1024 * 320 / 1024)
    half_and_a_layer = one.parts_mb["weights"] / 2 + one.parts_mb["weights"] / 80
    assert two.parts_mb["weights"] == pytest.approx(half_and_a_layer, rel=0.03)
    assert two.parts_mb["kv cache"] == one.parts_mb["kv cache"] / 2
    assert memory.folds_for_generation(one, None)  # no GPU: a CPU trial folds
