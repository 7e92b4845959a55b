"""What the model is shown and asked to produce: the chat turns, and the answer's JSON Schema."""

from __future__ import annotations

import json

import jsonschema
import pytest

from harness.prompts import (
    assistant_turn,
    compact_json,
    output_schema,
    prompt_turns,
    summarise_token_counts,
    token_counts,
)
from harness.task_data import load_split

pytestmark = pytest.mark.fast  # the fast tier: no process started, no training (make test-fast)


def test_the_prompt_is_the_instruction_as_system_turn_then_the_document_as_user_turn(legal):
    system, user = prompt_turns(legal, "DECISION ...")
    assert system == {"role": "system", "content": legal.task.instruction.strip()}
    assert user == {"role": "user", "content": "DECISION ..."}


def test_with_describe_fields_the_system_turn_says_what_each_field_means(legal):
    described = legal.model_copy(update={"task": legal.task.model_copy(update={"describe_fields": True})})
    system, _ = prompt_turns(described, "DECISION ...")
    lines = system["content"].splitlines()
    assert lines[0] == legal.task.instruction.strip() and lines[1] == "What each key means:"
    assert lines[2:] == [f"- {name}: {spec.description}" for name, spec in legal.fields.items()]
    assert "- initiator: Who filed what this ruling decides" in system["content"]


def test_the_chat_template_adds_no_default_system_prompt_of_its_own(legal):
    from harness.model_loading import load_tokenizer, resolve_model

    tokenizer = load_tokenizer(resolve_model("tiny:llama"))  # the SmolLM2 tokenizer and chat template
    text = tokenizer.apply_chat_template(prompt_turns(legal, "DECISION ..."), tokenize=False)
    assert "SmolLM" not in text and text.count("<|im_start|>system") == 1


def test_the_answer_is_compact_json_of_the_gold_fields():
    [turn] = assistant_turn({"plaintiff": 'LLC "Vostok"', "claim_amount": 1500.5})
    assert turn == {"role": "assistant", "content": '{"plaintiff":"LLC \\"Vostok\\"","claim_amount":1500.5}'}


def test_every_stored_gold_answer_satisfies_the_output_schema(legal):
    schema = output_schema(legal)
    jsonschema.Draft202012Validator.check_schema(schema)
    for example in load_split(legal, "test"):
        jsonschema.validate(json.loads(assistant_turn(example.fields)[0]["content"]), schema)


def test_the_output_schema_requires_every_field_and_only_those(legal):
    schema = output_schema(legal)
    assert schema["required"] == list(legal.fields) and schema["additionalProperties"] is False
    assert schema["properties"]["decision"]["anyOf"][0] == {
        "type": "string",
        "enum": ["satisfied", "partially_satisfied", "dismissed"],
    }
    assert schema["properties"]["claim_amount"]["anyOf"] == [{"type": "number"}, {"type": "null"}]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"decision": "granted"}, "'granted' is not one of \\['satisfied'"),
        ({"claim_amount": "1,500 rubles"}, "is not valid under any of the given schemas"),
        ({"judge": "Ivanov"}, "Additional properties are not allowed"),
    ],
)
def test_the_output_schema_rejects_off_schema_answers(legal, change, reason):
    answer = {**load_split(legal, "test")[0].fields, **change}
    with pytest.raises(jsonschema.ValidationError, match=reason):
        jsonschema.validate(answer, output_schema(legal))


def test_the_output_schema_rejects_an_answer_missing_a_field(legal):
    answer = dict(load_split(legal, "test")[0].fields)
    del answer["initiator"]
    with pytest.raises(jsonschema.ValidationError, match="'initiator' is a required property"):
        jsonschema.validate(answer, output_schema(legal))


def test_token_counts_split_one_example_into_its_prompt_and_its_answer(legal):
    from harness.model_loading import load_tokenizer, resolve_model

    tokenizer = load_tokenizer(resolve_model("tiny:llama"))  # the SmolLM2 tokenizer and chat template
    example = load_split(legal, "validation")[0]
    prompt, answer = token_counts(tokenizer, legal, example.text, example.fields)
    whole = tokenizer.apply_chat_template(
        prompt_turns(legal, example.text) + assistant_turn(example.fields), tokenize=True
    )
    cued = tokenizer.apply_chat_template(prompt_turns(legal, example.text), tokenize=True, add_generation_prompt=True)
    as_ids = [ids["input_ids"] if hasattr(ids, "keys") else ids for ids in (whole, cued)]
    assert prompt == len(as_ids[1]) and prompt + answer == len(as_ids[0])
    # The answer is its JSON's tokens and the template's end of turn (<|im_end|> and a newline).
    json_tokens = len(tokenizer(compact_json(example.fields), add_special_tokens=False)["input_ids"])
    assert answer == json_tokens + 2


def test_a_splits_token_summary_gives_the_spread_and_counts_what_the_budget_cannot_train():
    counts = [(100 + i, 20) for i in range(100)]  # prompts of 100 .. 199 tokens, answers of 20
    summary = summarise_token_counts([*counts, (300, 90)], max_seq_length=200)
    assert summary == {
        # mean 15,250 / 101; p95 the 96th of 101
        "prompt tokens (min / mean / p95 / max)": "100 / 151 / 195 / 300",
        "answer tokens (max)": "90",
        "over 200": "20",  # 180 + 20 is 200 and fits; 181 .. 199 and the 300 + 90 do not
    }
    assert summarise_token_counts(counts, max_seq_length=400)["over 400"] == "-"
