"""A study's evidence, as a page a person reads and figures a script compares: `results/<study>.md`, `.json` and
PNGs, written from what the study left in Optuna's storage and MLflow.

The ladder: the base model zero-shot -> the task's rule baseline (where it ships one) -> the seed recipe at the
search budget -> the study's best trial -> the registered model (the best recipe refit at the refit budget,
merged), each scored on every stored eval set. Evaluations are cached as metrics on the run they belong to
(`stored/<set>/<metric>`), so writing the page again costs seconds.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness import machine, registry, tracking
from harness.config import TaskConfig
from harness.errors import HarnessError
from harness.predictions import score_answers
from harness.progress import minutes
from harness.promotion import stored_test_metrics
from harness.tables import figure, markdown_table
from harness.task_data import load_split, rule_baseline
from harness.trial import evaluate_model

CACHE_PREFIX = "stored"  # stored/<eval set>/<metric> on the run whose model was evaluated
LADDER = ("zero-shot", "rule baseline", "seed recipe", "best trial", "registered")


@dataclass
class Results:
    markdown: Path
    figures: Path
    pngs: list[Path]


def write_results(
    task: TaskConfig, *, study_name: str, out_dir: Path, on_progress: Callable[[str], None] | None = None
) -> Results:
    """Evaluate the ladder on every stored eval set (or read the cached figures) and write the page; `on_progress`
    hears of each evaluation (minutes each on a CPU)."""
    say = on_progress or (lambda line: None)
    parent = tracking.find_study_run(task.task.name, study_name)
    if parent is None:
        raise HarnessError(f"no study {study_name!r} in experiment {task.task.name}: run `harness search` first")
    rows = tracking.load_table_from_run(parent, "leaderboard.json")
    complete = [r for r in rows if r.get("state") == "COMPLETE"]
    seed = next((r for r in rows if r.get("seed_recipe") and r.get("state") == "COMPLETE"), None)
    if not complete or seed is None:
        raise HarnessError(f"study {study_name!r} has no complete best trial and seed-recipe trial yet")
    best = complete[0]
    parent_params = tracking.run_info(parent)
    profile = parent_params["tags"].get("harness.profile", "cpu")
    base_model = parent_params["tags"].get("harness.model") or task.profiles[profile].model
    version = _registered_version(task, study_name)
    eval_sets = list(task.eval_set_names)
    max_new_tokens = task.profiles[profile].refit.max_new_tokens

    # (stage, the run its figures are cached on, cache prefix, how to evaluate it on one eval set)
    evaluations: list[tuple[str, str, str, Any]] = [
        ("zero-shot", parent, CACHE_PREFIX, lambda s: _evaluate(task, base_model, s, max_new_tokens)),
        (
            "seed recipe",
            seed["mlflow_run_id"],
            CACHE_PREFIX,
            lambda s: _evaluate_run(task, seed["mlflow_run_id"], s, max_new_tokens),
        ),
        (
            "best trial",
            best["mlflow_run_id"],
            CACHE_PREFIX,
            lambda s: _evaluate_run(task, best["mlflow_run_id"], s, max_new_tokens),
        ),
    ]
    if version is not None:
        name, number, version_run = version
        # The registered weights (merged), cached apart from the refit run's adapter figures.
        evaluations.append(
            (
                "registered",
                version_run,
                "merged",
                lambda s: _evaluate(task, str(registry.materialise_version(name, number)), s, max_new_tokens),
            )
        )
    ladder: dict[str, dict[str, dict[str, float]]] = {}
    timings: dict[str, float] = {}
    for eval_set in eval_sets:
        for stage, run_id, prefix, evaluate in evaluations:
            say(f"{stage} on {eval_set}: ...")
            metrics, seconds = _cached(run_id, eval_set, evaluate, prefix=prefix)
            say(f"{stage} on {eval_set}: f1_micro {metrics.get('f1_micro', float('nan')):.3f} ({minutes(seconds)})")
            ladder.setdefault(stage, {})[eval_set] = metrics
            timings[f"{stage} on {eval_set}"] = round(seconds, 1)
        rules = _rule_baseline(task, eval_set)
        if rules is not None:
            ladder.setdefault("rule baseline", {})[eval_set] = rules
    ladder = {stage: ladder[stage] for stage in LADDER if stage in ladder}

    out_dir.mkdir(parents=True, exist_ok=True)
    stem = study_name
    stages = _stages(parent, rows, seed, best, version)
    figures = {
        "study": study_name,
        "task": task.task.name,
        "profile": profile,
        "base_model": base_model,
        "written": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine.describe(),
        "eval_sets": {s.name: s.sha256 for s in task.data.eval_sets},
        "ladder": ladder,
        f"registered:{version[0]}/{version[1]}" if version else "registered": ladder.get("registered"),
        "stages": stages,
        "leaderboard": [_leaderboard_row(r, task) for r in rows],
        "evaluation_seconds": timings,
    }
    json_path = out_dir / f"{stem}.json"
    json_path.write_text(json.dumps(figures, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    pngs = [_ladder_chart(task, ladder, eval_sets, out_dir / f"{stem}-ladder.png")]
    pngs += _copy_study_plots(parent, out_dir, stem)
    markdown = out_dir / f"{stem}.md"
    full_budget = out_dir / f"{stem}-full-budget.json"
    sibling = json.loads(full_budget.read_text()) if full_budget.exists() else None
    markdown.write_text(_markdown(task, figures, pngs) + _full_budget_section(sibling, full_budget), encoding="utf-8")
    return Results(markdown, json_path, pngs)


def registered_summary(task: TaskConfig, study_name: str) -> dict[str, Any]:
    """What a study ended with, read from what it recorded (nothing evaluated again): its registered version's
    f1_micro on the stored test set as registration scored it, and the time from the study's start to it. For the
    studies of other `harness search --seed`s beside the full page of one (bench/full_budget.py --studies)."""
    parent = tracking.find_study_run(task.task.name, study_name)
    version = _registered_version(task, study_name) if parent else None
    if parent is None or version is None:
        raise HarnessError(
            f"study {study_name!r} of task {task.task.name} has no registered version: run `harness search"
            f" {task.task.name} --study {study_name}` to its end (refit and registration)"
        )
    name, number, _ = version
    profile = tracking.run_info(parent)["tags"].get("harness.profile", "cpu")
    metrics, source = stored_test_metrics(task, name, number, task.profiles[profile].refit.max_new_tokens)
    described = machine.describe()
    return {
        "study": study_name,
        "machine": described["cpu"],
        "cpu_generation": described["cpu_generation"],
        "avx512_bf16": described["avx512_bf16"],
        "to_registered_seconds": _to_registered_seconds(parent, version),
        "registered": {task.eval_set_names[0]: metrics["f1_micro"]},
        "source": f"{name} {source}",
    }


def _registered_version(task: TaskConfig, study_name: str) -> tuple[str, int, str] | None:
    """The newest version registered from this study: (name, version, the run its weights are logged on)."""
    name = task.registered_name
    versions = [v for v in tracking.model_versions(name) if v.tags.get("harness.study") == study_name]
    if not versions:
        return None
    newest = max(versions, key=lambda v: int(v.version))
    return name, int(newest.version), str(newest.run_id)


def _cached(run_id: str, eval_set: str, evaluate: Any, *, prefix: str = CACHE_PREFIX) -> tuple[dict[str, float], float]:
    """A model's metrics on an eval set: read from its run when logged before, else evaluated now and logged."""
    key = f"{prefix}/{eval_set}/"
    logged = {k.removeprefix(key): v for k, v in tracking.run_metrics(run_id).items() if k.startswith(key)}
    if "f1_micro" in logged:
        seconds = logged.pop("seconds", 0.0)
        return logged, seconds
    started = time.perf_counter()
    metrics = evaluate(eval_set)
    seconds = time.perf_counter() - started
    tracking.log_to_run(run_id, metrics={f"{key}{k}": v for k, v in {**metrics, "seconds": seconds}.items()})
    return metrics, seconds


