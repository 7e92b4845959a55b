"""What the search buys, at the full budget: recipes refit side by side at the task's refit budget (the budget the
registered model was trained at) and scored on every stored eval set, on one machine.

    .venv/bin/python bench/full_budget.py [--task legal] [--profile cpu] [--results results/legal-cpu.json]
        [--recipes tuned seed axolotl-qlora llama-factory-lora top-3 pruned] [--seeds 0] [--out-dir results]

The recipes:
- `seed`: the task's seed recipe;
- `tuned`: the study's best trial (what `harness search` registered), read from its results page's JSON; at the
  recipe's own seed its row is the registered version's figures (that refit, merged), not a second refit;
- `top-3`: the study's three best complete trials; `pruned`: its first trial pruned at the first rung; together
  they say whether the search's budget ranks recipes as the full budget does (Spearman's rank correlation between
  their trial-budget values and their full-budget test-v1 f1_micro);
- a name in `bench/reference_recipes.yaml`: a well-known recipe (Axolotl's QLoRA example, LLaMA-Factory's LoRA
  defaults), with where it comes from.
`--seeds 0 1 2` refits each recipe once per training seed (the spread a single run hides). `--describe-fields`
refits them with each field's description in the system prompt (`task.describe_fields`), to tell what the prompt
can do from what the model's size can. `--studies legal-cpu-seed1 legal-cpu-seed2` adds the registered model of
other studies of the same task, profile and budget (other `harness search --seed`s: by name, their test-v1 figure
as registration recorded it, or their `harness results` JSON): the registered f1_micro's spread over study seeds.

Each refit is a fresh `harness train` at the refit budget (its own process, a temporary MLflow store); its adapter,
folded into the base model as registration merges it, answers every stored eval set by greedy generation. Each
result is written to `<study>-full-budget.json` as it lands, and a refit already there (same recipe, seed and
budget) is not run again: the command resumes where it stopped. `<study>-full-budget.md` is written from the JSON;
`harness results` links it from the study's page.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from harness import tracking
from harness.config import load_task, resolve_trial_config
from harness.machine import describe as machine_description
from harness.predictions import write_predictions
from harness.progress import ConsoleProgress, minutes
from harness.results import registered_summary
from harness.tables import figure, markdown_table
from harness.task_data import load_split
from harness.trial import evaluate_model
from harness.trial_process import run_trial_in_own_process

REFERENCE_RECIPES = Path(__file__).with_name("reference_recipes.yaml")
SHOWN = ("f1_micro", "f1_claim_amount", "acc_initiator", "exact_match", "json_valid_rate")
RECIPE_KEYS = ("lora.r", "lora.alpha_ratio", "lora.target_modules", "train.learning_rate", "quantization")
# How a trial's row says why it is there.
KIND_LABELS = {"tuned": " (registered)", "trial": " (top 3)", "pruned": " (pruned at the first rung)"}
_spec = importlib.util.spec_from_file_location("initiator_errors", Path(__file__).with_name("initiator_errors.py"))
assert _spec is not None and _spec.loader is not None
initiator_errors = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(initiator_errors)


def recipes(names: list[str], study: dict[str, Any]) -> list[dict[str, Any]]:
    """Each named recipe as {name, kind, source, set (overrides), trial_value}."""
    references = yaml.safe_load(REFERENCE_RECIPES.read_text())
    board = study["leaderboard"]
    complete = sorted(
        (r for r in board if r["state"] == "COMPLETE" and not r["seed_recipe"]), key=lambda r: -r["f1_micro"]
    )
    chosen: list[dict[str, Any]] = []
    for name in names:
        if name == "seed":
            chosen.append({"name": "seed recipe", "kind": "seed", "source": "the task's YAML", "set": {}})
        elif name == "tuned":
            chosen.append(_trial_recipe(complete[0], study, kind="tuned"))
        elif name.startswith("top-"):
            chosen += [_trial_recipe(row, study, kind="trial") for row in complete[: int(name.removeprefix("top-"))]]
        elif name == "pruned":
            first_rung = min(r["steps"] for r in board if r["state"] == "PRUNED")
            row = min(
                (r for r in board if r["state"] == "PRUNED" and r["steps"] == first_rung), key=lambda r: r["trial"]
            )
            chosen.append(_trial_recipe(row, study, kind="pruned"))
        elif name in references:
            reference = references[name]
            chosen.append({"name": name, "kind": "reference", "source": reference["source"], "set": reference["set"]})
        else:
            raise SystemExit(f"unknown recipe {name!r}: seed, tuned, top-N, pruned or one of {', '.join(references)}")
    unique: dict[tuple[str, str], dict[str, Any]] = {}
    for recipe in chosen:  # `tuned` is also the first of `top-3`: refit once
        unique.setdefault((json.dumps(recipe["set"], sort_keys=True), recipe["kind"] == "seed"), recipe)
    return list(unique.values())


def _trial_recipe(row: dict[str, Any], study: dict[str, Any], *, kind: str) -> dict[str, Any]:
    state = "complete" if row["state"] == "COMPLETE" else f"pruned at step {row['steps']}"
    return {
        "name": f"trial {row['trial']}",
        "kind": kind,
        "source": f"{study['study']}, {state}",
        "set": {key: row[key] for key in RECIPE_KEYS},
        "trial_value": row["f1_micro"],
    }


def answers_path(answers_dir: Path, name: str, seed: int, eval_set: str) -> Path:
    """Where a recipe's answers on an eval set are kept (`harness score` and bench/initiator_errors.py read them)."""
    slug = "-".join(name.replace(",", " ").split())
    return answers_dir / f"{slug}-seed{seed}-{eval_set}.jsonl"


