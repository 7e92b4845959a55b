"""Training as a trial runs it: the answer-only loss, the CPU attention kernel, batches grouped by length, k-bit
training that keeps learning after an evaluation, and the adapter folded for generation."""

from __future__ import annotations

import tempfile
import types
from pathlib import Path

import pytest
import torch
from transformers.models.llama.modeling_llama import eager_attention_forward

from harness import model_loading, training
from harness.config import LoraSpec, resolve_trial_config
from harness.generation import generate_answers
from harness.prompts import assistant_turn, prompt_turns
from harness.task_data import load_split

BF16 = model_loading.supports_bf16()  # as a trial decides: bf16 where the hardware runs it natively


@pytest.fixture(scope="module")
def tiny():
    reference = model_loading.resolve_model("tiny:llama")
    return reference, model_loading.load_tokenizer(reference)


def conversations(task, count):
    return [{"prompt": prompt_turns(task, e.text), "completion": assistant_turn(e.fields)}
            for e in load_split(task, "train")[:count]]  # fmt: skip


def adapted(reference, quantization="none", targets="attn", seed=0):
    base = model_loading.load_for_training(reference, quantization=quantization)
    lora = LoraSpec(r=8, alpha=16, target_modules=targets)
    return training.attach_lora(base, lora, quantization=quantization, gradient_checkpointing=False, seed=seed)


def adapter_weights(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters() if "lora_" in name}


