"""Regression checks on stored eval sets: a model's metrics on every digest-checked set against the expectations
committed beside it, as `harness regress` and as `pytest -m regression` run them.

Expectations live in `<eval set's directory>/expectations/<eval set>/<model key>.json`: for each metric the
expected value and the tolerance below it that still passes. `--update-baseline` writes them from a run.
A model is `models:/NAME@ALIAS` or `models:/NAME/VERSION` (the registry), `runs:/RUN_ID/model` (a logged model),
`rules` (the rule-based reference of the built-in legal data) or any model spec `harness eval` takes.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.config import DEFAULT_MAX_NEW_TOKENS, EvalSetSpec, TaskConfig
from harness.errors import HarnessError
from harness.predictions import score_answers
from harness.task_data import load_eval_set, rule_baseline

if TYPE_CHECKING:  # generation imports torch; checking the rule baseline needs none
    from harness.generation import AnswerReporter

DEFAULT_TOLERANCE = 0.01
RULES = "rules"
# Figures that measure the model's answers; `n` and timings are not expectations.
NOT_CHECKED = ("n", "eval_seconds", "eval_tokens_per_second")


def default_model(task: TaskConfig) -> str:
    return f"models:/{task.registered_name}@champion"


def model_key(model: str) -> str:
    """The file name an expectation is stored under: models:/legal-extractor@champion -> legal-extractor@champion."""
    bare = model.removeprefix("models:/").removeprefix("runs:/")
    return re.sub(r"[^A-Za-z0-9@._-]+", "-", bare).strip("-")


def expectations_path(task: TaskConfig, eval_set: EvalSetSpec, model: str) -> Path:
    return task.data_path(eval_set.path).parent / "expectations" / eval_set.name / f"{model_key(model)}.json"


@dataclass
class MetricCheck:
    metric: str
    expected: float
    tolerance: float
    got: float

    @property
    def delta(self) -> float:
        return self.got - self.expected

    @property
    def verdict(self) -> str:
        if self.got < self.expected - self.tolerance - 1e-9:
            return "regressed"
        return "improved" if self.got > self.expected + self.tolerance + 1e-9 else "ok"


@dataclass
class SetCheck:
    eval_set: str
    model: str
    path: Path  # the expectations file
    checks: list[MetricCheck]
    updated: bool  # --update-baseline wrote the expectations from this run

    @property
    def regressed(self) -> list[MetricCheck]:
        return [c for c in self.checks if c.verdict == "regressed"]


def compare(expected: dict[str, dict[str, float]], got: dict[str, float]) -> list[MetricCheck]:
    """Each expected metric against this run's; a metric the run did not produce is an error, not a pass."""
    missing = sorted(set(expected) - set(got))
    if missing:
        raise HarnessError(f"the run produced no {', '.join(missing)}, which the expectations list")
    return [MetricCheck(m, float(e["expected"]), float(e["tolerance"]), float(got[m])) for m, e in expected.items()]


def regress(
    task: TaskConfig,
    *,
    model: str | None = None,
    eval_set: str | None = None,
    update_baseline: bool = False,
    tolerance: float | None = None,
    accept_regression: bool = False,
    reporter: AnswerReporter | None = None,
) -> list[SetCheck]:
    """Evaluate `model` (default `@champion`) on every stored eval set (or one) and check it against the stored
    expectations; with `update_baseline`, store this run's figures as the expectations instead.

    An update keeps each metric's stored tolerance (`tolerance` replaces them all; new metrics get the default),
    and refuses figures that regress from the stored ones unless `accept_regression`: nothing is written then."""
    model = model or default_model(task)
    sets = [s for s in task.data.eval_sets if eval_set in (None, s.name)]
    if not sets:
        names = ", ".join(s.name for s in task.data.eval_sets)
        raise HarnessError(f"task {task.task.name} has no eval set {eval_set!r}; stored sets: {names}")
    stored = {s.name: _read_expectations(expectations_path(task, s, model)) for s in sets}
    if not update_baseline:
        for spec in sets:
            if stored[spec.name] is None:
                raise HarnessError(
                    f"no expectations for {model} on {spec.name} at {expectations_path(task, spec, model)};"
                    " run `harness regress` with --update-baseline to store this model's figures"
                )
    max_new_tokens, model_dir = _resolve(task, model, stored)
    figures = {}
    for spec in sets:
        path = expectations_path(task, spec, model)
        expectation = stored[spec.name]
        if expectation is not None and expectation.get("sha256") != spec.sha256:
            raise HarnessError(
                f"{path} was stored for another version of {spec.name} (sha256 {expectation.get('sha256')}, now"
                f" {spec.sha256}); a stored set never changes: add a new set, or store new expectations"
            )
        if reporter is not None:
            reporter.stage(f"{model} on {spec.name}")
        figures[spec.name] = _evaluate(task, spec, model, model_dir, max_new_tokens, reporter)
    if not update_baseline:
        checked = []
        for spec in sets:
            expectation = stored[spec.name]
            assert expectation is not None  # refused above
            path = expectations_path(task, spec, model)
            checked.append(SetCheck(spec.name, model, path, compare(expectation["metrics"], figures[spec.name]), False))
        return checked
    # Every set is checked before any file is written: an update lands whole or not at all.
    if not accept_regression:
        worse = [
            f"{check.metric} on {name} {check.got:.4f} < stored {check.expected:.4f} - {check.tolerance:g}"
            for name, expectation in stored.items()
            if expectation is not None
            for check in _compare_known(expectation["metrics"], figures[name])
            if check.verdict == "regressed"
        ]
        if worse:
            raise HarnessError(
                f"not updating the expectations of {model}: this run regresses ({'; '.join(worse)})."
                " Pass --accept-regression to store worse figures on purpose"
            )
    results = []
    for spec in sets:
        previous = (stored[spec.name] or {}).get("metrics", {})
        metrics = {
            metric: {
                "expected": value,
                "tolerance": previous.get(metric, {}).get("tolerance", DEFAULT_TOLERANCE)
                if tolerance is None
                else tolerance,
            }
            for metric, value in figures[spec.name].items()
        }
        path = expectations_path(task, spec, model)
        _write_expectations(path, model, spec, max_new_tokens, metrics)
        results.append(SetCheck(spec.name, model, path, compare(metrics, figures[spec.name]), updated=True))
    return results