def initiator_by_wording(task: Any, eval_set: str, answers: Path) -> dict[str, list[int]]:
    """How often the answers name the initiator right, by how the ruling words it (bench/initiator_errors.py): a
    claim or counterclaim, an appeal that calls the appellant by its role, an appeal that names its company;
    each as [right, rulings]."""
    outputs = {r["id"]: r["output"] for r in map(json.loads, answers.read_text(encoding="utf-8").splitlines())}
    counts: dict[str, list[int]] = {}
    for example in load_split(task, eval_set):
        kind = initiator_errors.ruling_kind(example.text)
        group = f"appeal, by {initiator_errors.named_by(example.text)}" if kind == "appeal" else "claim or counterclaim"
        answer = initiator_errors.extract_json_object(outputs.get(example.id, "")) or {}
        tally = counts.setdefault(group, [0, 0])
        tally[0] += answer.get("initiator") == example.fields["initiator"]
        tally[1] += 1
    return dict(sorted(counts.items()))


def refit(task: Any, *, profile: str, recipe: dict[str, Any], seed: int, answers_dir: Path) -> dict[str, Any]:
    """The recipe trained at the refit budget in a process of its own, then scored on every stored eval set; its
    answers on the first are kept in `answers_dir`."""
    config = resolve_trial_config(task, profile=profile, overrides={**recipe["set"], "seed": seed}, refit=True)
    with tempfile.TemporaryDirectory(prefix="harness-full-budget-") as directory:
        os.environ["HARNESS_MLRUNS"] = directory
        tracking.configure()
        started = time.perf_counter()
        trained = run_trial_in_own_process(
            task, config, output_dir=Path(directory) / "run", reporter=ConsoleProgress(_err(), recipe["name"])
        )
        evaluations: dict[str, dict[str, float]] = {}
        for eval_set in task.eval_set_names:
            progress = ConsoleProgress(_err())
            progress.stage(f"{recipe['name']} (seed {seed}) on {eval_set}")
            scores, generated = evaluate_model(
                task, config.model, adapter=trained.adapter_dir, quantization=config.recipe.quantization,
                split=eval_set, max_new_tokens=config.budget.max_new_tokens, reporter=progress,
            )  # fmt: skip
            evaluations[eval_set] = dict(scores.metrics)
            if eval_set == task.eval_set_names[0]:
                answers = answers_path(answers_dir, recipe["name"], seed, eval_set)
                write_predictions(answers, [record.id for record in scores.records], generated.outputs)
    return {
        **{key: recipe[key] for key in ("name", "kind", "source", "set") if key in recipe},
        **{key: recipe[key] for key in ("trial_value", "describe_fields") if key in recipe},
        "seed": seed,
        "recipe": config.recipe.model_dump(),
        "train_steps": trained.metrics["train_steps"],
        "train_seconds": round(trained.metrics["train_seconds"], 1),
        "train_tokens_per_second": round(trained.metrics["train_tokens_per_second"], 1),
        "peak_memory_mb": round(trained.metrics["peak_memory_mb"]),
        "validation_f1_micro": trained.metrics["f1_micro"],
        "wall_seconds": round(time.perf_counter() - started, 1),
        "eval": evaluations,
        "answers": str(answers),
        "initiator": initiator_by_wording(task, task.eval_set_names[0], answers),
    }