def test_fresh_adapters_come_from_the_recipe_seed_whatever_the_process_drew_before(tiny):
    """A trial must not depend on what ran before it in the process (the test session's shared study once failed
    to learn after other tests had drawn random numbers); and attaching adapters leaves the caller's draws alone."""
    reference, _ = tiny
    torch.manual_seed(1)
    first = adapter_weights(adapted(reference))
    after_first = torch.rand(3)
    torch.manual_seed(2)
    torch.rand(777)
    second = adapter_weights(adapted(reference))
    torch.manual_seed(1)
    assert torch.equal(torch.rand(3), after_first)  # the caller's random state as if no adapter had been drawn
    assert first.keys() == second.keys() and len(first) > 0
    assert all(torch.equal(first[name], second[name]) for name in first)
    other_seed = adapter_weights(adapted(reference, seed=1))
    assert not all(torch.equal(first[name], other_seed[name]) for name in first)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_cpu_training_attention_matches_eager_attention_and_its_gradients(dtype):
    torch.manual_seed(0)
    batch, heads, kv_heads, length, head_dim = 2, 6, 2, 37, 16
    module = types.SimpleNamespace(num_key_value_groups=heads // kv_heads, training=True)
    query = torch.randn(batch, heads, length, head_dim, dtype=dtype, requires_grad=True)
    key = torch.randn(batch, kv_heads, length, head_dim, dtype=dtype, requires_grad=True)
    value = torch.randn(batch, kv_heads, length, head_dim, dtype=dtype, requires_grad=True)
    mask = torch.full((length, length), torch.finfo(dtype).min, dtype=dtype).triu(1)[None, None].repeat(batch, 1, 1, 1)
    mask[1, :, :, 30:] = torch.finfo(dtype).min  # the second sequence is right-padded
    grad = torch.randn(batch, length, heads, head_dim, dtype=dtype)
    results = []
    for attention in (eager_attention_forward, training._training_attention):
        for tensor in (query, key, value):
            tensor.grad = None
        output, _ = attention(module, query, key, value, mask, head_dim**-0.5)
        output.backward(grad)
        results.append([output.detach(), query.grad, key.grad, value.grad])
    tolerance = 1e-5 if dtype == torch.float32 else 3e-2  # bf16: the softmax backward reads 16-bit probabilities
    for expected, got in zip(*results, strict=True):
        assert got.shape == expected.shape
        assert torch.allclose(got.float(), expected.float(), atol=tolerance, rtol=tolerance)


def test_the_answer_only_loss_is_the_cross_entropy_of_the_answer_tokens(legal, tiny):
    reference, tokenizer = tiny
    config = resolve_trial_config(legal, profile="smoke", overrides={"quantization": "none"})
    model = adapted(reference)
    trainer = training.build_trainer(model, tokenizer, conversations(legal, 4), config.recipe, config.budget,
                                     output_dir=Path(tempfile.mkdtemp()), bf16=BF16)  # fmt: skip
    batch = next(iter(trainer.get_train_dataloader()))
    assert (batch["labels"] != -100).sum() < 0.5 * batch["attention_mask"].sum()  # the prompt is not learnt
    with torch.no_grad():
        loss = trainer.compute_loss(model, batch)
        with trainer.accelerator.autocast():  # the same mixed precision as the loss
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        expected = torch.nn.functional.cross_entropy(
            logits[:, :-1].flatten(0, 1).float(), batch["labels"][:, 1:].flatten(), ignore_index=-100
        )
    assert loss.item() == pytest.approx(expected.item(), rel=1e-3)


def test_an_optimizer_step_is_accumulated_from_micro_batches_of_similar_length(legal, tiny):
    reference, tokenizer = tiny
    config = resolve_trial_config(legal, profile="smoke", overrides={"budget.batch_size": 8,
                                                                     "budget.micro_batch_size": 2})  # fmt: skip
    trainer = training.build_trainer(adapted(reference), tokenizer, conversations(legal, 64), config.recipe,
                                     config.budget, output_dir=Path(tempfile.mkdtemp()), bf16=BF16)  # fmt: skip
    assert trainer.args.gradient_accumulation_steps == 4 and trainer.args.per_device_train_batch_size == 2
    batches = list(trainer.get_train_dataloader())
    # Padding a micro-batch needs beyond its longest sequence (the rest rounds it up to a multiple on a CPU).
    padding = sum(int((b["attention_mask"].sum(dim=1).max() - b["attention_mask"].sum(dim=1)).sum()) for b in batches)
    tokens = sum(int(b["attention_mask"].sum()) for b in batches)
    assert len(batches) == 32 and padding < 0.02 * tokens  # grouped by length: almost no padding


@pytest.mark.skipif(torch.cuda.is_available(), reason="the padding is a CPU's (oneDNN's kernels)")
def test_on_a_cpu_micro_batches_are_padded_to_a_multiple_of_64_tokens_which_changes_no_loss(legal, tiny, monkeypatch):
    """Few matrix shapes, so few oneDNN kernels built and kept (bench/trial_memory.py); the padding is masked out."""
    reference, tokenizer = tiny
    config = resolve_trial_config(legal, profile="smoke", overrides={"quantization": "none"})
    model = adapted(reference)
    assert training.CPU_PAD_MULTIPLE == 64
    losses, widths = [], []
    for multiple in (training.CPU_PAD_MULTIPLE, None):
        monkeypatch.setattr(training, "CPU_PAD_MULTIPLE", multiple)
        trainer = training.build_trainer(model, tokenizer, conversations(legal, 4), config.recipe, config.budget,
                                         output_dir=Path(tempfile.mkdtemp()), bf16=False)  # fmt: skip
        batch = next(iter(trainer.get_train_dataloader()))
        with torch.no_grad():
            losses.append(trainer.compute_loss(model, batch).item())
        widths.append((batch["input_ids"].shape[1], int(batch["attention_mask"].sum(dim=1).max())))
    (padded_width, longest), (unpadded_width, _) = widths
    assert padded_width % 64 == 0 and longest <= padded_width < longest + 64 and unpadded_width == longest
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)