def _compare_known(expected: dict[str, dict[str, float]], got: dict[str, float]) -> list[MetricCheck]:
    """`compare` over the metrics both sides have (an update may drop or add metrics)."""
    return compare({m: e for m, e in expected.items() if m in got}, got)


def _read_expectations(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        metrics = data["metrics"]
        for metric, entry in metrics.items():
            if not isinstance(entry, dict) or not {"expected", "tolerance"} <= set(entry):
                raise ValueError(f"metrics.{metric} needs 'expected' and 'tolerance'")
            float(entry["expected"]), float(entry["tolerance"])
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise HarnessError(
            f"cannot read expectations {path}: {error}; expected"
            ' {"metrics": {"f1_micro": {"expected": 0.9, "tolerance": 0.01}, ...}, "sha256": ...}'
        ) from None
    return dict(data)


def _write_expectations(
    path: Path, model: str, spec: EvalSetSpec, max_new_tokens: int, metrics: dict[str, dict[str, float]]
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "model": model,
        "eval_set": spec.name,
        "sha256": spec.sha256,
        "max_new_tokens": max_new_tokens,
        "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "metrics": metrics,
    }
    # Written beside and renamed into place: a crash mid-write leaves the old file, never half of a new one.
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    os.replace(partial, path)


def _resolve(task: TaskConfig, model: str, stored: dict[str, dict[str, Any] | None]) -> tuple[int, str | None]:
    """The generation budget (the stored one when there is one, so re-runs decode alike) and a local model
    directory or spec; None for the rules."""
    from_stored = [int(e["max_new_tokens"]) for e in stored.values() if e and "max_new_tokens" in e]
    if model == RULES:
        if rule_baseline(task) is None:
            raise HarnessError(f"task {task.task.name} has no rule baseline: {task.file} names none (data.baseline)")
        return 0, None
    if model.startswith("models:/"):
        from harness import registry, tracking

        name, version = _registered(model)
        budget = registry.max_new_tokens_for(task, version.tags)
        return (from_stored[0] if from_stored else budget), str(
            registry.materialise_version(name, int(version.version))
        )
    if model.startswith("runs:/"):
        from harness import tracking

        return (from_stored[0] if from_stored else DEFAULT_MAX_NEW_TOKENS), str(tracking.download_logged_model(model))
    return (from_stored[0] if from_stored else DEFAULT_MAX_NEW_TOKENS), model


def _registered(model: str) -> tuple[str, Any]:
    from harness import registry

    reference = model.removeprefix("models:/")
    name, alias = reference.split("@", 1) if "@" in reference else (reference, None)
    number = None
    if alias is None:
        name, _, number_text = name.partition("/")
        if not number_text.isdigit():
            raise HarnessError(f"cannot read {model!r}: expected models:/NAME@ALIAS or models:/NAME/VERSION")
        number = int(number_text)
    return name, registry.find_version(name, alias=alias, version=number)


def _evaluate(
    task: TaskConfig,
    spec: EvalSetSpec,
    model: str,
    model_dir: str | None,
    max_new_tokens: int,
    reporter: AnswerReporter | None,
) -> dict:
    examples = load_eval_set(task, spec)  # checks the set's digest on every use
    if model_dir is None:
        predict = rule_baseline(task)
        assert predict is not None  # `_resolve` refused a task without one
        outputs = [predict(e.text) for e in examples]
        metrics = score_answers(task, examples, outputs).metrics
    else:
        from harness.trial import evaluate_model

        scores, _ = evaluate_model(task, model_dir, split=spec.name, max_new_tokens=max_new_tokens, reporter=reporter)
        metrics = scores.metrics
    return {k: float(v) for k, v in metrics.items() if k not in NOT_CHECKED}
