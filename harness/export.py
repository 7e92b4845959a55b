"""A registered version in the forms teams deploy after merging, each scored loaded back on the stored test set
beside the merged model and recorded on the version:
- GGUF (`--format gguf`), what llama.cpp and Ollama run: one file, written by llama.cpp's own converter, quantised;
- W4A16 (`--format gptq|awq`), what vLLM runs in 4 bits: int4 weights in groups, calibrated by llm-compressor
  (AutoAWQ's maintained successor) on the task's own training conversations, as a compressed-tensors checkpoint.

Where each quantisation comes from (`GGUF_QUANTS`):
- f32, f16, bf16, q8_0: llama.cpp's `convert_hf_to_gguf.py` writes them itself. The converter, its `conversion`
  package and the `gguf-py` it was written against ship in llama-cpp-python's source package on PyPI; `make setup`
  unpacks them into `.venv/share/llama.cpp` (Python only, nothing compiled);
- q5_1, q5_0, q4_1, q4_0: the converter's f32 file requantised by the `gguf` package in pure Python, every 2-D
  weight to the one type and the norms kept in f32, as `llama-quantize --pure` does;
- k-quants (q4_k_m, q6_k, ...): llama.cpp's native `llama-quantize` (built with the server by `make llama-server`)
  from the converter's f16 file. A row whose length is no multiple of the k-quants' 256-value blocks falls back to a
  legacy type (the embedded model's 576 to q5_0 and q8_0, most of its tensors): the file's tensor types, read back,
  say what it really holds. i-quants need an importance matrix from a calibration run and are refused.

The file is checked by loading it back (transformers' GGUF loader, its own tokenizer and chat template) and scoring
the stored test set, compared with the merged model's recorded figures. The adapter alone can be written too
(`convert_lora_to_gguf.py`), for llama.cpp's `--lora` on the base model's GGUF; it is read back, not scored: only
llama.cpp's runtime applies it, and that is not built here.

W4A16: llm-compressor pins a transformers release the harness has moved past, so it has a virtual environment of
its own (`.venv-llm-compressor`, made by `make setup`; `HARNESS_LLM_COMPRESSOR_PYTHON` names another interpreter)
and runs `llm_compressor_jobs/quantize_w4a16.py` there. GPTQ and AWQ both run on a GPU where there is one and on
the CPU otherwise (GPTQ: SmolLM2-135M in about 3.5 minutes on 2 cores; AWQ's grid search is about 10x slower). The
checkpoint is checked where it is deployed: served by vLLM (its W4A16 kernels; only vLLM runs them) and sent the
stored test set.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import gguf
import numpy as np
from safetensors import safe_open

from harness import processes, tracking
from harness.config import TaskConfig
from harness.errors import HarnessError
from harness.generation import AnswerReporter
from harness.model_loading import load_tokenizer, resolve_model
from harness.promotion import stored_test_metrics
from harness.prompts import assistant_turn, prompt_turns
from harness.registry import (
    find_version,
    materialise_adapter,
    materialise_lora_base,
    materialise_version,
    max_new_tokens_for,
)
from harness.serving import int4_weights_dtype, score_served
from harness.task_data import load_split
from harness.trial import evaluate_model

CONVERTER_QUANTS = ("f32", "f16", "bf16", "q8_0")  # what convert_hf_to_gguf.py writes itself (--outtype)
PYTHON_QUANTS = ("q5_1", "q5_0", "q4_1", "q4_0")  # what the gguf package quantises in Python
# What llama-quantize writes from an f16 file without an importance matrix (its names, lower-cased).
NATIVE_QUANTS = ("q2_k", "q3_k_s", "q3_k_m", "q3_k_l", "q4_k_s", "q4_k_m", "q5_k_s", "q5_k_m", "q6_k")
GGUF_QUANTS = CONVERTER_QUANTS + PYTHON_QUANTS + NATIVE_QUANTS
# The llama-cpp-python source release the converter is unpacked from (the Makefile fetches the same).
CONVERTER_RELEASE = "llama-cpp-python==0.3.36"
W4A16_FORMATS = ("gptq", "awq")  # llm-compressor's calibrations of int4 weights for vLLM
FORMATS = ("gguf", *W4A16_FORMATS)
W4A16 = "w4a16"  # the one scheme written in those formats: int4 weights, 16-bit activations
W4A16_GROUP_SIZES = (128, 64, 32)  # the widest that every row holds whole is used: 128 is the presets' own
CALIBRATION_CONVERSATIONS = 128  # llm-compressor's examples use 256-512; 128 of a task's own are plenty for GPTQ
COMPRESSOR_RELEASE = "llmcompressor==0.14.0.1"  # the Makefile installs the same
COMPRESSOR_SCRIPT = Path(__file__).parent / "llm_compressor_jobs" / "quantize_w4a16.py"
EXPORT_TAG = "harness.export"  # <tag>.<form>.<quant> on a version: the export's size, contents and scores


@dataclass(frozen=True)
class ExportedFile:
    path: Path  # a GGUF file, or a W4A16 checkpoint's directory
    quant: str
    size_bytes: int  # the weights on disk
    sha256: str  # of the weights' bytes
    tensor_types: dict[str, int]  # what it really holds: how many tensors of each type (GGML's, or int4 / bf16)


@dataclass(frozen=True)
class Export:
    name: str
    version: int
    form: str  # "gguf" (the merged model), "gguf-lora" (the adapter alone), "gptq" or "awq" (W4A16)
    file: ExportedFile
    convert_seconds: float
    test: dict[str, float]  # the file's own scores on the stored test set; empty when not checked
    merged_test: dict[str, float]  # the merged version's on the same set and budget
    merged_source: str  # where those come from (recorded on the version, or evaluated now)
    eval_set: str


def converter_dir() -> Path:
    """Where llama.cpp's converter was unpacked: `$HARNESS_LLAMA_CPP`, else `<venv>/share/llama.cpp`."""
    directory = Path(os.environ.get("HARNESS_LLAMA_CPP") or Path(sys.prefix) / "share" / "llama.cpp")
    if not (directory / "convert_hf_to_gguf.py").exists():
        raise HarnessError(
            f"llama.cpp's converter is not at {directory}: `make setup` unpacks convert_hf_to_gguf.py from the"
            f" {CONVERTER_RELEASE} source package into .venv/share/llama.cpp (or point HARNESS_LLAMA_CPP at a"
            " llama.cpp checkout)"
        )
    return directory