def _evaluate(task: TaskConfig, model: str, eval_set: str, max_new_tokens: int) -> dict[str, float]:
    scores, _ = evaluate_model(task, model, split=eval_set, max_new_tokens=max_new_tokens)
    return dict(scores.metrics)


def _evaluate_run(task: TaskConfig, run_id: str, eval_set: str, max_new_tokens: int) -> dict[str, float]:
    """A trial's adapter, as trained (on its int8 or nf4 base when it was trained on one), on an eval set."""
    params = tracking.run_params(run_id)
    with tempfile.TemporaryDirectory() as directory:
        adapter = tracking.download_run_artifacts(run_id, "adapter", Path(directory))
        scores, _ = evaluate_model(
            task,
            params["model"],
            adapter=adapter,
            split=eval_set,
            max_new_tokens=max_new_tokens,
            quantization=params.get("quantization", "none"),
        )
    return dict(scores.metrics)


def _rule_baseline(task: TaskConfig, eval_set: str) -> dict[str, float] | None:
    predict = rule_baseline(task)
    if predict is None:
        return None  # the task has no rule baseline (data.baseline)
    examples = load_split(task, eval_set)
    outputs = [predict(e.text) for e in examples]
    return dict(score_answers(task, examples, outputs).metrics)


def _stages(
    parent: str,
    rows: list[dict[str, Any]],
    seed: dict[str, Any],
    best: dict[str, Any],
    version: tuple[str, int, str] | None,
) -> dict[str, dict[str, Any]]:
    """Wall time, tokens and peak memory of each stage of the main job, from the runs."""
    study = tracking.run_info(parent)
    finished = [r for r in rows if r.get("state") in ("COMPLETE", "PRUNED")]
    stages: dict[str, dict[str, Any]] = {
        "search": {
            "wall_seconds": study["duration_seconds"],
            "trials": len(finished),
            "complete": sum(r["state"] == "COMPLETE" for r in finished),
            "pruned": sum(r["state"] == "PRUNED" for r in finished),
            "train_tokens": round(sum(_tokens(r) for r in finished)),
            "peak_memory_mb": max((float(r.get("peak_memory_mb") or 0) for r in finished), default=0.0),
            "estimate": study["tags"].get("harness.estimate"),
        }
    }
    if version is not None:
        # The main job's whole wall time: from the study's start to the registered version (its test evaluation
        # and alias come after the refit run ends).
        stages["search"]["to_registered_seconds"] = _to_registered_seconds(parent, version)
    for label, row in (("seed recipe trial", seed), ("best trial", best)):
        stages[label] = _run_stage(row["mlflow_run_id"])
    if version is not None:
        stages["refit and registration"] = _run_stage(version[2])
        stages["refit and registration"]["wall_seconds"] = tracking.run_info(version[2])["duration_seconds"]
    return stages