def registered_run(
    recipe: dict[str, Any], study: dict[str, Any], task: Any, *, answers_dir: Path
) -> dict[str, Any] | None:
    """The tuned recipe's row from what the study already measured: its registered version is that recipe refit at
    this budget with the recipe's seed and merged, scored on every stored set (`harness results`)."""
    registered = study["ladder"].get("registered")
    refit = study["stages"].get("refit and registration", {})
    if recipe["kind"] != "tuned" or recipe.get("describe_fields") or not registered or "train_seconds" not in refit:
        return None
    # Its answers, where kept: `harness eval TASK --model <the version's merged directory> --split test-v1 --out`.
    answers = answers_path(answers_dir, recipe["name"], task.recipe.seed, task.eval_set_names[0])
    kept = {"answers": str(answers), "initiator": initiator_by_wording(task, task.eval_set_names[0], answers)}
    return {
        **{key: recipe[key] for key in ("name", "kind", "set", "trial_value")},
        **(kept if answers.exists() else {}),
        "source": f"{recipe['source']}; the registered version's figures (`harness results`), not refit again",
        "seed": task.recipe.seed,
        "train_seconds": refit["train_seconds"],
        "train_tokens_per_second": refit.get("train_tokens_per_second"),
        "peak_memory_mb": refit.get("peak_memory_mb"),
        "eval": {name: registered[name] for name in task.eval_set_names},
    }


def _registered(task: Any, given: str) -> dict[str, Any]:
    """A study's registered model: from its results page's JSON (`harness results`), or, for a study name, from what
    its search recorded (`harness.results.registered_summary`: the stored test set as registration scored it)."""
    if not given.endswith(".json"):
        tracking.configure()
        return registered_summary(task, given)
    page = json.loads(Path(given).read_text())
    registered = page["ladder"].get("registered") or {}
    return {
        "study": page["study"],
        "machine": page["machine"]["cpu"],
        "cpu_generation": page["machine"].get("cpu_generation"),
        "avx512_bf16": page["machine"]["avx512_bf16"],
        "to_registered_seconds": page["stages"]["search"].get("to_registered_seconds"),
        "registered": {name: metrics["f1_micro"] for name, metrics in registered.items()},
    }


def _err() -> Any:
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True)


def spearman(xs: list[float], ys: list[float]) -> float:
    """Spearman's rank correlation (ties share their mean rank)."""

    def ranks(values: list[float]) -> list[float]:
        order = sorted(range(len(values)), key=lambda i: values[i])
        result = [0.0] * len(values)
        start = 0
        while start < len(order):
            end = start
            while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
                end += 1
            for position in range(start, end + 1):
                result[order[position]] = (start + end) / 2
            start = end + 1
        return result

    rx, ry = ranks(xs), ranks(ys)
    mean_x, mean_y = sum(rx) / len(rx), sum(ry) / len(ry)
    covariance = sum((a - mean_x) * (b - mean_y) for a, b in zip(rx, ry, strict=True))
    spread = (sum((a - mean_x) ** 2 for a in rx) * sum((b - mean_y) ** 2 for b in ry)) ** 0.5
    return covariance / spread if spread else float("nan")


def what_the_search_buys(figures: dict[str, Any]) -> list[str]:
    """The page's answer in two sentences: the tuned recipe against the best well-known one at the same budget and
    seed, and what the search that found it cost; nothing until both have run."""
    first, runs = figures["eval_sets"][0], figures["runs"]
    tuned = [r for r in runs if r["kind"] == "tuned" and not r.get("describe_fields")]
    known = [r for r in runs if r["kind"] in ("seed", "reference") and tuned and r["seed"] == tuned[0]["seed"]]
    if not tuned or not known:
        return []

    def score(run: dict[str, Any]) -> float:
        return run["eval"][first]["f1_micro"]

    searched, best = tuned[0], max(known, key=score)
    gain = score(searched) - score(best)
    verdict = f"the search buys **{gain:+.3f}**" if gain > 0 else f"the search buys nothing here ({gain:+.3f})"
    lines = [
        "## What the search buys",
        "",
        f"At the same budget and seed, the searched recipe ({searched['name']}) scores **{score(searched):.3f}**"
        f" {first} f1_micro; the best well-known recipe ({best['name']}) scores {score(best):.3f}: {verdict}.",
    ]
    study = next((s for s in figures.get("studies", []) if s["study"] == figures["study"]), None)
    if study and study.get("to_registered_seconds"):
        lines[-1] += (
            f" The search that found it took {minutes(study['to_registered_seconds'])} from its start to the"
            f" registered version on {study['machine']} (results/{figures['study']}.md); training {best['name']} at"
            f" this budget took {minutes(best['train_seconds'])}."
        )
    return [*lines, ""]


