"""A study's report: one self-contained HTML file (images inlined) plus its PNGs, built from what the search
logged on the study's parent run in MLflow (leaderboard, zero-shot figures, Optuna's plots) and the registry,
and logged back on that run as `report/`.

Sections: leaderboard; zero-shot vs seed recipe vs best trial per field; optimisation history; parameter
importances; parallel coordinates; memory and time per trial; registered and promoted versions.
"""

from __future__ import annotations

import base64
import html
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import tracking
from harness.config import TaskConfig
from harness.errors import HarnessError
from harness.tables import figure, html_table

SECTIONS = (
    "Leaderboard",
    "Zero-shot vs seed recipe vs best trial",
    "Optimisation history",
    "Parameter importances",
    "Parallel coordinates",
    "Memory and time per trial",
    "Registered and promoted versions",
)
OPTUNA_PLOTS = {
    "Optimisation history": "optimization_history",
    "Parameter importances": "param_importances",
    "Parallel coordinates": "parallel_coordinate",
}


@dataclass
class Report:
    html_path: Path
    pngs: list[Path]
    run_id: str  # the study's parent run it is logged on


def build_report(task: TaskConfig, *, study_name: str, out_dir: Path) -> Report:
    parent = tracking.find_study_run(task.task.name, study_name)
    if parent is None:
        raise HarnessError(f"no study {study_name!r} in experiment {task.task.name}: run `harness search` first")
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = tracking.load_table_from_run(parent, "leaderboard.json")
    if not rows:
        raise HarnessError(f"study {study_name!r} has no finished trial yet: nothing to report")
    objective = task.search.objective.metric
    complete = [r for r in rows if r.get("state") == "COMPLETE"]
    zero_shot = {
        k.removeprefix("zero_shot_"): v for k, v in tracking.run_metrics(parent).items() if k.startswith("zero_shot_")
    }
    seed = next((r for r in rows if r.get("seed_recipe")), None)
    best = complete[0] if complete else None
    plots = _study_plots(parent, out_dir)

    fields_png = _field_chart(task, zero_shot, seed, best, objective, out_dir / "fields.png")
    cost_png = _cost_chart(rows, out_dir / "memory_and_time.png")
    name = task.registered_name
    versions = [v for v in tracking.model_versions(name) if v.tags.get("harness.study") in (study_name, None)]
    aliases = tracking.model_aliases(name)

    body = [f"<h1>{_e(study_name)}: {_e(task.task.description)}</h1>"]
    body.append(_section(SECTIONS[0], _leaderboard_table(rows, objective)))
    comparison = _figure_table(task, objective, {"zero-shot": zero_shot, "seed recipe": seed, "best trial": best})
    body.append(_section(SECTIONS[1], _img(fields_png) + comparison))
    for title, plot in OPTUNA_PLOTS.items():
        png = plots.get(plot)
        content = _img(png) if png else "<p>Not available yet: it needs more complete trials that differ.</p>"
        body.append(_section(title, content))
    body.append(_section(SECTIONS[5], _img(cost_png) + _cost_table(rows)))
    body.append(_section(SECTIONS[6], _versions_table(name, versions, aliases)))
    page = out_dir / "report.html"
    page.write_text(_page(f"harness report: {study_name}", "\n".join(body)), encoding="utf-8")
    tracking.log_directory_to_run(parent, out_dir, "report")
    return Report(page, sorted(out_dir.glob("*.png")), parent)


def _study_plots(parent: str, out_dir: Path) -> dict[str, Path]:
    """Optuna's PNGs that the search logged on the parent run, copied beside the report."""
    found = {}
    with tempfile.TemporaryDirectory() as directory:
        try:
            plots_dir = tracking.download_run_artifacts(parent, "plots", Path(directory))
        except Exception:  # no plots logged yet (no complete trial): the sections say so
            return {}
        for png in plots_dir.glob("*.png"):
            found[png.stem] = Path(shutil.copy(png, out_dir / png.name))
    return found