def _to_registered_seconds(parent: str, version: tuple[str, int, str]) -> float:
    """The study's start to the version's creation, less the idle time between the search's end and the refit's
    start: a version registered later (`harness register` on a finished study, with a new refit budget, say) is
    timed as if it had followed the search."""
    created = next(v for v in tracking.model_versions(version[0]) if int(v.version) == version[1])
    study, refit = tracking.run_info(parent), tracking.run_info(version[2])
    idle = max(0.0, refit["started"] - (study["started"] + study["duration_seconds"]))
    return round(created.creation_timestamp / 1000 - study["started"] - idle, 1)


def _run_stage(run_id: str) -> dict[str, Any]:
    metrics = tracking.run_metrics(run_id)
    return {
        "train_seconds": round(metrics.get("train_seconds", 0.0), 1),
        "eval_seconds": round(metrics.get("eval_seconds", 0.0), 1),
        "train_tokens": round(metrics.get("train_tokens_per_second", 0.0) * metrics.get("train_seconds", 0.0)),
        "train_tokens_per_second": round(metrics.get("train_tokens_per_second", 0.0), 1),
        "peak_memory_mb": round(metrics.get("peak_memory_mb", 0.0)),
        "wall_seconds": tracking.run_info(run_id)["duration_seconds"],
    }


def _tokens(row: dict[str, Any]) -> float:
    return float(row.get("train_tokens_per_second") or 0.0) * float(row.get("train_seconds") or 0.0)


def _leaderboard_row(row: dict[str, Any], task: TaskConfig) -> dict[str, Any]:
    objective = task.search.objective.metric
    keep = ("trial", "state", objective, "seed_recipe", "steps", "seconds", "peak_memory_mb")
    return {
        **{k: row.get(k) for k in keep},
        **{k.removeprefix("param."): v for k, v in row.items() if k.startswith("param.")},
    }


def _ladder_chart(
    task: TaskConfig, ladder: dict[str, dict[str, dict[str, float]]], eval_sets: list[str], path: Path
) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # no display: render to files
    import matplotlib.pyplot as plt

    metrics = ["f1_micro", *(f"f1_{name}" for name in task.fields), "exact_match", "json_valid_rate"]
    figure, axes = plt.subplots(len(eval_sets), 1, figsize=(11, 3.6 * len(eval_sets)), squeeze=False)
    width = 0.8 / max(len(ladder), 1)
    for row, eval_set in enumerate(eval_sets):
        ax = axes[row][0]
        for index, (stage, by_set) in enumerate(ladder.items()):
            values = by_set.get(eval_set, {})
            ax.bar(
                [i + index * width for i in range(len(metrics))],
                [values.get(m, 0.0) for m in metrics],
                width,
                label=stage,
            )
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(metrics))], metrics, rotation=30, ha="right")
        ax.set_ylim(0, 1.05)
        ax.set_title(eval_set)
        ax.legend(fontsize="small", ncol=len(ladder))
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def _copy_study_plots(parent: str, out_dir: Path, stem: str) -> list[Path]:
    """Optuna's optimisation history and parameter importances, as the search logged them."""
    copied = []
    with tempfile.TemporaryDirectory() as directory:
        try:
            plots = tracking.download_run_artifacts(parent, "plots", Path(directory))
        except Exception:  # no plots yet: the page says so
            return []
        for name in ("optimization_history", "param_importances"):
            if (plots / f"{name}.png").exists():
                copied.append(Path(shutil.copy(plots / f"{name}.png", out_dir / f"{stem}-{name}.png")))
    return copied


