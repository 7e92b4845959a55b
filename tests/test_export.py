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
from harness.config import load_task
from harness.errors import HarnessError

HARNESS = str(Path(sys.executable).parent / "harness")
TINY_NORMS = 2 * 2 + 1  # two per layer, and the final one
TINY_MATRICES = 2 * 7 + 1  # q, k, v, o, gate, up, down per layer, and the (tied) embedding


@pytest.fixture(scope="module")
def tiny() -> Path:
    return model_loading.resolve_model("tiny:llama").path


def weights(directory: Path) -> dict[str, torch.Tensor]:
    return load_file(directory / "model.safetensors")


def llama_config(directory: Path, hidden: int, intermediate: int, heads: int) -> Path:
    directory.mkdir()
    (directory / "config.json").write_text(
        json.dumps({"hidden_size": hidden, "intermediate_size": intermediate, "num_attention_heads": heads})
    )
    return directory


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
    with pytest.raises(HarnessError, match=r"--format 'exl2': harness exports gguf .*, gptq or awq"):
        export.check_format("exl2")
    with pytest.raises(HarnessError, match=r"--format awq writes --quant w4a16 .*, not q4_0"):
        export.check_quant("q4_0", "awq")


def test_calibration_is_asked_of_gptq_and_awq_only_and_on_at_least_one_conversation():
    """Refused before any version is looked up or converted."""
    legal = load_task("legal")
    with pytest.raises(HarnessError, match="--calibration 64: only gptq and awq calibrate"):
        export.export_version(legal, alias="champion", format="gguf", quant="q4_0", calibration=64)
    with pytest.raises(HarnessError, match="--calibration 0: calibrate on at least one training conversation"):
        export.export_version(legal, alias="champion", format="gptq", quant="w4a16", calibration=0)


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


