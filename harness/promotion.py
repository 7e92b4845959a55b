"""The promotion gate: the candidate (`@challenger`) and the current `@champion` scored on the stored test set;
the `champion` alias moves only if the gate passes (`gate`), and every decision is recorded on the version and as
a run. A version's evaluation on the same stored set and budget is recorded on it and reused."""

from __future__ import annotations

import getpass
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

from harness import tracking
from harness.config import TaskConfig
from harness.errors import HarnessError
from harness.generation import AnswerReporter
from harness.registry import (
    CHALLENGER,
    CHAMPION,
    EVALUATION_TAG,
    PREVIOUS_CHAMPION,
    evaluate_version,
    evaluation_tag,
    max_new_tokens_for,
)


@dataclass
class GateResult:
    passed: bool
    reasons: list[str]  # why it failed; empty when it passed
    rows: list[tuple[str, float, float | None]] = field(default_factory=list)  # metric, candidate, champion


def gate(
    candidate: dict[str, float], champion: dict[str, float] | None, field_names: list[str], tolerance: float
) -> GateResult:
    """Pass unless f1_micro drops by more than `tolerance` or any field's F1 by more than twice that."""
    metrics = ["f1_micro", *(f"f1_{name}" for name in field_names), "exact_match", "json_valid_rate"]
    rows = [(m, candidate[m], champion[m] if champion else None) for m in metrics if m in candidate]
    if champion is None:
        return GateResult(True, [], rows)
    reasons = []
    drop = champion["f1_micro"] - candidate["f1_micro"]
    if drop > tolerance:
        reasons.append(f"f1_micro drops by {drop:.4f} (> tolerance {tolerance})")
    for name in field_names:
        key = f"f1_{name}"
        drop = champion[key] - candidate[key]
        if drop > 2 * tolerance:
            reasons.append(f"{key} drops by {drop:.4f} (> 2 x tolerance = {2 * tolerance})")
    return GateResult(not reasons, reasons, rows)


@dataclass
class Promotion:
    name: str
    candidate: int
    champion: int | None  # the champion before this decision
    result: GateResult
    forced: bool
    promoted: bool
    verdict: str  # promoted | refused | forced
    run_id: str
    evaluations: str  # where each side's figures come from: evaluated now, or recorded on the version (when)


def promote(
    task: TaskConfig,
    *,
    version: int | None = None,
    tolerance: float = 0.01,
    force: bool = False,
    fresh: bool = False,
    reporter: AnswerReporter | None = None,
) -> Promotion:
    """Score the candidate (default `@challenger`) and `@champion` on the stored test set; gate the alias.

    A version's weights never change, so an evaluation recorded on it for the same stored set (same digest) and
    generation budget is reused unless `fresh`: greedy decoding gives the same answers again."""
    name = task.registered_name
    candidate = (
        tracking.model_version(name, version=version) if version else tracking.model_version(name, alias=CHALLENGER)
    )
    if candidate is None:
        which = f"version {version}" if version else f"alias @{CHALLENGER}"
        raise HarnessError(f"registered model {name} has no {which}; run `harness register {task.task.name}` first")
    champion = tracking.model_version(name, alias=CHAMPION)
    candidate_number = int(candidate.version)
    champion_number = int(champion.version) if champion else None
    if champion_number == candidate_number:
        raise HarnessError(f"{name} version {candidate_number} is already @{CHAMPION}")
    max_new_tokens = max_new_tokens_for(task, candidate.tags)
    candidate_metrics, candidate_source = stored_test_metrics(
        task, name, candidate_number, max_new_tokens, fresh=fresh, reporter=reporter
    )
    champion_metrics, champion_source = (
        stored_test_metrics(task, name, champion_number, max_new_tokens, fresh=fresh, reporter=reporter)
        if champion_number
        else (None, "")
    )
    result = gate(candidate_metrics, champion_metrics, list(task.fields), tolerance)
    promoted = result.passed or force
    verdict = "promoted" if result.passed else ("forced" if force else "refused")
    if promoted:
        if champion_number is not None:
            tracking.set_model_alias(name, PREVIOUS_CHAMPION, champion_number)
        tracking.set_model_alias(name, CHAMPION, candidate_number)
    decided = {
        "harness.promotion.verdict": verdict,
        "harness.promotion.by": getpass.getuser(),
        "harness.promotion.at": datetime.now(UTC).isoformat(timespec="seconds"),
        "harness.promotion.champion_version": str(champion_number or "none"),
        "harness.promotion.tolerance": str(tolerance),
        "harness.promotion.reasons": "; ".join(result.reasons) or "none",
        "harness.promotion.evaluations": f"candidate {candidate_source}"
        + (f"; champion {champion_source}" if champion_number else ""),
    }
    tracking.tag_model_version(name, candidate_number, decided)
    run_id = tracking.log_decision_run(
        task.task.name,
        run_name=f"promote-v{candidate_number}",
        params={
            "candidate_version": candidate_number,
            "champion_version": champion_number,
            "tolerance": tolerance,
            "force": force,
        },
        metrics={
            **{f"candidate_{k}": v for k, v in candidate_metrics.items()},
            **{f"champion_{k}": v for k, v in (champion_metrics or {}).items()},
        },
        tags={"harness.kind": "promotion", **decided},
    )
    return Promotion(
        name,
        candidate_number,
        champion_number,
        result,
        force,
        promoted,
        verdict,
        run_id,
        decided["harness.promotion.evaluations"],
    )


def stored_test_metrics(
    task: TaskConfig,
    name: str,
    version: int,
    max_new_tokens: int,
    *,
    fresh: bool = False,
    reporter: AnswerReporter | None = None,
) -> tuple[dict[str, float], str]:
    """A version's metrics on the task's stored test set and where they come from: the evaluation recorded on the
    version for this set's digest and this budget, or (none, or `fresh`) one computed now and then recorded."""
    stored = task.data.eval_sets[0]
    key = f"{EVALUATION_TAG}.{stored.name}.{max_new_tokens}"
    if not fresh:
        recorded = tracking.model_version(name, version=version).tags.get(key)
        if recorded:
            evaluation = json.loads(recorded)
            if evaluation["sha256"] == stored.sha256:
                return evaluation["metrics"], f"v{version} recorded {evaluation['at']}"
    if reporter is not None:
        reporter.stage(f"scoring v{version} on the stored test set {stored.name} (nothing recorded for this budget)")
    metrics, _ = evaluate_version(task, name, version, max_new_tokens=max_new_tokens, reporter=reporter)
    record_test_evaluation(task, name, version, max_new_tokens, metrics)
    return metrics, f"v{version} evaluated now"


def record_test_evaluation(
    task: TaskConfig, name: str, version: int, max_new_tokens: int, metrics: dict[str, float]
) -> None:
    """Keep a version's stored-test evaluation on the version, keyed by set and budget, with the set's digest."""
    tracking.tag_model_version(name, version, evaluation_tag(task, max_new_tokens, metrics))