def _markdown(task: TaskConfig, figures: dict[str, Any], pngs: list[Path]) -> str:
    objective = task.search.objective.metric
    machine = figures["machine"]
    lines = [
        f"# {figures['study']}: {task.task.description}",
        "",
        f"Written {figures['written']} by `harness results {task.task.name} --study {figures['study']}` from the"
        f" study's runs; base model `{figures['base_model']}`, profile `{figures['profile']}`.",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gb']} GiB,"
        f" avx512_bf16 {machine['avx512_bf16']}, GPU {machine['gpu'] or 'none'}; CPU flags"
        f" {' '.join(machine['cpu_flags']) or 'unknown'}; torch {machine['torch']}.",
        "",
        "## The ladder on the stored eval sets",
        "",
    ]
    metrics = ["f1_micro", *(f"f1_{name}" for name in task.fields), "exact_match", "json_valid_rate"]
    for eval_set, digest in figures["eval_sets"].items():
        lines += [f"### {eval_set} (sha256 {digest[:12]}…)", ""]
        lines += markdown_table(
            ["stage", *metrics],
            [
                [stage, *(figure(by_set.get(eval_set, {}).get(m)) for m in metrics)]
                for stage, by_set in figures["ladder"].items()
            ],
        )
        lines.append("")
    lines += [f"![ladder]({pngs[0].name})", "", "## What each stage cost", ""]
    rows = []
    for stage, values in figures["stages"].items():
        rows.append(
            [
                stage,
                minutes(values.get("wall_seconds") or 0.0),
                figure(values.get("train_seconds"), 0),
                f"{values.get('train_tokens', 0):,}",
                figure((values.get("peak_memory_mb") or 0) / 1024, 2),
                ", ".join(f"{k} {values[k]}" for k in ("trials", "complete", "pruned") if k in values),
            ]
        )
    lines += markdown_table(["stage", "wall", "training (s)", "training tokens", "peak memory (GB)", "trials"], rows)
    search = figures["stages"]["search"]
    if search.get("to_registered_seconds"):
        lines += ["", f"From the study's start to the registered version: {minutes(search['to_registered_seconds'])}."]
    if search.get("estimate"):
        lines += ["", f"What `harness search` estimated before it started: {search['estimate']}."]
    lines += ["", "## Leaderboard", ""]
    params = sorted({k for r in figures["leaderboard"] for k in r if "." in k or k == "quantization"})
    lines += markdown_table(
        ["trial", "state", objective, "steps", "seconds", *params],
        [
            [
                r["trial"],
                r["state"].lower() + (" (seed recipe)" if r.get("seed_recipe") else ""),
                figure(r.get(objective)),
                r.get("steps") or "",
                figure(r.get("seconds"), 0),
                *(r.get(p, "") for p in params),
            ]
            for r in sorted(figures["leaderboard"], key=lambda r: r["trial"])
        ],
    )
    lines.append("")
    lines += [f"![{png.stem}]({png.name})" for png in pngs[1:]]
    return "\n".join(lines) + "\n"


def _full_budget_section(sibling: dict[str, Any] | None, path: Path) -> str:
    """What the search buys at the full budget, quoted from `bench/full_budget.py`'s page beside this one (written
    there, on one machine, with the command that made it)."""
    if not sibling or not sibling.get("runs"):
        return ""
    first = sibling["eval_sets"][0]
    machine = sibling["machine"]
    lines = [
        "",
        "## At the full budget",
        "",
        f"Recipes refit side by side at the refit budget and scored on every stored eval set, on {machine['cpu']}"
        f" (avx512_bf16 {machine['avx512_bf16']}): [{path.with_suffix('.md').name}]({path.with_suffix('.md').name})"
        " (written by `bench/full_budget.py`; each row's command is in the JSON beside it).",
        "",
    ]
    lines += markdown_table(
        ["recipe", "training seed", f"{first} f1_micro"],
        [[run["name"], run["seed"], figure(run["eval"][first]["f1_micro"])] for run in sibling["runs"]],
    )
    return "\n".join(lines) + "\n"