def export_challenger(smoke_study, out: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """`harness export` of the smoke study's v1 as a user types it; it must succeed."""
    command = [HARNESS, "export", str(smoke_study.task_path), "--alias", "challenger", *options, "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    return done


def test_exporting_the_champion_writes_the_file_scores_it_and_records_it_on_the_version(smoke_study, smoke_store):
    """The command as a user types it, on the smoke study's v1 (the tiny model): the file, the two scores on the
    stored test set (the file's, loaded back, and the merged model's), and the record on the version."""
    out = smoke_store.parent / "v1-q8_0.gguf"
    done = export_challenger(smoke_study, out, "--quant", "q8_0")
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
    done = export_challenger(smoke_study, out, "--adapter", "--quant", "f16")
    assert "not scored: only llama.cpp's runtime applies a GGUF adapter" in done.stdout
    version = tracking.model_version("legal-extractor", version=1)
    record = json.loads(version.tags["harness.export.gguf-lora.f16"])
    adapted = json.loads((registry.materialise_adapter("legal-extractor", 1) / "adapter_config.json").read_text())
    layers = 2 * len(adapted["target_modules"])  # the tiny model's two layers
    assert record["tensor_types"] == {"f16": 2 * layers}  # lora_a and lora_b each
    assert "f1_micro" not in record
    reader = gguf.GGUFReader(out)
    assert reader.fields["adapter.lora.alpha"].contents() == adapted["lora_alpha"]


@pytest.mark.fast
def test_w4a16_groups_are_the_widest_that_every_row_holds_whole(tmp_path):
    """Llama 3.1 8B's rows (4096, 14336) take the presets' 128; SmolLM2's 576 only 64; rows of 100 none."""
    assert export.w4a16_group_size(llama_config(tmp_path / "8b", 4096, 14336, 32)) == 128
    assert export.w4a16_group_size(llama_config(tmp_path / "smollm2", 576, 1536, 9)) == 64
    with pytest.raises(HarnessError, match=r"rows of \[100, 300\] values hold no whole group .*export gguf instead"):
        export.w4a16_group_size(llama_config(tmp_path / "odd", 100, 300, 4))


def test_the_makefile_installs_the_llm_compressor_the_exporter_names():
    makefile = (Path(__file__).parent.parent / "Makefile").read_text()
    assert f"COMPRESSOR_PACKAGE := {export.COMPRESSOR_RELEASE}" in makefile


def test_a_missing_llm_compressor_environment_says_how_to_make_it(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_LLM_COMPRESSOR_PYTHON", str(tmp_path / "python"))
    with pytest.raises(HarnessError, match=r"no llm-compressor environment at .*: run `make setup`"):
        export.quantize_w4a16(tiny, tmp_path / "out", method="gptq", texts=["x"])


def test_a_w4a16_export_will_not_overwrite_a_directory_it_did_not_write(tiny, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(HarnessError, match="exists and is no earlier W4A16 export: choose another --out"):
        export.quantize_w4a16(tiny, tmp_path / "mine", method="gptq", texts=["x"])
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


@pytest.mark.parametrize(("method", "symmetric"), [("gptq", True), ("awq", False)])
def test_gptq_and_awq_write_int4_weights_that_dequantise_to_the_original_within_a_step(tiny, tmp_path, method,
                                                                                      symmetric):  # fmt: skip
    """llm-compressor on the CPU, in its own environment, calibrated on the task's conversations: every linear
    layer but the (tied) embedding's packed in 4 bits, in groups of the tiny model's 128, and read back as the
    weights they came from: rounding alone is off by at most half a step (a quarter on average); GPTQ moves some
    weights further to make up for their neighbours' errors, and AWQ scales channels, so nearly all are within a
    step, none beyond three (measured: 76-84% within half a step, 97-99% within one, at most 2.3)."""
    from harness.config import load_task

    task = load_task("legal")
    texts = export.calibration_texts(task, model_loading.load_tokenizer(model_loading.resolve_model(str(tiny))), 8)
    assert texts[0].count("<|im_start|>assistant") == 1 and texts[0].rstrip().endswith("<|im_end|>")
    written, seconds = export.quantize_w4a16(tiny, tmp_path / method, method=method, texts=texts)
    assert seconds > 0
    assert written.tensor_types == {"int4 (groups of 128)": TINY_MATRICES - 1, "bf16": TINY_NORMS + 1}
    config = json.loads((tmp_path / method / "config.json").read_text())["quantization_config"]
    scheme = config["config_groups"]["group_0"]["weights"]
    assert (config["quant_method"], scheme["num_bits"], scheme["symmetric"]) == ("compressed-tensors", 4, symmetric)
    assert not list((tmp_path / method).glob("*.bin")) and not (tmp_path / f"{method}.partial").exists()
    packed = load_file(tmp_path / method / "model.safetensors")
    original = weights(tiny)
    name = "model.layers.0.mlp.down_proj"
    scale = packed[f"{name}.weight_scale"].float()  # one per group of 128 inputs, per output row
    codes = unpack_int4(packed[f"{name}.weight_packed"], original[f"{name}.weight"].shape)
    zero = packed[f"{name}.weight_zero_point"] if not symmetric else None
    offset = 8 if symmetric else unpack_int4(zero.T, (scale.shape[1], scale.shape[0])).T.float()
    groups = codes.view(codes.shape[0], -1, 128).float()
    dequantised = ((groups - (offset if symmetric else offset.unsqueeze(-1))) * scale.unsqueeze(-1)).flatten(1)
    steps = (dequantised - original[f"{name}.weight"].float()).abs() / scale.repeat_interleave(128, dim=1)
    assert steps.mean() < 0.5 and (steps <= 1).float().mean() > 0.95 and steps.max() < 3, steps.max()
    # An export of the same directory again replaces it.
    again, _ = export.quantize_w4a16(tiny, tmp_path / method, method=method, texts=texts)
    assert again.tensor_types == written.tensor_types


def unpack_int4(packed: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """compressed-tensors' pack-quantized layout: eight 4-bit values per int32, lowest bits first, stored offset."""
    shifts = torch.arange(0, 32, 4, dtype=torch.int32)
    values = (packed.to(torch.int32).unsqueeze(-1) >> shifts) & 0xF
    return values.flatten(-2)[..., : shape[1]].reshape(shape)


def test_serving_a_form_the_version_lacks_names_the_forms_it_has_and_the_export_command(smoke_study, smoke_store):
    tracking.tag_model_version("legal-extractor", 1, {"harness.export.gguf.q8_0": json.dumps({"file": "x"})})
    with pytest.raises(HarnessError) as refused:
        export.recorded_export(smoke_study.task, alias="challenger", form="w4a16-gptq")
    assert str(refused.value) == (
        "legal-extractor v1 (@challenger) has no w4a16-gptq export (recorded: gguf-q8_0); write it with"
        f" `harness export {smoke_study.task.task.name} --version 1 --format gptq`"
    )
    with pytest.raises(HarnessError, match=r"form 'gguf-lora-f16' is not one harness serves \(an adapter's GGUF"):
        export.recorded_export(smoke_study.task, alias="challenger", form="gguf-lora-f16")
    with pytest.raises(HarnessError, match=r"form 'q4_k_m' is not one harness serves; expected w4a16-gptq"):
        export.recorded_export(smoke_study.task, alias="challenger", form="q4_k_m")


def test_an_export_changed_or_gone_since_it_was_recorded_is_not_served(tiny, smoke_study, smoke_store, tmp_path):
    written = export.convert_to_gguf(tiny, tmp_path / "tiny-q8_0.gguf", quant="q8_0")
    record = {"file": str(written.path), "sha256": written.sha256}
    tracking.tag_model_version("legal-extractor", 1, {"harness.export.gguf.q8_0": json.dumps(record)})
    assert export.recorded_export(smoke_study.task, alias="challenger", form="gguf-q8_0") == (1, record)
    with written.path.open("r+b") as file:  # one byte of the weights changed after the export
        file.seek(-1, 2)
        last = file.read(1)
        file.seek(-1, 2)
        file.write(bytes([last[0] ^ 1]))
    with pytest.raises(HarnessError, match=r"tiny-q8_0.gguf is not the gguf-q8_0 export recorded on legal-extractor"):
        export.recorded_export(smoke_study.task, alias="challenger", form="gguf-q8_0")
    written.path.unlink()
    with pytest.raises(HarnessError, match=r"written to .*tiny-q8_0.gguf, which is gone: write it again with"):
        export.recorded_export(smoke_study.task, alias="challenger", form="gguf-q8_0")