def _field_chart(
    task: TaskConfig,
    zero_shot: dict[str, float],
    seed: dict[str, Any] | None,
    best: dict[str, Any] | None,
    objective: str,
    path: Path,
) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # no display: render to files
    import matplotlib.pyplot as plt

    metrics = [objective, *(f"f1_{name}" for name in task.fields if f"f1_{name}" != objective)]
    series = {"zero-shot": zero_shot, "seed recipe": seed or {}, "best trial": best or {}}
    figure, axes = plt.subplots(figsize=(10, 4))
    width = 0.8 / len(series)
    for index, (label, values) in enumerate(series.items()):
        axes.bar(
            [i + index * width for i in range(len(metrics))],
            [float(values.get(m) or 0.0) for m in metrics],
            width,
            label=label,
        )
    axes.set_xticks([i + width for i in range(len(metrics))], metrics, rotation=30, ha="right")
    axes.set_ylim(0, 1)
    axes.set_ylabel("validation score")
    axes.legend()
    figure.savefig(path, bbox_inches="tight")
    plt.close(figure)
    return path


def _cost_chart(rows: list[dict[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"trial {r['trial']}" for r in rows]
    figure, (memory, time) = plt.subplots(1, 2, figsize=(10, 3.5))
    memory.bar(labels, [float(r.get("peak_memory_mb") or 0.0) for r in rows])
    memory.set_ylabel("peak memory (MB)")
    seconds = [float(r.get("train_seconds") or 0.0) + float(r.get("eval_seconds") or 0.0) for r in rows]
    time.bar(labels, seconds)
    time.set_ylabel("train + eval (s)")
    for axes in (memory, time):
        axes.tick_params(axis="x", rotation=45)
    figure.savefig(path, bbox_inches="tight")
    plt.close(figure)
    return path


def _leaderboard_table(rows: list[dict[str, Any]], objective: str) -> str:
    params = sorted({k for r in rows for k in r if k.startswith("param.")})
    header = ["trial", "state", objective, "seed recipe", *(p.removeprefix("param.") for p in params)]
    body = [
        [
            r["trial"],
            r["state"],
            figure(r.get(objective)),
            "yes" if r.get("seed_recipe") else "",
            *(r.get(p) for p in params),
        ]
        for r in rows
    ]
    return html_table(header, body)


def _figure_table(task: TaskConfig, objective: str, series: dict[str, dict[str, Any] | None]) -> str:
    metrics = [objective, *(f"f1_{n}" for n in task.fields if f"f1_{n}" != objective), "json_valid_rate"]
    return html_table(["metric", *series], [[m, *(figure((v or {}).get(m)) for v in series.values())] for m in metrics])


def _cost_table(rows: list[dict[str, Any]]) -> str:
    header = ["trial", "peak memory (MB)", "train (s)", "eval (s)"]
    keys = ("peak_memory_mb", "train_seconds", "eval_seconds")
    return html_table(header, [[r["trial"], *(figure(r.get(k), 1) for k in keys)] for r in rows])


def _versions_table(name: str, versions: list[Any], aliases: dict[str, int]) -> str:
    if not versions:
        return f"<p>No version of {_e(name)} registered from this study yet (`harness register`).</p>"
    by_version: dict[int, list[str]] = {}
    for alias, number in aliases.items():
        by_version.setdefault(number, []).append(f"@{alias}")
    header = ["version", "aliases", "from", "test f1_micro", "promotion verdict"]
    body = [
        [
            f"{name} v{v.version}",
            " ".join(sorted(by_version.get(int(v.version), []))),
            f"trial {v.tags['harness.trial']}" if "harness.trial" in v.tags else v.tags.get("harness.source", ""),
            v.tags.get("test.f1_micro", ""),
            v.tags.get("harness.promotion.verdict", "not promoted"),
        ]
        for v in versions
    ]
    return html_table(header, body)


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{_e(path.stem)}" src="data:image/png;base64,{data}">'


def _section(title: str, content: str) -> str:
    return f"<section><h2>{_e(title)}</h2>{content}</section>"


def _page(title: str, body: str) -> str:
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
        "img{max-width:100%}"
    )
    head = f"<meta charset='utf-8'><title>{_e(title)}</title><style>{style}</style>"
    return f"<!doctype html><html><head>{head}</head><body>{body}</body></html>\n"