def test_training_moves_the_lora_weights_and_leaves_the_base_weights_as_they_were(tiny):
    """What the trainer's optimizer is given (the parameters that require gradients) is the adapters alone."""
    reference, _ = tiny
    model = adapted(reference)
    base_before = {name: p.detach().clone() for name, p in model.named_parameters() if "lora_" not in name}
    lora_before = adapter_weights(model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    ids = torch.randint(0, 1000, (2, 16))
    for _ in range(3):
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    lora_after, base_after = adapter_weights(model), dict(model.named_parameters())
    assert all(not torch.equal(lora_before[name], lora_after[name]) for name in lora_before if "lora_B" in name)
    assert base_before and all(torch.equal(base_before[name], base_after[name]) for name in base_before)


def test_k_bit_training_goes_on_learning_in_every_layer_after_an_evaluation(tiny):
    reference, _ = tiny
    model = adapted(reference, quantization="nf4")
    ids = torch.randint(0, 1000, (1, 16))
    model.eval()
    with torch.no_grad():
        model(input_ids=ids)  # as a pruning rung's validation loss does, mid-training
    model.train()
    model(input_ids=ids, labels=ids).loss.backward()
    first_layer = [p.grad for name, p in model.named_parameters() if "layers.0." in name and "lora_B" in name]
    assert first_layer and all(g is not None and g.abs().sum() > 0 for g in first_layer)


@pytest.mark.parametrize("quantization", ["none", "nf4"])
def test_the_folded_model_generates_what_the_adapted_model_computes(tiny, quantization):
    reference, _ = tiny
    model = adapted(reference, quantization=quantization, targets="all")
    with torch.no_grad():  # a trained adapter: B is no longer zero
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.02)
    ids = torch.randint(0, 1000, (2, 12))
    model.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=False):
        expected = model(input_ids=ids).logits.float()
    folded = training.fold_adapter_for_generation(model, dtype=torch.float32)
    assert not [m for m in folded.modules() if "lora" in type(m).__name__.lower()]
    # nothing of the adapted layers is left behind: a 4-bit base layer once stayed, dequantized, inside its fold
    plain = model_loading.load_causal_lm(reference, dtype="float32")
    assert sorted(n for n, _ in folded.named_parameters()) == sorted(n for n, _ in plain.named_parameters())
    with torch.no_grad():
        got = folded(input_ids=ids).logits.float()
    assert torch.allclose(got, expected, atol=3e-2 if BF16 or quantization == "nf4" else 1e-4)  # bf16 rounding


def test_an_adapter_left_on_its_nf4_base_answers_as_its_fold_does(legal, tiny):
    """Where the folded 16-bit model would not fit the GPUs (70B trained in nf4), a trial generates through the
    adapter on the quantized base: the same answers, from the same weights."""
    reference, tokenizer = tiny
    prompts = [prompt_turns(legal, e.text) for e in load_split(legal, "validation")[:4]]

    def answers(fold):
        model = adapted(reference, quantization="nf4", targets="all")
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if "lora_B" in name:
                    parameter.normal_(0, 0.02, generator=torch.Generator().manual_seed(len(name)))
        generating = training.model_for_generation(model, dtype=torch.float32, fold=fold)
        assert any("lora" in type(m).__name__.lower() for m in generating.modules()) is not fold
        return generate_answers(generating, tokenizer, prompts, batch_size=2, max_new_tokens=12).outputs

    unfolded = answers(fold=False)
    assert unfolded == answers(fold=True)
    assert len(unfolded) == 4 and all(unfolded)


def test_a_merge_saves_what_an_fp32_merge_saves_without_holding_the_model_in_fp32(tiny, tmp_path):
    """Registration saves the merge in bf16; each weight's sum is taken in fp32 and rounded once, so the result
    is the fp32 merge's to the bit, and no fp32 copy of the whole model is made (an 8B model: 32 GB on the GPU)."""
    reference, _ = tiny
    model = adapted(reference, targets="all")
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.02)
    model.save_pretrained(tmp_path / "adapter", safe_serialization=True)

    def base():
        return model_loading.load_for_training(reference, quantization="none")

    merged = training.merge_adapter(base(), tmp_path / "adapter")
    in_fp32 = training.fold_adapter_for_generation(training.load_adapter(base(), tmp_path / "adapter"),
                                                   dtype=torch.float32)  # fmt: skip
    assert {p.dtype for p in merged.parameters()} == {torch.bfloat16}
    expected = {name: p.detach().to(torch.bfloat16) for name, p in in_fp32.named_parameters()}
    assert expected.keys() == dict(merged.named_parameters()).keys()
    assert all(torch.equal(p, expected[name]) for name, p in merged.named_parameters())


def test_a_budget_counts_optimizer_steps_as_the_trainer_does(legal, tiny):
    reference, tokenizer = tiny
    overrides = {"budget.epochs": 1, "budget.train_examples": 10, "budget.batch_size": 4, "budget.micro_batch_size": 2}
    config = resolve_trial_config(legal, profile="smoke", overrides=overrides)
    result = training.train_adapter(adapted(reference), tokenizer, conversations(legal, 10), config.recipe,
                                    config.budget, output_dir=Path(tempfile.mkdtemp()), bf16=BF16,
                                    reporter=training.SilentReporter())  # fmt: skip
    assert result.steps == config.budget.total_steps(available_examples=10) == 3  # 5 micro-batches, 2 a step
    assert result.tokens > 0
