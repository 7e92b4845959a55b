"""`harness export`: a registered version as a GGUF file written by llama.cpp's own converter, quantised, loaded
back with its own tokenizer and scored, and recorded on the version. Real converter, real files, the tiny model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import gguf
import pytest
import torch
from safetensors.torch import load_file

from harness import export, model_loading, registry, tracking
from harness.errors import HarnessError

HARNESS = str(Path(sys.executable).parent / "harness")
TINY_NORMS = 2 * 2 + 1  # two per layer, and the final one
TINY_MATRICES = 2 * 7 + 1  # q, k, v, o, gate, up, down per layer, and the (tied) embedding


@pytest.fixture(scope="module")
def tiny() -> Path:
    return model_loading.resolve_model("tiny:llama").path


def weights(directory: Path) -> dict[str, torch.Tensor]:
    return load_file(directory / "model.safetensors")


@pytest.mark.parametrize("quant", ["q8_0", "q4_0"])
def test_every_matrix_is_quantised_and_the_norms_stay_f32(tiny, tmp_path, quant):
    written = export.convert_to_gguf(tiny, tmp_path / f"tiny-{quant}.gguf", quant=quant)
    assert written.tensor_types == {quant: TINY_MATRICES, "f32": TINY_NORMS}  # read back from the file
    assert written.size_bytes == (tmp_path / f"tiny-{quant}.gguf").stat().st_size
    assert len(written.sha256) == 64


@pytest.mark.parametrize(("quant", "bound"), [("f16", 1e-3), ("q8_0", 1 / 120), ("q4_0", 1 / 8)])
def test_the_file_loads_back_with_each_weight_within_its_quantisation_error(tiny, tmp_path, quant, bound):
    """Each weight read back from the file is off by at most a quantisation step's worth: half of a block's largest
    value over 127 for q8_0; for q4_0 a whole step, the block's largest over 8, where the scale's sign clips its
    other side at 7 (bounded here by the tensor's largest value); the tokenizer is the file's own."""
    path = export.convert_to_gguf(tiny, tmp_path / f"tiny-{quant}.gguf", quant=quant).path
    loaded = model_loading.resolve_model(str(path))
    assert loaded.path.name.startswith(f"gguf-tiny-{quant}-")
    original, back = weights(tiny), weights(loaded.path)
    assert set(back) == set(original)
    for name, tensor in original.items():
        error = (back[name].float() - tensor.float()).abs().max().item()
        assert error <= bound * tensor.abs().max().item() + 1e-7, (name, error)
    quantised = original["model.layers.0.mlp.down_proj.weight"]
    assert not torch.equal(back["model.layers.0.mlp.down_proj.weight"], quantised)  # it really was quantised
    turns = [{"role": "user", "content": "Дело № А40-12345/2024: ООО «Восток»"}]
    tokenizers = [model_loading.load_tokenizer(m) for m in (model_loading.resolve_model(str(tiny)), loaded)]
    prompts = [t.apply_chat_template(turns, tokenize=False, add_generation_prompt=True) for t in tokenizers]
    assert prompts[0] == prompts[1]
    assert tokenizers[0](prompts[0])["input_ids"] == tokenizers[1](prompts[1])["input_ids"]


def test_i_quants_and_unknown_types_are_refused_with_what_is_written_instead():
    with pytest.raises(HarnessError, match=r"i-quants need an importance matrix .*q4_k_m or q4_0 for 4 bits"):
        export.check_quant("iq4_xs")
    with pytest.raises(HarnessError, match="'q3' is not a GGUF type harness writes; expected one of f32, f16"):
        export.check_quant("q3")
    with pytest.raises(HarnessError, match=r"AWQ and GPTQ calibrate .* on a CUDA GPU"):
        export.check_format("awq")


def test_a_k_quant_without_llama_quantize_names_how_to_build_it(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_LLAMA_QUANTIZE", str(tmp_path / "llama-quantize"))
    with pytest.raises(HarnessError, match=r"no llama-quantize at .*: run `make llama-server`"):
        export.convert_to_gguf(tiny, tmp_path / "tiny-q4_k_m.gguf", quant="q4_k_m")
    assert not (tmp_path / "tiny-q4_k_m.gguf").exists()


@pytest.mark.skipif(
    not (Path(sys.prefix) / "bin" / "llama-quantize").exists(), reason="llama-quantize not built (make llama-server)"
)
def test_a_k_quant_file_says_which_tensors_fell_back_to_a_legacy_type(tiny, tmp_path):
    """llama-quantize's q6_k needs rows of a multiple of 256 values: the tiny model's two down projections (rows of
    256) get it, its other matrices (rows of 128) fall back to q8_0; the file's own tensor types say so, and it
    still loads back."""
    written = export.convert_to_gguf(tiny, tmp_path / "tiny-q6_k.gguf", quant="q6_k")
    assert written.tensor_types == {"q6_k": 2, "q8_0": TINY_MATRICES - 2, "f32": TINY_NORMS}
    assert model_loading.resolve_model(str(written.path)).path.name.startswith("gguf-tiny-q6_k-")


def test_a_missing_converter_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_LLAMA_CPP", str(tmp_path))
    with pytest.raises(HarnessError, match=f"converter is not at {tmp_path}: `make setup` unpacks"):
        export.convert_to_gguf(tmp_path, tmp_path / "x.gguf", quant="f16")


def test_the_makefile_unpacks_the_release_the_exporter_names():
    release = export.CONVERTER_RELEASE.split("==")[1]
    assert f"LLAMA_CPP_RELEASE := {release}" in (Path(__file__).parent.parent / "Makefile").read_text()


def test_exporting_the_champion_writes_the_file_scores_it_and_records_it_on_the_version(smoke_study, smoke_store):
    """The command as a user types it, on the smoke study's v1 (the tiny model): the file, the two scores on the
    stored test set (the file's, loaded back, and the merged model's), and the record on the version."""
    out = smoke_store.parent / "v1-q8_0.gguf"
    done = subprocess.run(
        [HARNESS, "export", str(smoke_study.task_path), "--alias", "challenger", "--quant", "q8_0", "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"legal-extractor v1 -> {out}" in done.stdout
    assert "tensors: 15 q8_0, 5 f32" in done.stdout
    assert "test-head-v1: f1_micro" in done.stdout and "from the GGUF file" in done.stdout
    record = json.loads(tracking.model_version("legal-extractor", version=1).tags["harness.export.gguf.q8_0"])
    assert record["size_bytes"] == out.stat().st_size
    assert record["tensor_types"] == {"q8_0": TINY_MATRICES, "f32": TINY_NORMS}
    assert record["eval_set"] == "test-head-v1"
    assert 0.0 <= record["f1_micro"] <= 1.0 and 0.0 <= record["merged_f1_micro"] <= 1.0
    assert f"{record['f1_micro']:.4f} from the GGUF file, {record['merged_f1_micro']:.4f} merged" in done.stdout


def test_the_adapter_alone_is_written_for_llama_cpps_lora_and_recorded_unscored(smoke_study, smoke_store):
    """llama.cpp's LoRA GGUF: an A and a B matrix per adapted layer, its alpha in the metadata; no scores, since
    only llama.cpp's runtime applies it."""
    out = smoke_store.parent / "v1-lora-f16.gguf"
    command = [HARNESS, "export", str(smoke_study.task_path), "--alias", "challenger", "--adapter", "--quant", "f16"]
    done = subprocess.run([*command, "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "not scored: only llama.cpp's runtime applies a GGUF adapter" in done.stdout
    version = tracking.model_version("legal-extractor", version=1)
    record = json.loads(version.tags["harness.export.gguf-lora.f16"])
    adapted = json.loads((registry.materialise_adapter("legal-extractor", 1) / "adapter_config.json").read_text())
    layers = 2 * len(adapted["target_modules"])  # the tiny model's two layers
    assert record["tensor_types"] == {"f16": 2 * layers}  # lora_a and lora_b each
    assert "f1_micro" not in record
    reader = gguf.GGUFReader(out)
    assert reader.fields["adapter.lora.alpha"].contents() == adapted["lora_alpha"]
