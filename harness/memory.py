"""Peak memory of a trial: estimated before loading, measured while it runs.

On a CPU the measure is the process's resident set size (RSS), on a GPU the allocator's peak. The estimate adds
up what a LoRA trial holds at its peak: base weights (by quantization mode), LoRA weights with their gradients and
AdamW state, activations for one micro-batch, and, on a CPU, what the process already holds (Python, torch).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil
import torch

from harness.errors import HarnessError

MB = 1024 * 1024
# Bytes per base weight by quantization mode (nf4: 4 bits plus double-quantized block scales).
WEIGHT_BYTES = {"none_bf16": 2.0, "none_fp32": 4.0, "int8": 1.0, "nf4": 0.55}


@dataclass(frozen=True)
class MemoryEstimate:
    total_mb: float
    parts_mb: dict[str, float]

    def describe(self) -> str:
        return ", ".join(f"{name} {value:.0f} MB" for name, value in self.parts_mb.items())


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs to know of a model, read from its config.json without loading weights."""

    parameters: int  # all parameters
    embedding_parameters: int  # embedding (+ untied head): kept in 16/32 bit under quantization
    hidden_size: int
    intermediate_size: int
    layers: int
    vocab_size: int
    kv_size: int  # key/value projection width (GQA)
    attention_heads: int = 1


def read_model_shape(model_dir: Path) -> ModelShape:
    return model_shape(json.loads((model_dir / "config.json").read_text()))


def model_shape(config: dict[str, Any]) -> ModelShape:
    """A Llama-family model's shape from its config.json's keys."""
    hidden, intermediate = config["hidden_size"], config["intermediate_size"]
    layers, vocab = config["num_hidden_layers"], config["vocab_size"]
    heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or hidden // heads
    kv_size = config.get("num_key_value_heads", heads) * head_dim
    per_layer = hidden * (hidden + 2 * kv_size + hidden) + 3 * hidden * intermediate + 2 * hidden
    embeddings = vocab * hidden * (1 if config.get("tie_word_embeddings", False) else 2)
    return ModelShape(
        parameters=layers * per_layer + embeddings + hidden,
        embedding_parameters=embeddings,
        hidden_size=hidden,
        intermediate_size=intermediate,
        layers=layers,
        vocab_size=vocab,
        kv_size=kv_size,
        attention_heads=heads,
    )


def lora_parameters(shape: ModelShape, rank: int, target_modules: str) -> int:
    """A LoRA pair per targeted linear layer: rank x (in + out)."""
    h, i, kv = shape.hidden_size, shape.intermediate_size, shape.kv_size
    attention = rank * ((h + h) + (h + kv) * 2 + (h + h))
    mlp = rank * ((h + i) * 2 + (i + h))
    per_layer = {"attn": attention, "mlp": mlp, "all": attention + mlp}[target_modules]
    return shape.layers * per_layer


def estimate_peak_memory(
    shape: ModelShape,
    *,
    quantization: str,
    bf16: bool,
    lora_rank: int,
    target_modules: str,
    lora_dropout: float,
    batch_size: int,
    sequence_length: int,
    gradient_checkpointing: bool,
    on_gpu: bool,
) -> MemoryEstimate:
    """Estimate a trial's peak memory before anything is loaded."""
    compute_bytes = 2 if bf16 else 4
    kind = quantization if quantization != "none" else ("none_bf16" if bf16 else "none_fp32")
    dense = shape.parameters - shape.embedding_parameters
    weights = dense * WEIGHT_BYTES[kind] + shape.embedding_parameters * compute_bytes
    lora = lora_parameters(shape, lora_rank, target_modules)
    # LoRA weights in fp32 + gradient + AdamW's two moments.
    adapter_state = lora * 4 * 4
    tokens = batch_size * sequence_length  # one micro-batch
    # Per layer and token: the residual stream, attention inputs/outputs and the MLP's wide intermediates are
    # kept for the backward pass; checkpointing keeps one hidden state per layer instead.
    per_layer_token = shape.hidden_size * (2 if gradient_checkpointing else 8) + (
        0 if gradient_checkpointing else 4 * shape.intermediate_size
    )
    if lora_dropout > 0:
        # LoRA dropout keeps its own copy of each adapted layer's input for the backward pass.
        h, i = shape.hidden_size, shape.intermediate_size
        per_layer_token += {"attn": 4 * h, "mlp": 2 * h + i, "all": 6 * h + i}[target_modules]
    activations: float = tokens * shape.layers * per_layer_token * compute_bytes
    if not on_gpu and not gradient_checkpointing:
        # CPU training attention keeps its 16-bit probabilities: heads x the causal blocks' share (5/8) of length².
        activations += batch_size * shape.layers * shape.attention_heads * sequence_length**2 * 5 / 8 * 2
    # The loss projects only the answer positions (about a fifth of a sequence): their logits, log-softmax and
    # gradient in fp32.
    logits = tokens * 0.2 * shape.vocab_size * 4 * 3
    parts = {
        "weights": weights / MB,
        "adapter+optimizer": adapter_state / MB,
        "activations": activations / MB,
        "logits": logits / MB,
    }
    if not on_gpu:
        # The process itself: interpreter, torch, transformers, TRL. Measured, not guessed.
        parts["process"] = psutil.Process().memory_info().rss / MB
        # Loading reads the checkpoint through the page cache; its pages count towards RSS while mapped.
        parts["loading"] = shape.parameters * compute_bytes / MB
    return MemoryEstimate(total_mb=sum(parts.values()), parts_mb=parts)