def check_format(format: str) -> None:
    if format not in FORMATS:
        raise HarnessError(
            f"--format {format!r}: harness exports gguf (llama.cpp, Ollama), gptq or awq (4-bit weights for vLLM)"
        )


def check_quant(quant: str, format: str = "gguf") -> str:
    if format in W4A16_FORMATS:
        if quant != W4A16:
            raise HarnessError(
                f"--format {format} writes --quant {W4A16} (int4 weights, 16-bit activations), not {quant}"
            )
        return quant
    if quant in GGUF_QUANTS:
        return quant
    if quant.lower().startswith("iq"):
        raise HarnessError(
            f"--quant {quant}: i-quants need an importance matrix from a calibration run (llama-imatrix), which harness"
            f" does not make; it writes {', '.join(GGUF_QUANTS)} (q4_k_m or q4_0 for 4 bits)"
        )
    raise HarnessError(f"--quant {quant!r} is not a GGUF type harness writes; expected one of {', '.join(GGUF_QUANTS)}")


def convert_to_gguf(model_dir: Path, out: Path, *, quant: str) -> ExportedFile:
    """A transformers model directory as one GGUF file of the given quantisation."""
    check_quant(quant)
    out.parent.mkdir(parents=True, exist_ok=True)
    if quant in CONVERTER_QUANTS:
        _run_converter("convert_hf_to_gguf.py", model_dir, out, outtype=quant)
    elif quant in PYTHON_QUANTS:
        with tempfile.TemporaryDirectory(dir=out.parent) as scratch:
            full = Path(scratch) / "f32.gguf"
            _run_converter("convert_hf_to_gguf.py", model_dir, full, outtype="f32")
            requantize(full, out, quant=quant)
    else:
        quantizer = processes.llama_cpp_binary("llama-quantize")  # before the conversion: fail fast
        with tempfile.TemporaryDirectory(dir=out.parent) as scratch:
            half = Path(scratch) / "f16.gguf"
            _run_converter("convert_hf_to_gguf.py", model_dir, half, outtype="f16")
            command = [str(quantizer), str(half), str(out), quant.upper()]
            _run_program(command, what="llama.cpp's llama-quantize", source=half)
    return describe_gguf(out, quant=quant)