def initiator_section(figures: dict[str, Any]) -> list[str]:
    """Where the initiator's errors are, and what each explanation predicts: the data (can a rules check read the
    appellant from the text?), the prompt (rows with the fields described) and the model's size (more examples)."""
    rows = [r for r in figures["runs"] if r.get("initiator")]
    rules, curve = figures.get("initiator_rules"), figures.get("learning_curve", [])
    if not rows and not rules:
        return []
    first = figures["eval_sets"][0]
    lines = ["", "## The initiator", ""]
    if rules:
        lines.append(
            f"- **The data**: of {rules['appeals']} appeals in {first}, {rules['named']} name the appellant by its"
            f" company rather than its role; a rules check (`bench/initiator_errors.py --recoverable`) reads the"
            f" appellant's role right from the text in {rules['right']} of those {rules['named']}."
        )
    if rows:
        lines.append(
            "- **Where the answers miss**, by how the ruling words the initiator (right / rulings; the answers are"
            f" kept in `{Path(rows[0]['answers']).parent}/`):"
        )
        groups = sorted({group for r in rows for group in r["initiator"]})
        lines += ["", *markdown_table(
            ["recipe", "seed", "acc_initiator", *groups],
            [[r["name"], r["seed"], figure(r["eval"][first]["acc_initiator"]),
              *(f"{r['initiator'][g][0]} / {r['initiator'][g][1]}" if g in r["initiator"] else "-" for g in groups)]
             for r in rows],
        )]  # fmt: skip
    for file, machine in dict.fromkeys((p["file"], p["machine"]) for p in curve):
        points = [p for p in curve if p["file"] == file]
        lines += [
            "",
            f"- **More examples** (results/{file}, {machine}): acc_initiator (f1_micro) at "
            + ", ".join(
                f"{p['train_examples']:,} examples {p['acc_initiator']:.3f} ({p['f1_micro']:.3f})" for p in points
            )
            + ".",
        ]
    return lines


