"""A registered version in the form llama.cpp and Ollama deploy: one GGUF file, written by llama.cpp's own
converter, quantised, read back and scored on the stored test set beside the merged model, and recorded on the
version.

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
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import gguf
import numpy as np

from harness import processes, tracking
from harness.config import TaskConfig
from harness.errors import HarnessError
from harness.generation import AnswerReporter
from harness.promotion import stored_test_metrics
from harness.registry import (
    find_version,
    materialise_adapter,
    materialise_lora_base,
    materialise_version,
    max_new_tokens_for,
)
from harness.trial import evaluate_model

CONVERTER_QUANTS = ("f32", "f16", "bf16", "q8_0")  # what convert_hf_to_gguf.py writes itself (--outtype)
PYTHON_QUANTS = ("q5_1", "q5_0", "q4_1", "q4_0")  # what the gguf package quantises in Python
# What llama-quantize writes from an f16 file without an importance matrix (its names, lower-cased).
NATIVE_QUANTS = ("q2_k", "q3_k_s", "q3_k_m", "q3_k_l", "q4_k_s", "q4_k_m", "q5_k_s", "q5_k_m", "q6_k")
GGUF_QUANTS = CONVERTER_QUANTS + PYTHON_QUANTS + NATIVE_QUANTS
# The llama-cpp-python source release the converter is unpacked from (the Makefile fetches the same).
CONVERTER_RELEASE = "llama-cpp-python==0.3.36"
EXPORT_TAG = "harness.export"  # <tag>.gguf.<quant> on a version: the file's size, contents and scores


@dataclass(frozen=True)
class GgufFile:
    path: Path
    quant: str
    size_bytes: int
    sha256: str
    tensor_types: dict[str, int]  # what the file really holds: how many tensors of each GGML type


@dataclass(frozen=True)
class Export:
    name: str
    version: int
    form: str  # "gguf" (the merged model) or "gguf-lora" (the adapter alone)
    file: GgufFile
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
    if format != "gguf":
        raise HarnessError(
            f"--format {format!r}: harness exports gguf. AWQ and GPTQ calibrate their quantisation on a CUDA GPU"
            " (llm-compressor, AutoAWQ's maintained successor) and are not built yet: serve the merged version with"
            " vLLM (`harness serve`), or export gguf for llama.cpp"
        )


def check_quant(quant: str) -> str:
    if quant in GGUF_QUANTS:
        return quant
    if quant.lower().startswith("iq"):
        raise HarnessError(
            f"--quant {quant}: i-quants need an importance matrix from a calibration run (llama-imatrix), which harness"
            f" does not make; it writes {', '.join(GGUF_QUANTS)} (q4_k_m or q4_0 for 4 bits)"
        )
    raise HarnessError(f"--quant {quant!r} is not a GGUF type harness writes; expected one of {', '.join(GGUF_QUANTS)}")


def convert_to_gguf(model_dir: Path, out: Path, *, quant: str) -> GgufFile:
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
            _run_program([str(quantizer), str(half), str(out), quant.upper()], what="llama-quantize", source=half)
    return describe_gguf(out, quant=quant)


def convert_adapter_to_gguf(adapter_dir: Path, base_dir: Path, out: Path, *, quant: str) -> GgufFile:
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
    _run_program(command, what=script, source=source)


def _run_program(command: list[str], *, what: str, source: Path) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        last = [line for line in (done.stderr or done.stdout).strip().splitlines() if line.strip()][-3:]
        raise HarnessError(f"llama.cpp's {what} failed on {source} (exit {done.returncode}): " + " / ".join(last))


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


def describe_gguf(path: Path, *, quant: str) -> GgufFile:
    """What a GGUF file really holds, read back from it: tensor types, size, digest."""
    reader = gguf.GGUFReader(path)
    types = Counter(tensor.tensor_type.name.lower() for tensor in reader.tensors)
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1 << 24):
            digest.update(chunk)
    return GgufFile(path, quant, path.stat().st_size, digest.hexdigest(), dict(types.most_common()))


def export_version(
    task: TaskConfig,
    *,
    alias: str | None = None,
    version: int | None = None,
    quant: str,
    adapter: bool = False,
    out: Path | None = None,
    check: bool = True,
    reporter: AnswerReporter | None = None,
) -> Export:
    """A registered version as a GGUF file (default `exports/<name>-v<N>-<quant>.gguf`), scored on the stored test
    set beside the merged version (unless not `check`), and recorded on the version as `harness.export.gguf.<quant>`;
    with `adapter`, its LoRA adapter alone (`...-lora-<quant>.gguf`, `harness.export.gguf-lora.<quant>`), not scored."""
    check_quant(quant)
    name = task.registered_name
    found = find_version(name, alias=alias, version=version)
    number = int(found.version)
    form = "gguf-lora" if adapter else "gguf"
    out = out or Path("exports") / f"{name}-v{number}{'-lora' if adapter else ''}-{quant}.gguf"
    if reporter is not None:
        reporter.stage(f"converting {name} v{number}{' (adapter)' if adapter else ''} to GGUF {quant}")
    started = time.perf_counter()
    if adapter:
        adapter_dir, base_dir = materialise_adapter(name, number), materialise_lora_base(name, number)
        file = convert_adapter_to_gguf(adapter_dir, base_dir, out, quant=quant)
        check = False
    else:
        file = convert_to_gguf(materialise_version(name, number), out, quant=quant)
    convert_seconds = time.perf_counter() - started
    eval_set = task.data.eval_sets[0].name
    test: dict[str, float] = {}
    merged: dict[str, float] = {}
    merged_source = ""
    if check:
        max_new_tokens = max_new_tokens_for(task, found.tags)
        if reporter is not None:
            reporter.stage(f"scoring the GGUF file, loaded back, on the stored test set {eval_set}")
        scores, _ = evaluate_model(task, str(out), split="test", max_new_tokens=max_new_tokens, reporter=reporter)
        test = dict(scores.metrics)
        merged, merged_source = stored_test_metrics(task, name, number, max_new_tokens, reporter=reporter)
    record = {
        "file": str(out.resolve()),
        "size_bytes": file.size_bytes,
        "sha256": file.sha256,
        "tensor_types": file.tensor_types,
        "converter": CONVERTER_RELEASE,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if check:
        record |= {"eval_set": eval_set, "f1_micro": test["f1_micro"], "json_valid_rate": test["json_valid_rate"]}
        record |= {"merged_f1_micro": merged["f1_micro"]}
    tracking.tag_model_version(name, number, {f"{EXPORT_TAG}.{form}.{quant}": json.dumps(record)})
    return Export(name, number, form, file, convert_seconds, test, merged, merged_source, eval_set)
