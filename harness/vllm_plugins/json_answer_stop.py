"""A vLLM logits processor that ends an answer where the offline evaluation ends it: once the braces it generated
balance, the next token is the end of the turn.

Offline generation stops each sequence at that point (`harness.generation.JsonObjectClosed`, the same per-token
brace count). Without this, a model that did not learn to end its turn goes on after its JSON until `max_tokens`:
the evaluated answer and the served one would differ, and every client would pay for (and have to cut) the rest.
An answer that never opens a brace is left alone, as offline. A request opts out with
`"vllm_xargs": {"json_answer_stop": "off"}` in its body; one that cannot end its turn now (`ignore_eos`, no end
token, or the end token forbidden at this step by its JSON Schema, `min_tokens` or `bad_words`) is left alone too:
the processor only ever brings the end forward, never overrides what the request allows.

This file runs inside vLLM's server process (its own virtual environment), loaded by `--logits-processors
json_answer_stop:JsonAnswerStop` with this directory on PYTHONPATH; it imports vLLM and nothing of the harness.
"""

from __future__ import annotations

from typing import Any

from vllm.tokenizers import cached_tokenizer_from_config
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor, MoveDirectionality

OPT_OUT = "json_answer_stop"  # the `vllm_xargs` key; "off", "false", "no", "0", false or 0 turn it off
OFF = {"off", "false", "no", "0"}


class _Answer:
    """One request's running brace count over the tokens it generated so far."""

    def __init__(self, output_token_ids: list[int], end_of_turn: int) -> None:
        self.output_token_ids = output_token_ids  # vLLM's live list: it grows as the request generates
        self.end_of_turn = end_of_turn  # the token this request stops at
        self.counted = 0
        self.opened = 0
        self.closed = 0

    def is_closed(self, opens: list[int], closes: list[int]) -> bool:
        tokens = self.output_token_ids
        # Under asynchronous scheduling the newest tokens are placeholders (-1) until vLLM writes them in: count
        # up to the first one and come back for the rest.
        while self.counted < len(tokens) and tokens[self.counted] >= 0:
            token = tokens[self.counted]
            if token < len(opens):  # the model's vocabulary may be padded past the tokenizer's
                self.opened += opens[token]
                self.closed += closes[token]
            self.counted += 1
        return self.opened > 0 and self.closed >= self.opened


def _stops_at(params: Any) -> int | None:
    """The end-of-turn token this request stops at, or None when the processor should leave it alone."""
    setting = (getattr(params, "extra_args", None) or {}).get(OPT_OUT, "on")
    if setting in (False, 0) or str(setting).lower() in OFF:
        return None
    return getattr(params, "eos_token_id", None)  # None under ignore_eos: ending the turn would not stop it


class JsonAnswerStop(LogitsProcessor):
    def __init__(self, vllm_config: Any, device: Any, is_pin_memory: bool) -> None:
        tokenizer = cached_tokenizer_from_config(vllm_config.model_config)
        if tokenizer is None:
            raise ValueError("json_answer_stop needs the tokenizer to count braces: drop --skip-tokenizer-init")
        self.start(tokenizer.convert_ids_to_tokens(list(range(len(tokenizer)))))

    def start(self, vocabulary: list[str | None]) -> None:
        """Count each token's braces once."""
        self.opens = [token.count("{") if token else 0 for token in vocabulary]
        self.closes = [token.count("}") if token else 0 for token in vocabulary]
        self.answers: dict[int, _Answer] = {}  # batch index -> its request's answer

    def is_argmax_invariant(self) -> bool:
        return False  # it changes what greedy decoding picks: the end of the turn

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        if batch_update is None:
            return
        for index in batch_update.removed:
            self.answers.pop(index, None)
        for index, params, _, output_token_ids in batch_update.added:
            end_of_turn = _stops_at(params)
            if end_of_turn is None:
                self.answers.pop(index, None)
            else:
                self.answers[index] = _Answer(output_token_ids, end_of_turn)
        for a, b, direction in batch_update.moved:
            first, second = self.answers.pop(a, None), self.answers.pop(b, None)
            if first is not None:
                self.answers[b] = first
            if second is not None and direction == MoveDirectionality.SWAP:
                self.answers[a] = second

    def apply(self, logits: Any) -> Any:
        for index, answer in self.answers.items():
            if index >= logits.shape[0] or not answer.is_closed(self.opens, self.closes):
                continue
            if logits[index, answer.end_of_turn] == float("-inf"):
                continue  # the request may not end here (its grammar, min_tokens, bad_words): not ours to overrule
            logits[index] = float("-inf")
            logits[index, answer.end_of_turn] = 0.0
        return logits