def convert_adapter_to_gguf(adapter_dir: Path, base_dir: Path, out: Path, *, quant: str) -> ExportedFile:
    """A PEFT LoRA adapter as a GGUF file for llama.cpp's `--lora` (its shapes read from the base model's config)."""
    if quant not in CONVERTER_QUANTS:
        raise HarnessError(
            f"an adapter is written as {', '.join(CONVERTER_QUANTS)} (llama.cpp's converter), not {quant}"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    _run_converter("convert_lora_to_gguf.py", adapter_dir, out, outtype=quant, extra=["--base", str(base_dir)])
    return describe_gguf(out, quant=quant)


def _run_converter(script: str, source: Path, out: Path, *, outtype: str, extra: list[str] | None = None) -> None:
    command = [sys.executable, str(converter_dir() / script), str(source), *(extra or [])]
    command += ["--outfile", str(out), "--outtype", outtype]
    _run_program(command, what=f"llama.cpp's {script}", source=source)


def _run_program(
    command: list[str], *, what: str, source: Path, environment: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, capture_output=True, text=True, env=environment)
    if done.returncode != 0:
        last = [line for line in (done.stderr or done.stdout).strip().splitlines() if line.strip()][-3:]
        raise HarnessError(f"{what} failed on {source} (exit {done.returncode}): " + " / ".join(last))
    return done


def requantize(source: Path, out: Path, *, quant: str) -> None:
    """Rewrite an f32 GGUF file with every 2-D weight in `quant` (rows a multiple of its block) and everything else
    as it was: metadata, tokenizer, norms. Tensors are quantised and written one at a time (no whole model held)."""
    target = gguf.GGMLQuantizationType[quant.upper()]
    block_size, _ = gguf.GGML_QUANT_SIZES[target]
    reader = gguf.GGUFReader(source)
    writer = gguf.GGUFWriter(out, arch=str(reader.fields[gguf.Keys.General.ARCHITECTURE].contents()))
    rewritten = (gguf.Keys.General.ARCHITECTURE, gguf.Keys.General.FILE_TYPE)  # the writer's own, and the new type
    for field in reader.fields.values():
        if field.name in rewritten or field.name.startswith("GGUF."):  # GGUF.*: the header, also the writer's
            continue
        value_type = field.types[0]
        sub_type = field.types[-1] if value_type == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), value_type, sub_type=sub_type)
    writer.add_file_type(gguf.LlamaFileType[f"MOSTLY_{quant.upper()}"])

    def quantised(tensor: gguf.ReaderTensor) -> bool:
        return (
            tensor.tensor_type == gguf.GGMLQuantizationType.F32
            and tensor.data.ndim == 2
            and tensor.data.shape[-1] % block_size == 0
        )

    for tensor in reader.tensors:
        if quantised(tensor):
            byte_shape = gguf.quant_shape_to_byte_shape(tensor.data.shape, target)
            writer.add_tensor_info(tensor.name, byte_shape, np.dtype(np.uint8), int(np.prod(byte_shape)), target)
        else:
            data = tensor.data
            writer.add_tensor_info(tensor.name, data.shape, data.dtype, data.nbytes, tensor.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for tensor in reader.tensors:
        data = gguf.quants.quantize(np.asarray(tensor.data), target) if quantised(tensor) else tensor.data
        writer.write_tensor_data(data, tensor_endianess=reader.endianess)
    writer.close()


def describe_gguf(path: Path, *, quant: str) -> ExportedFile:
    """What a GGUF file really holds, read back from it: tensor types, size, digest."""
    reader = gguf.GGUFReader(path)
    types = Counter(tensor.tensor_type.name.lower() for tensor in reader.tensors)
    return ExportedFile(path, quant, path.stat().st_size, _sha256([path]), dict(types.most_common()))


def _sha256(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as file:
            while chunk := file.read(1 << 24):
                digest.update(chunk)
    return digest.hexdigest()


# W4A16: llm-compressor's GPTQ or AWQ, in its own environment.


def compressor_python() -> Path:
    return Path(
        os.environ.get("HARNESS_LLM_COMPRESSOR_PYTHON") or Path(".venv-llm-compressor") / "bin" / "python"
    ).absolute()


def w4a16_group_size(model_dir: Path) -> int:
    """The widest group (`W4A16_GROUP_SIZES`) that every quantised row holds whole. A Llama's linear layers take
    rows of hidden_size (q, k, v, gate, up), heads x head_dim (o) and intermediate_size (down): SmolLM2's 576 takes
    groups of 64, Llama 3's 2048 to 8192 the presets' 128."""
    config = json.loads((model_dir / "config.json").read_text())
    heads = config["num_attention_heads"]
    rows = {
        config["hidden_size"],
        heads * (config.get("head_dim") or config["hidden_size"] // heads),
        config["intermediate_size"],
    }
    for size in W4A16_GROUP_SIZES:
        if all(row % size == 0 for row in rows):
            return size
    raise HarnessError(
        f"{model_dir}: rows of {sorted(rows)} values hold no whole group of {W4A16_GROUP_SIZES} int4 weights;"
        " export gguf instead"
    )


def calibration_texts(task: TaskConfig, tokenizer: Any, count: int) -> list[str]:
    """The first `count` training conversations, prompt and answer, rendered as the model saw them in training:
    the quantisation is fitted to the activations the task itself produces."""
    return [
        tokenizer.apply_chat_template(prompt_turns(task, example.text) + assistant_turn(example.fields), tokenize=False)
        for example in load_split(task, "train")[:count]
    ]


def quantize_w4a16(model_dir: Path, out_dir: Path, *, method: str, texts: list[str]) -> tuple[ExportedFile, float]:
    """A merged model directory as a W4A16 compressed-tensors checkpoint in `out_dir`, calibrated by `method`
    (gptq or awq) on `texts`; returns what it holds and the calibration's seconds. An earlier export in `out_dir`
    is replaced, anything else there is refused."""
    python = compressor_python()
    if not python.exists():
        raise HarnessError(
            f"no llm-compressor environment at {python}: run `make setup` (it creates .venv-llm-compressor with"
            f" {COMPRESSOR_RELEASE}), or set HARNESS_LLM_COMPRESSOR_PYTHON to a Python that has it"
        )
    if out_dir.exists() and not _is_w4a16_checkpoint(out_dir):
        raise HarnessError(f"{out_dir} exists and is no earlier W4A16 export: choose another --out, or remove it")
    group_size = w4a16_group_size(model_dir)
    partial = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    with tempfile.TemporaryDirectory() as scratch:
        calibration = Path(scratch) / "calibration.jsonl"
        calibration.write_text("".join(json.dumps({"text": text}) + "\n" for text in texts), encoding="utf-8")
        command = [str(python), str(COMPRESSOR_SCRIPT), str(model_dir), str(partial), "--method", method]
        command += ["--calibration", str(calibration), "--group-size", str(group_size)]
        # Its own packages only: the harness environment's must not shadow llm-compressor's pinned transformers.
        environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
        done = _run_program(command, what=f"llm-compressor's {method}", source=model_dir, environment=environment)
    shutil.rmtree(out_dir, ignore_errors=True)
    partial.rename(out_dir)
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    return describe_w4a16(out_dir, quant=W4A16), float(summary["seconds"])


def _is_w4a16_checkpoint(directory: Path) -> bool:
    config = directory / "config.json"
    if not config.exists():
        return False
    return json.loads(config.read_text()).get("quantization_config", {}).get("quant_method") == "compressed-tensors"


# What a packed layer stores beside its int4 weights (compressed-tensors' names): counted with the weight.
QUANTISED_LAYER_PARTS = (".weight_scale", ".weight_zero_point", ".weight_shape", ".weight_g_idx")


def describe_w4a16(directory: Path, *, quant: str) -> ExportedFile:
    """What a compressed-tensors checkpoint really holds, read back from its safetensors headers: how many weights
    are packed int4 (each with its scales, and zero points where asymmetric) and how many tensors stay 16-bit."""
    groups = json.loads((directory / "config.json").read_text())["quantization_config"]["config_groups"]
    scheme = groups["group_0"]["weights"]
    packed = f"int{scheme['num_bits']} (groups of {scheme['group_size']})"
    files = sorted(directory.glob("*.safetensors"))
    types: Counter[str] = Counter()
    for path in files:
        with safe_open(str(path), "pt") as tensors:
            for name in tensors.keys():  # noqa: SIM118 (safe_open is no mapping)
                if name.endswith(".weight_packed"):
                    types[packed] += 1
                elif not name.endswith(QUANTISED_LAYER_PARTS):
                    types[tensors.get_slice(name).get_dtype().lower()] += 1
    size = sum(path.stat().st_size for path in files)
    return ExportedFile(directory, quant, size, _sha256(files), dict(types.most_common()))


def default_out(name: str, version: int, *, format: str, quant: str, adapter: bool = False) -> Path:
    """Where an export goes unless told: `exports/<name>-v<N>[-lora]-<quant>.gguf`, or for gptq and awq the
    directory `exports/<name>-v<N>-<format>-<quant>`."""
    if format == "gguf":
        return Path("exports") / f"{name}-v{version}{'-lora' if adapter else ''}-{quant}.gguf"
    return Path("exports") / f"{name}-v{version}-{format}-{quant}"


def export_version(
    task: TaskConfig,
    *,
    alias: str | None = None,
    version: int | None = None,
    format: str = "gguf",
    quant: str,
    adapter: bool = False,
    out: Path | None = None,
    check: bool = True,
    calibration: int | None = None,
    reporter: AnswerReporter | None = None,
) -> Export:
    """A registered version in a deployed form, scored on the stored test set beside the merged version (unless not
    `check`), and recorded on the version as `harness.export.<form>.<quant>`:
    - gguf: one GGUF file (default `exports/<name>-v<N>-<quant>.gguf`), scored loaded back by transformers; with
      `adapter`, its LoRA adapter alone (`...-lora-<quant>.gguf`, form gguf-lora), not scored;
    - gptq, awq: a W4A16 checkpoint directory (default `exports/<name>-v<N>-<format>-w4a16`), scored served by vLLM,
      calibrated on the first `calibration` training conversations (CALIBRATION_CONVERSATIONS by default)."""
    check_format(format)
    check_quant(quant, format)
    if calibration is not None and (calibration < 1 or format not in W4A16_FORMATS):
        why = "calibrate on at least one training conversation" if calibration < 1 else "only gptq and awq calibrate"
        raise HarnessError(f"--calibration {calibration}: {why}")
    if adapter and format != "gguf":
        raise HarnessError(
            "--adapter is written as GGUF, for llama.cpp's --lora; vLLM serves the PEFT adapter as it is"
            " (`harness serve --lora`)"
        )
    name = task.registered_name
    found = find_version(name, alias=alias, version=version)
    number = int(found.version)
    form = "gguf-lora" if adapter else format
    out = out or default_out(name, number, format=format, quant=quant, adapter=adapter)
    if format == "gguf":
        stage = f"converting {name} v{number}{' (adapter)' if adapter else ''} to GGUF {quant}"
    else:
        stage = f"calibrating {name} v{number} to {quant} with llm-compressor's {format}"
    if reporter is not None:
        reporter.stage(stage)
    started = time.perf_counter()
    calibrated: dict[str, Any] = {}
    if adapter:
        adapter_dir, base_dir = materialise_adapter(name, number), materialise_lora_base(name, number)
        file = convert_adapter_to_gguf(adapter_dir, base_dir, out, quant=quant)
        check = False
    elif format == "gguf":
        file = convert_to_gguf(materialise_version(name, number), out, quant=quant)
    else:
        model_dir = materialise_version(name, number)
        tokenizer = load_tokenizer(resolve_model(str(model_dir)))
        texts = calibration_texts(task, tokenizer, calibration or CALIBRATION_CONVERSATIONS)
        file, calibration_seconds = quantize_w4a16(model_dir, out, method=format, texts=texts)
        calibrated = {"calibration_conversations": len(texts), "calibration_seconds": calibration_seconds}
    convert_seconds = time.perf_counter() - started
    eval_set = task.data.eval_sets[0].name
    test: dict[str, float] = {}
    merged: dict[str, float] = {}
    merged_source = ""
    if check:
        max_new_tokens = max_new_tokens_for(task, found.tags)
        if format == "gguf":
            if reporter is not None:
                reporter.stage(f"scoring the GGUF file, loaded back, on the stored test set {eval_set}")
            scores, _ = evaluate_model(task, str(out), split="test", max_new_tokens=max_new_tokens, reporter=reporter)
            test = dict(scores.metrics)
        else:
            if reporter is not None:
                reporter.stage(f"scoring the checkpoint, served by vLLM, on the stored test set {eval_set}")
            log_path = tracking.mlruns_dir() / "serving" / f"{name}-v{number}-{format}-{quant}.log"
            test = score_served(
                task, out, load_split(task, "test"), max_tokens=max_new_tokens, dtype=int4_weights_dtype(),
                log_path=log_path,
            )  # fmt: skip
        merged, merged_source = stored_test_metrics(task, name, number, max_new_tokens, reporter=reporter)
    record = {
        "file": str(out.resolve()),
        "size_bytes": file.size_bytes,
        "sha256": file.sha256,
        "tensor_types": file.tensor_types,
        "converter": CONVERTER_RELEASE if format == "gguf" else COMPRESSOR_RELEASE,
        **calibrated,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if check:
        record |= {"eval_set": eval_set, "f1_micro": test["f1_micro"], "json_valid_rate": test["json_valid_rate"]}
        record |= {"merged_f1_micro": merged["f1_micro"]}
    tracking.tag_model_version(name, number, {f"{EXPORT_TAG}.{form}.{quant}": json.dumps(record)})
    return Export(name, number, form, file, convert_seconds, test, merged, merged_source, eval_set)


def form_name(format: str, quant: str) -> str:
    """A form as `harness pick` and the forms page name it: `gguf-q4_k_m`, `w4a16-gptq`."""
    return f"{W4A16}-{format}" if format in W4A16_FORMATS else f"{format}-{quant}"


def recorded_forms(tags: dict[str, str]) -> list[str]:
    """The forms `harness export` recorded on a version (its tags), by name."""
    forms = []
    for key in tags:
        if key.startswith(f"{EXPORT_TAG}."):
            format, _, quant = key.removeprefix(f"{EXPORT_TAG}.").partition(".")
            forms.append(form_name(format, quant))
    return sorted(forms)


def recorded_export(task: TaskConfig, *, alias: str, form: str) -> tuple[int, dict[str, Any]]:
    """The version at `alias` and what `harness export` recorded on it for `form` (`w4a16-gptq`, `gguf-q8_0`: as
    `harness pick` names forms), after checking that the export is still there and still what was recorded (its
    digest): what `harness serve --form` serves and holds its answers against."""
    name = task.registered_name
    found = find_version(name, alias=alias, hint=f" (run `harness register {task.task.name}` first)")
    number = int(found.version)
    kind, _, detail = form.partition("-")
    if kind == W4A16 and detail in W4A16_FORMATS:
        format, quant = detail, W4A16
    elif kind == "gguf" and detail in GGUF_QUANTS:
        format, quant = "gguf", detail
    else:
        adapter = (
            " (an adapter's GGUF is served on its base: llama-server --lora)" if form.startswith("gguf-lora") else ""
        )
        raise HarnessError(
            f"form {form!r} is not one harness serves{adapter}; expected {W4A16}-gptq, {W4A16}-awq or gguf-<quant>"
            f" ({', '.join(GGUF_QUANTS)})"
        )
    raw = found.tags.get(f"{EXPORT_TAG}.{format}.{quant}")
    if raw is None:
        recorded = ", ".join(recorded_forms(found.tags)) or "none"
        raise HarnessError(
            f"{name} v{number} (@{alias}) has no {form} export (recorded: {recorded}); write it with"
            f" `harness export {task.task.name} --version {number} --format {format}"
            + ("`" if format in W4A16_FORMATS else f" --quant {quant}`")
        )
    record: dict[str, Any] = json.loads(raw)
    path = Path(record["file"])
    if not path.exists():
        raise HarnessError(
            f"{name} v{number}'s {form} export was written to {path}, which is gone: write it again with"
            f" `harness export {task.task.name} --version {number} --format {format}`"
        )
    held = describe_gguf(path, quant=quant) if format == "gguf" else describe_w4a16(path, quant=quant)
    if held.sha256 != record["sha256"]:
        raise HarnessError(
            f"{path} is not the {form} export recorded on {name} v{number} (sha256 {held.sha256[:12]}, recorded"
            f" {record['sha256'][:12]}): write it again with `harness export {task.task.name} --version {number}"
            f" --format {format}`, or serve what it holds with vLLM or llama-server directly"
        )
    return number, record