def page(figures: dict[str, Any]) -> str:
    """The Markdown page of the figures: recipes side by side, the fidelity check, the seeds' spread."""
    machine, budget = figures["machine"], figures["budget"]
    first = figures["eval_sets"][0]
    lines = [
        f"# {figures['study']}: recipes at the full budget",
        "",
        "Written by `bench/full_budget.py` (each row's command is in the JSON beside this page). Every row was"
        f" refit at the `{figures['profile']}` profile's refit budget"
        f" ({budget['train_examples']} examples, "
        + (f"{budget['max_steps']} steps" if budget.get("max_steps") else f"{budget['epochs']:g} epoch(s)")
        + f" in batches of {budget['batch_size']}) on one machine:"
        f" {machine['cpu']}, {machine['cores']} cores, avx512_bf16 {machine['avx512_bf16']}, torch {machine['torch']}."
        " Each adapter is folded into its base as registration merges it and answers every stored eval set.",
        "",
    ]
    lines += what_the_search_buys(figures)
    lines += ["## Side by side", ""]
    header = ["recipe", "seed", *(f"{name} f1_micro" for name in figures["eval_sets"]), *SHOWN[1:], "training"]
    rows = []
    for run in figures["runs"]:
        metrics = run["eval"][first]
        rows.append(
            [
                run["name"] + KIND_LABELS.get(run["kind"], ""),
                run["seed"],
                *(figure(run["eval"][name]["f1_micro"]) for name in figures["eval_sets"]),
                *(figure(metrics[key]) for key in SHOWN[1:]),
                minutes(run["train_seconds"]),
            ]
        )
    lines += markdown_table(header, rows)
    lines += ["", "Where each recipe comes from:", ""]
    seen = set()
    for run in figures["runs"]:
        if run["name"] not in seen:
            seen.add(run["name"])
            lines.append(f"- {run['name']}: {run['source']}; {json.dumps(run['set']) if run['set'] else 'as the YAML'}")
    trials = [
        r
        for r in figures["runs"]
        if "trial_value" in r and not r.get("describe_fields") and r["seed"] == figures["runs"][0]["seed"]
    ]
    if len(trials) >= 3:
        values = [r["trial_value"] or 0.0 for r in trials]  # a pruned trial has no value: it ranks last
        full = [r["eval"][first]["f1_micro"] for r in trials]
        lines += [
            "",
            "## Does the search's budget rank recipes as the full budget does?",
            "",
            *markdown_table(
                ["trial", "value at the search's budget (validation f1_micro)", f"{first} f1_micro at the full budget"],
                [
                    [
                        r["name"],
                        "pruned" if r["trial_value"] is None else figure(r["trial_value"]),
                        figure(r["eval"][first]["f1_micro"]),
                    ]
                    for r in trials
                ],
            ),
            "",
            f"Spearman's rank correlation: **{rho:.2f}** over {len(trials)} trials."
            if (rho := spearman(values, full)) == rho  # NaN when every full-budget score is the same
            else "Spearman's rank correlation is undefined: every full-budget score is the same.",
        ]
        swapped = [
            f"{a['name']} and {b['name']} ({abs(va - vb):.3f} apart at the search's budget,"
            f" {abs(fa - fb):.3f} at the full budget)"
            for i, (a, va, fa) in enumerate(zip(trials, values, full, strict=True))
            for b, vb, fb in zip(trials[i + 1 :], values[i + 1 :], full[i + 1 :], strict=True)
            if (va - vb) * (fa - fb) < 0
        ]
        if swapped:
            lines[-1] += " Out of order: " + "; ".join(swapped) + "."
    by_recipe: dict[str, list[float]] = {}
    for run in figures["runs"]:
        by_recipe.setdefault(run["name"], []).append(run["eval"][first]["f1_micro"])
    spread = {name: values for name, values in by_recipe.items() if len(values) > 1}
    if spread:
        lines += ["", "## Over training seeds", ""]
        lines += markdown_table(
            ["recipe", "seeds", f"{first} f1_micro mean", "min", "max"],
            [[n, len(v), figure(sum(v) / len(v)), figure(min(v)), figure(max(v))] for n, v in spread.items()],
        )
    lines += initiator_section(figures)
    studies = [s for s in figures.get("studies", []) if s["registered"]]
    if len(studies) > 1:
        values = [s["registered"][first] for s in studies]
        lines += ["", "## Over study seeds", "", f"The registered model of each study ({first} f1_micro):", ""]
        lines += markdown_table(
            ["study", "machine", f"{first} f1_micro", "study to registered version"],
            [
                [s["study"], f"{s['machine']}, {s.get('cpu_generation') or 'generation not recorded'}"
                 f" (avx512_bf16 {s['avx512_bf16']})", figure(s["registered"][first]),
                 minutes(s["to_registered_seconds"] or 0)]
                for s in studies
            ],
        )  # fmt: skip
        mean = sum(values) / len(values)
        lines += ["", f"Mean {mean:.3f}, min {min(values):.3f}, max {max(values):.3f} over {len(values)} studies."]
        seed = [
            r["eval"][first]["f1_micro"]
            for r in figures["runs"]
            if r["kind"] == "seed" and not r.get("describe_fields")
        ]
        if seed:
            lines[-1] += (
                f" The seed recipe over {len(seed)} training seeds at the same budget: {min(seed):.3f} to"
                f" {max(seed):.3f}. The worst study is {min(values) - max(seed):.3f} above the seed recipe's best run:"
                " the difference is the search's, not the noise's."
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="legal")
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--results", type=Path, default=None, help="the study's results JSON (harness results)")
    parser.add_argument("--recipes", nargs="+", default=["tuned", "seed", "axolotl-qlora", "llama-factory-lora"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--out-dir", type=Path, default=Path("results"))
    parser.add_argument("--describe-fields", action="store_true", help="each field's description in the prompt")
    parser.add_argument(
        "--studies", nargs="*", default=[], help="other seeds' studies: names, or their results JSON (harness results)"
    )
    parser.add_argument(
        "--max-seq-length",
        type=int,
        help="room for longer prompts (e.g. 704 with --describe-fields): it cuts nothing, so the budget stays the same",
    )
    args = parser.parse_args()

    task = load_task(args.task)
    if args.describe_fields:
        task = task.model_copy(update={"task": task.task.model_copy(update={"describe_fields": True})})
    results = args.results or args.out_dir / f"{args.task}-{args.profile}.json"
    study = json.loads(results.read_text())
    out = args.out_dir / f"{study['study']}-full-budget.json"
    budget = resolve_trial_config(task, profile=args.profile, refit=True).budget.model_dump()
    machine = machine_description()
    previous = json.loads(out.read_text()) if out.exists() else {}
    # Resumed only on the same budget and the same kind of machine: every row of the page from one machine (its
    # generation compared where the page recorded one: a virtual "AMD EPYC" may be a Zen 4 or a Zen 5).
    was = previous.get("machine", {})
    kind = ("cpu", "avx512_bf16", "gpu", *(("cpu_generation",) if was.get("cpu_generation") else ()))
    same_machine = {k: was.get(k) for k in kind} == {k: machine.get(k) for k in kind}
    runs = previous.get("runs", []) if previous.get("budget") == budget and same_machine else []
    if previous.get("runs") and not runs:
        print(f"{out} holds refits of another budget or machine: starting again", file=sys.stderr)
    if runs:
        machine = was  # the refits' machine, whichever of its kind writes the page
    command = " ".join([".venv/bin/python", "bench/full_budget.py", *sys.argv[1:]])
    answers_dir = args.out_dir / "answers" / f"{study['study']}-full-budget"
    first = task.eval_set_names[0]
    appeals = [e for e in load_split(task, first) if initiator_errors.ruling_kind(e.text) == "appeal"]
    named = [(e, initiator_errors.appellant_by_name({"text": e.text, "fields": e.fields})) for e in appeals]
    named = [(e, read) for e, read in named if read is not None]
    rules = {
        "appeals": len(appeals),
        "named": len(named),
        "right": sum(read == e.fields["initiator"] for e, read in named),
    }
    curve = [
        {"file": path.name, "machine": data["machine"]["cpu"], "train_examples": point["train_examples"],
         "acc_initiator": point[first]["acc_initiator"], "f1_micro": point[first]["f1_micro"]}
        for path in sorted(args.out_dir.glob(f"learning-curve-{args.profile}*.json"))
        if (data := json.loads(path.read_text()))["task"] == args.task and data["eval_set"] == first
        for point in data["points"]
    ]  # fmt: skip
    # Other studies' registered models stay on the page when a later run does not name them again.
    studies = {s["study"]: s for s in previous.get("studies", [])}
    studies.update({s["study"]: s for s in (_registered(task, str(given)) for given in [results, *args.studies])})

    def write() -> None:
        figures = {
            "study": study["study"],
            "task": args.task,
            "profile": args.profile,
            "command": command,
            "budget": budget,
            "eval_sets": list(task.eval_set_names),
            "machine": machine,
            "runs": runs,
            "studies": list(studies.values()),
            "initiator_rules": rules,
            "learning_curve": curve,
        }
        out.write_text(json.dumps(figures, indent=2) + "\n")
        out.with_suffix(".md").write_text(page(figures))

    for recipe in recipes(args.recipes, study):
        if args.describe_fields:
            recipe = {**recipe, "name": f"{recipe['name']}, fields described", "describe_fields": True}
        if args.max_seq_length:
            recipe = {**recipe, "set": {**recipe["set"], "budget.max_seq_length": args.max_seq_length}}
        for seed in args.seeds:
            measured = (
                registered_run(recipe, study, task, answers_dir=answers_dir) if seed == task.recipe.seed else None
            )
            done = [
                i
                for i, r in enumerate(runs)
                if (r["name"], r["set"], r["seed"]) == (recipe["name"], recipe["set"], seed)
            ]
            if done and measured:  # the registered version's row: cheap to read again, e.g. once its answers are kept
                runs[done[0]] = {**measured, "command": runs[done[0]]["command"]}
            if done:
                continue
            run = {
                **(measured or refit(task, profile=args.profile, recipe=recipe, seed=seed, answers_dir=answers_dir)),
                "command": command,
            }
            runs.append(run)
            write()
            metrics = run["eval"][task.eval_set_names[0]]
            print(
                f"{run['name']} seed {seed}: {task.eval_set_names[0]} "
                + ", ".join(f"{key} {metrics[key]:.3f}" for key in SHOWN)
                + f"; training {minutes(run['train_seconds'])}",
                flush=True,
            )
    write()


if __name__ == "__main__":
    main()