# The CUDA context and cuBLAS's workspace: on the card, but not in torch.cuda.max_memory_allocated.
CUDA_CONTEXT_MB = 512.0


def generation_memory(
    shape: ModelShape, *, weight_bytes: float, batch_size: int, sequence_length: int, gpus: int = 1
) -> MemoryEstimate:
    """Peak memory per GPU of generating answers with a model of plain `weight_bytes` weights (2: the adapter
    folded into bf16), split by layers over `gpus` GPUs: the weights (the busiest GPU a layer more, its share of
    the embeddings and head), the key/value cache of a batch of `sequence_length` tokens, the last position's
    logits in fp32, and the CUDA context."""
    dense_per_layer = (shape.parameters - shape.embedding_parameters) / shape.layers
    weights = shape.parameters * weight_bytes / gpus + (dense_per_layer * weight_bytes if gpus > 1 else 0.0)
    kv_cache = batch_size * sequence_length * shape.layers * 2 * shape.kv_size * 2 / gpus  # keys and values, bf16
    logits = batch_size * shape.vocab_size * 4
    parts = {"weights": weights / MB, "kv cache": kv_cache / MB, "logits": logits / MB, "cuda context": CUDA_CONTEXT_MB}
    return MemoryEstimate(total_mb=sum(parts.values()), parts_mb=parts)


def folds_for_generation(estimate: MemoryEstimate, gpu_memory_mb: float | None) -> bool:
    """Whether a trial folds its adapter into plain 16-bit weights to generate (faster than through the adapter on
    a quantized base, which dequantizes every layer for every token), given what the folded model needs per GPU
    (`generation_memory`) and what the smallest GPU holds; None: no GPU (a CPU trial's model is small enough to
    fold, and the host's memory is not a card's). A model trained in nf4 because its 16-bit weights do not fit
    (70B: 141 GB on an 80 GB card) generates through the adapter on its quantized base instead, in the memory
    training had."""
    return gpu_memory_mb is None or estimate.total_mb <= gpu_memory_mb


# oneDNN (PyTorch's bf16 matmuls on a CPU) keeps every kernel it builds, one per matrix shape, up to 1024 by
# default at about 0.5 MB each. A search runs trial after trial in one process, each with shapes of its own (rank,
# target modules), so the kept kernels grew into every later trial's peak. 256 holds one trial's (163 for the seed
# recipe at the cpu budget) at the same speed. oneDNN reads this once, at the process's first matmul: set on import,
# as the estimate's probe and every trial import this module first. A value the user set wins.
KERNEL_CACHE_CAPACITY = 256
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", str(KERNEL_CACHE_CAPACITY))

# glibc's mallopt parameters (malloc.h) and the values a trial runs with.
M_MMAP_THRESHOLD, M_ARENA_MAX = -3, -8
MMAP_THRESHOLD_BYTES = 32 * MB  # glibc's ceiling for it


def keep_the_heap_compact() -> None:
    """Allocate blocks of 32 MB and more (logits, attention scores) straight from the OS, and keep to two heaps.

    A trial allocates and frees activations of a different size at every step (sequence lengths differ), and
    glibc's heap fragments around them: legal's seed-recipe trial's RSS grew from 2.1 GB after 6 steps to 3.15 GB
    after 40 with glibc's defaults. Mapped blocks go back to the OS when freed, but every one is mapped and zeroed
    page by page again at the next step. At a 2 MB threshold that was cheap for legal's sequences of 400 tokens and
    ruinous for legal-ru's of 900: 530,000 page faults a second, as much kernel time as compute, 19 s a step where
    32 MB steps in 7.7 (4 refit steps, 2 AMD EPYC Zen 5 cores; peak 4.6 GB against 3.5; legal's trial 2.2 s a step
    against 2.4, peak 2.21 GB against 2.11). glibc only; elsewhere nothing changes."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
        libc.mallopt(M_ARENA_MAX, 2)


def release_freed_memory() -> None:
    """Hand memory that Python and torch have freed back to the operating system.

    glibc keeps freed heap pages mapped: after training, the activations' pages would stay in the process's RSS and
    the generation that follows would stack its own on top of them. `malloc_trim` returns them (glibc only; a no-op
    elsewhere). On a GPU, torch's caching allocator keeps freed blocks reserved in the same way: another process
    (vLLM, asking for 90% of the card) would find them taken."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def check_memory_limit(estimate: MemoryEstimate, limit_mb: float | None) -> None:
    if limit_mb is not None and estimate.total_mb > limit_mb:
        raise HarnessError(
            f"estimated peak memory {estimate.total_mb:.0f} MB exceeds --max-memory {limit_mb:.0f} MB"
            f" ({estimate.describe()}); lower the batch size, max_seq_length or rank, or quantize"
        )


class PeakMemory:
    """Measures peak memory while the `with` block runs: RSS sampled on a CPU, the allocator's peak on a GPU."""

    def __init__(self, interval_seconds: float = 0.05) -> None:
        self.interval = interval_seconds
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._process = psutil.Process()

    @property
    def peak_mb(self) -> float:
        return self.peak_bytes / MB

    def so_far_mb(self) -> float:
        """The peak from the block's start to now (training's, read before generation folds the adapter in)."""
        if torch.cuda.is_available():
            return torch.cuda.max_memory_allocated() / MB
        self.peak_bytes = max(self.peak_bytes, self._process.memory_info().rss)  # a reading the sampler may miss
        return self.peak_bytes / MB

    def __enter__(self) -> PeakMemory:
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
        if torch.cuda.is_available():
            self.peak_bytes = torch.cuda.max_memory_allocated()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, self._process.memory_info().rss)
            self._stop.wait(self.interval)
