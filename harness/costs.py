"""What a serving form costs, and which form to pick: plain arithmetic on measured figures and prices the user gives.

harness ships no price list (one would be stale within months, and no network is reached for one). A form's cost
follows from what was measured on it and an hourly price:

- a server paid by the hour and busy a share `utilisation` of it answers `documents_per_second x utilisation x 3600`
  documents an hour, so 1,000 documents cost `1000 x price_per_hour / (3600 x documents_per_second x utilisation)`;
- the hour splits between reading prompts (prefill) and writing answers (decode). `prefill_tokens_per_second` is
  measured apart, on requests that write one token; the decode rate is what the rest of a full run's wall time
  leaves: `output_tokens / (seconds - input_tokens / prefill_tokens_per_second)`. So a document costs exactly
  `input x price_in + output x price_out`, each per token, and the page's figures add up;
- an API is priced per million input and output tokens: a document costs `input x api_in + output x api_out`.

The throughput is the concurrency's that meets the latency target: the highest measured whose p95 is within it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

SECONDS_PER_HOUR = 3600
MILLION = 1_000_000


@dataclass(frozen=True)
class Load:
    """One form answering the same documents at one concurrency."""

    concurrency: int
    documents: int
    seconds: float  # wall time for all of them
    input_tokens: int  # prompt tokens, as the server counted them
    output_tokens: int
    p50_seconds: float
    p95_seconds: float

    @property
    def documents_per_second(self) -> float:
        return self.documents / self.seconds

    @property
    def output_tokens_per_second(self) -> float:
        return self.output_tokens / self.seconds


@dataclass(frozen=True)
class Prices:
    per_hour: float  # what the machine costs an hour
    utilisation: float = 1.0  # the share of paid hours it is busy
    api_in: float | None = None  # an API's price per 1M input tokens
    api_out: float | None = None  # and per 1M output tokens

    def __post_init__(self) -> None:
        if self.per_hour < 0:
            raise HarnessError(f"--price-per-hour must be 0 or more, got {self.per_hour}")
        if not 0 < self.utilisation <= 1:
            raise HarnessError(f"--utilisation is the busy share of the paid hours, in (0, 1]; got {self.utilisation}")
        if (self.api_in is None) != (self.api_out is None):
            raise HarnessError("give both --api-price-in and --api-price-out (per 1M tokens), or neither")


@dataclass(frozen=True)
class Cost:
    concurrency: int  # the load the figures come from
    per_1000_documents: float
    per_million_input: float
    per_million_output: float
    api_per_1000_documents: float | None  # the same documents through the API
    cheaper_than_api: float | None  # API cost / this cost


def choose_load(loads: Sequence[Load], p95_target_seconds: float | None) -> Load | None:
    """The load with the most documents a second whose p95 latency meets the target (any, without one); None when
    no measured concurrency meets it."""
    meeting = [load for load in loads if p95_target_seconds is None or load.p95_seconds <= p95_target_seconds]
    return max(meeting, key=lambda load: load.documents_per_second, default=None)


def cost(load: Load, prefill_tokens_per_second: float, prices: Prices) -> Cost:
    """The cost of serving at `load`, split into input and output by the measured prefill rate."""
    price_per_second = prices.per_hour / SECONDS_PER_HOUR / prices.utilisation
    prefill_seconds = load.input_tokens / prefill_tokens_per_second
    decode_seconds = load.seconds - prefill_seconds
    if decode_seconds <= 0:
        raise HarnessError(
            f"the prefill rate {prefill_tokens_per_second:.0f} tokens/s leaves no time for decoding in a run of"
            f" {load.seconds:.1f} s over {load.input_tokens} prompt tokens: measure both at the same concurrency"
        )
    per_input = price_per_second / prefill_tokens_per_second
    per_output = price_per_second * decode_seconds / load.output_tokens
    per_document = price_per_second * load.seconds / load.documents
    api = None
    if prices.api_in is not None and prices.api_out is not None:
        api = (load.input_tokens * prices.api_in + load.output_tokens * prices.api_out) / MILLION / load.documents
    return Cost(
        load.concurrency,
        per_document * 1000,
        per_input * MILLION,
        per_output * MILLION,
        None if api is None else api * 1000,
        None if api is None or per_document == 0 else api / per_document,
    )


def self_hosted_per_million_output(price_per_hour: float, output_tokens_per_second: float) -> float:
    """A server writing `output_tokens_per_second` all hour: its price per 1M output tokens (prompts free)."""
    return price_per_hour / (output_tokens_per_second * SECONDS_PER_HOUR) * MILLION


def price_form(form: dict[str, Any], prices: Prices, p95_target_seconds: float | None) -> dict[str, Any]:
    """A measured form (`loads`: concurrency -> Load's fields, `prefill_tokens_per_second`) with its cost at the
    busiest load that meets the latency target: `p95_seconds`, `cost_per_1000` and `cost` (None when none does)."""
    loads = [Load(**load) for load in form["loads"].values()]
    load = choose_load(loads, p95_target_seconds)
    if load is None:
        return {**form, "p95_seconds": None, "cost_per_1000": None, "cost": None}
    figures = cost(load, form["prefill_tokens_per_second"], prices)
    return {
        **form,
        "p95_seconds": load.p95_seconds,
        "cost_per_1000": figures.per_1000_documents,
        "cost": figures.__dict__,
    }


@dataclass(frozen=True)
class Constraint:
    """What a user can afford; None: no limit."""

    max_p95_seconds: float | None = None
    max_size_mb: float | None = None
    max_cost_per_1000: float | None = None

    def misses(self, candidate: dict[str, Any]) -> list[str]:
        """Why a candidate (`f1_micro`, `size_mb`, `p95_seconds`, `cost_per_1000`) fails, or [] when it meets all."""
        limits = (
            ("p95_seconds", self.max_p95_seconds, "p95 {:.2f} s > {:.2f} s"),
            ("size_mb", self.max_size_mb, "size {:.0f} MB > {:.0f} MB"),
            ("cost_per_1000", self.max_cost_per_1000, "cost {:.4f} > {:.4f} per 1,000 documents"),
        )
        missed = []
        for key, limit, text in limits:
            if limit is None:
                continue
            value = candidate.get(key)
            if value is None:
                missed.append(f"no {key} measured")
            elif value > limit:
                missed.append(text.format(value, limit))
        return missed


def read_forms_pages(pages: Sequence[Path]) -> tuple[str, list[dict[str, Any]]]:
    """The measured forms of one or more serving-forms pages (bench/serving_forms.py's JSON), and what they are of.
    Pages of several versions (the top trials of a study, each registered: `harness register --trial N`) are one
    sweep: each form is then named with its version, `legal-extractor v1 gguf-q8_0`."""
    read = []
    for page in pages:
        try:
            figures = json.loads(page.read_text())
            read.append((str(figures["model"]), list(figures["forms"])))
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise HarnessError(
                f"{page}: not a serving-forms page ({error}); write one with `.venv/bin/python bench/serving_forms.py`"
            ) from error
    if len(read) == 1:
        return read[0]
    models = [model for model, _ in read]
    if len(set(models)) < len(models):
        raise HarnessError(f"{', '.join(map(str, pages))}: two pages of the same model ({', '.join(models)})")
    forms = [{**form, "form": f"{model} {form['form']}"} for model, page_forms in read for form in page_forms]
    return " and ".join(models), forms


def pick(candidates: Sequence[dict[str, Any]], constraint: Constraint) -> dict[str, Any] | None:
    """The candidate with the best f1_micro among those meeting the constraint (the smaller one on a tie)."""
    meeting = [c for c in candidates if not constraint.misses(c)]
    return max(meeting, key=lambda c: (c["f1_micro"], -c.get("size_mb", 0.0)), default=None)


def pareto_front(
    candidates: Sequence[dict[str, Any]], cost_of: Callable[[dict[str, Any]], float]
) -> list[dict[str, Any]]:
    """The candidates no other beats on both f1_micro (higher) and `cost_of` (lower), cheapest first."""
    front = [
        c
        for c in candidates
        if not any(
            o["f1_micro"] >= c["f1_micro"]
            and cost_of(o) <= cost_of(c)
            and (o["f1_micro"] > c["f1_micro"] or cost_of(o) < cost_of(c))
            for o in candidates
        )
    ]
    return sorted(front, key=cost_of)
