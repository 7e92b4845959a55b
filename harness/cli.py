"""The `harness` command line: parses arguments, calls one function, prints the result.

Heavy libraries (torch, transformers) are imported inside the commands that need them, so `harness --help`
answers at once.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from harness.config import DEFAULT_MAX_NEW_TOKENS
from harness.errors import HarnessError, without_password
from harness.search.options import SearchOptions

app = typer.Typer(
    help="Find the best LoRA / QLoRA fine-tuning recipe for a structured-extraction task, and ship it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _console(*, stderr: bool) -> Console:
    """Output piped into a CI log or a file is not cut to Rich's 80 columns: lines are never broken mid-sentence (a
    terminal still wraps them at its edge) and tables get 160 columns, unless COLUMNS says otherwise."""
    made = Console(stderr=stderr, soft_wrap=True)
    if not made.is_terminal and "COLUMNS" not in os.environ:
        made.width = 160
    return made


console = _console(stderr=False)
errors = _console(stderr=True)

TaskArgument = Annotated[str, typer.Argument(help="Task name (a file in search_spaces/) or a path to a task YAML.")]
# From the environment too: a Kubernetes Secret or a Slurm script passes the database password without a command line.
StorageOption = Annotated[
    str | None,
    typer.Option(
        envvar="HARNESS_STORAGE",
        help="Optuna storage shared by a study's workers: postgresql://USER:PASS@HOST/DB, or a journal file"
        " (default <mlruns>/optuna-journal.log).",
    ),
]
TrackingUriOption = Annotated[
    str | None,
    typer.Option(
        envvar="HARNESS_TRACKING_URI",
        help="MLflow tracking URI: http://HOST:PORT for a team's `harness server` (default: <mlruns>/mlflow.db).",
    ),
]
StudyOption = Annotated[
    str | None,
    typer.Option(help="Study name (default: TASK-PROFILE, or the task's most recent study when that does not exist)."),
]
SplitOption = Annotated[
    str, typer.Option(help="train, validation, test (the task's first stored eval set) or an eval set name.")
]


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


@app.command()
def score(
    task: TaskArgument,
    predictions: Annotated[Path, typer.Argument(help='JSONL file, one {"id": ..., "output": raw model text} a line.')],
    split: SplitOption = "test",
) -> None:
    """Score raw model outputs against a split's gold fields; the last line printed is the metrics as JSON."""
    from harness.config import load_task
    from harness.predictions import score_predictions_file

    config = load_task(task)
    scores, split_size = score_predictions_file(config, predictions, split)
    if scores.metrics["n"] < split_size:
        errors.print(
            f"note: {predictions} predicts {scores.metrics['n']} of the {split_size} {split} examples;"
            " only those are scored",
            markup=False,
        )
    _print_scores(config, scores, split=split)


@app.command()
def baseline(
    task: TaskArgument,
    split: SplitOption = "test",
    out: Annotated[Path, typer.Option(help="Where to write the baseline's predictions.")] = Path(
        "mlruns/baseline-predictions.jsonl"
    ),
) -> None:
    """Run the rule-based reference (regular expressions) and score it: the row every model must beat."""
    from harness.config import load_task
    from harness.predictions import score_predictions_file, write_predictions
    from harness.task_data import load_split, rule_baseline

    config = load_task(task)
    predict = rule_baseline(config)
    if predict is None:
        raise HarnessError(
            f"task {config.task.name} has no rule baseline: {config.file} names none (data.baseline: a module with"
            " predict(text) -> answer, such as tasks.legal.rules)"
        )
    examples = load_split(config, split)
    write_predictions(out, [e.id for e in examples], [predict(e.text) for e in examples])
    console.print(f"Rule baseline predictions for {len(examples)} {split} examples written to {out}")
    scores, _ = score_predictions_file(config, out, split)
    _print_scores(config, scores, split=split)


@app.command()
def data(
    task: TaskArgument,
    export: Annotated[Path | None, typer.Option(help="Write every split as JSONL into this directory.")] = None,
    show: Annotated[int, typer.Option(help="Print this many validation examples with their gold fields.")] = 0,
) -> None:
    """Check a task's data (digests, leakage, schema) and summarise each split."""
    from harness.config import load_task
    from harness.task_data import load_split, split_names, summarise_split

    config = load_task(task)
    table = Table(title=f"{config.task.name} data")
    splits = [s for s in split_names(config) if s != "test"]
    for split in splits:
        examples = load_split(config, split)
        summary = summarise_split(config, examples)
        if not table.columns:
            for column in ("split", *summary):
                table.add_column(column)
        table.add_row(split, *summary.values())
        if export:
            export.mkdir(parents=True, exist_ok=True)
            with (export / f"{split}.jsonl").open("w", encoding="utf-8") as file:
                for e in examples:
                    file.write(json.dumps({"id": e.id, "text": e.text, "fields": e.fields}, ensure_ascii=False) + "\n")
        if split == "validation":
            for example in examples[:show]:
                console.print(example.id, style="bold")
                console.print(example.text, markup=False, highlight=False)
                console.print(json.dumps(example.fields, ensure_ascii=False), style="green", markup=False)
    console.print(table)
    console.print("Eval set digests match; no eval-set text appears in train or validation.")
    if export:
        console.print(f"Exported {', '.join(splits)} to {export}/")


ProfileOption = Annotated[
    str, typer.Option(help="smoke (tiny model, seconds), cpu (SmolLM2), gpu (Llama 3.1 8B) or auto (gpu if CUDA).")
]
ModelOption = Annotated[str | None, typer.Option(help="Model spec overriding the profile's base model.")]


@app.command()
def train(
    task: TaskArgument,
    profile: ProfileOption = "auto",
    model: ModelOption = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a config value: lora.r=32, quantization=nf4, budget.max_steps=10."),
    ] = None,
    max_memory: Annotated[
        str | None, typer.Option(help="Refuse a trial whose estimated peak exceeds this (24G).")
    ] = None,
    tracking_uri: TrackingUriOption = None,
) -> None:
    """Fine-tune and score one configuration (one trial), tracked in MLflow; the last line is its metrics as JSON."""
    from harness.config import load_task, parse_set_options, resolve_trial_config

    config_task = load_task(task)
    chosen, reason = _choose_profile(config_task, profile)
    config = resolve_trial_config(config_task, profile=chosen, model=model, overrides=parse_set_options(set_ or []))
    # MLflow, transformers and TRL take seconds to import: only once the arguments are known to be good.
    from harness import tracking
    from harness.memory import parse_size
    from harness.trial import run_trial

    limit = parse_size(max_memory) if max_memory else None
    uri = tracking.configure(tracking_uri)
    budget, recipe = config.budget, config.recipe
    console.print(
        f"profile [bold]{chosen}[/bold] ({reason}); model [bold]{config.model}[/bold]; {budget.train_examples}"
        f" examples in batches of {budget.batch_size}; {recipe.quantization}, LoRA r={recipe.lora.r} on"
        f" {recipe.lora.target_modules}, learning rate {recipe.train.learning_rate:g}",
        highlight=False,
    )
    # The adapter where `harness eval --adapter` finds it, beside the store (not in /tmp, which nobody cleans).
    output_dir = tracking.mlruns_dir() / "train" / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    result = run_trial(config_task, config, output_dir=output_dir, max_memory_mb=limit, reporter=_TrainingProgress())
    console.print(
        f"MLflow run {result.run_id} in {uri}; adapter in {result.adapter_dir}", highlight=False, soft_wrap=True
    )
    _print_metrics_table(result.metrics)
    print(json.dumps({k: round(v, 6) if isinstance(v, float) else v for k, v in result.metrics.items()}))


class _TrainingProgress:
    """Training progress on stderr: a line per logged step with the loss and the time left."""

    def __init__(self, label: str = "training") -> None:
        self.label = label
        self.total_steps = 0
        self.started = 0.0

    def on_train_begin(self, total_steps: int) -> None:
        self.total_steps, self.started = total_steps, time.monotonic()
        errors.print(f"{self.label}: {total_steps} optimizer steps", markup=False)

    def on_log(self, step: int, metrics: dict[str, float]) -> None:
        from harness.estimates import minutes

        per_step = (time.monotonic() - self.started) / max(step, 1)
        errors.print(
            f"{self.label}: step {step}/{self.total_steps}, loss {metrics.get('loss', float('nan')):.4f},"
            f" {per_step:.1f} s a step, about {minutes(per_step * (self.total_steps - step))} of training left",
            markup=False,
        )

    def on_evaluate(self, step: int, validation_loss: float) -> None:
        pass

    def should_stop(self, step: int) -> bool:
        return False

    def on_train_end(self) -> None:
        errors.print(f"{self.label}: generating and scoring the validation answers", markup=False)


@app.command()
def search(
    task: TaskArgument,
    trials: Annotated[
        int, typer.Option(help="Total finished trials the study should have (re-running resumes).")
    ] = SearchOptions.trials,
    profile: ProfileOption = "auto",
    model: ModelOption = SearchOptions.model,
    study: Annotated[str | None, typer.Option(help="Study name (default: TASK-PROFILE).")] = SearchOptions.study_name,
    sampler: Annotated[str, typer.Option(help="tpe (multivariate, seeded), random or gp.")] = SearchOptions.sampler,
    pruner: Annotated[
        str,
        typer.Option(
            help="halving (successive halving over training steps: most trials stop at the first rungs), hyperband,"
            " median or none; all compare the validation loss at the rungs of the task's search.pruning."
        ),
    ] = SearchOptions.pruner,
    seed: Annotated[int, typer.Option(help="Sampler seed.")] = SearchOptions.seed,
    timeout: Annotated[
        float | None, typer.Option(help="Stop starting new trials after this many seconds.")
    ] = SearchOptions.timeout_seconds,
    max_memory: Annotated[str | None, typer.Option(help="Skip trials whose estimated peak exceeds this.")] = None,
    max_failures: Annotated[
        int, typer.Option(help="Stop (exit 2, finished trials kept) after this many trials in a row failed.")
    ] = SearchOptions.max_failures,
    storage: StorageOption = SearchOptions.storage,
    tracking_uri: TrackingUriOption = None,
    n_workers: Annotated[
        int, typer.Option(help="Worker processes on this machine: a GPU each, or a share of the cores.")
    ] = 1,
    worker_index: Annotated[
        int | None,
        typer.Option(help="This worker's number in log lines; read from Kubernetes and Slurm when unset."),
    ] = SearchOptions.worker_index,
    pool_worker: Annotated[bool, typer.Option("--pool-worker", hidden=True)] = False,
    no_register: Annotated[
        bool, typer.Option("--no-register", help="Do not register the best trial.")
    ] = not SearchOptions.register,
    quiet: Annotated[
        bool, typer.Option("--quiet", help="Log lines only, no live view (the default when output is not a terminal).")
    ] = False,
) -> None:
    """Search LoRA / QLoRA recipes with an Optuna study tracked in MLflow; prints the ranked trials.

    Any number of processes, here or on other machines, may run the same command on one --storage and
    --tracking-uri: they share the study's trials until it has --trials finished ones."""
    from harness.config import load_task
    from harness.memory import parse_size

    config = load_task(task)
    chosen, reason = _choose_profile(config, profile)
    if n_workers < 1:
        raise HarnessError(f"--n-workers must be at least 1, got {n_workers}")
    _check_shared_storage(storage, n_workers)  # before the heavy imports: a wrong command fails at once
    options = SearchOptions(
        trials=trials,
        profile=chosen,
        model=model,
        study_name=study or f"{config.task.name}-{chosen}",
        sampler=sampler,
        pruner=pruner,
        seed=seed,
        timeout_seconds=timeout,
        max_memory_mb=parse_size(max_memory) if max_memory else None,
        storage=storage,
        worker_index=worker_index,
        max_failures=max_failures,
        register=not no_register,
    )

    from harness import tracking, workers
    from harness.search.storage import default_storage

    storage_url = storage or default_storage()
    _check_shared_storage(storage_url, n_workers)
    index = worker_index if worker_index is not None else workers.worker_index_from_environment()
    options = dataclasses.replace(options, storage=storage_url, worker_index=index)
    uri = tracking.configure(tracking_uri)
    if n_workers > 1:
        _run_worker_pool(task, config, options, n_workers, uri)
        return
    if not pool_worker:
        console.print(f"profile [bold]{chosen}[/bold] ({reason})", highlight=False)
    try:
        # A live view redrawn into a log file shows nothing until the end: log lines there instead.
        summary = _run_with_progress(config, options, quiet=quiet or pool_worker or not errors.is_terminal)
    except KeyboardInterrupt:
        # The search has recorded the stop (trial FAIL, its run KILLED, and the study's run if no other worker
        # runs): say so, no traceback.
        errors.print("\ninterrupted: the current run is marked KILLED; run the same command again to resume")
        raise typer.Exit(130) from None
    if not pool_worker:
        _print_search_summary(summary, uri)
    if options.register and summary.best is not None:
        _register_best(config, summary, trials, storage_url)
    if not pool_worker:
        print(
            json.dumps({"study": summary.study_name, "best": summary.best, "finished": len(summary.rows)}, default=str)
        )


def _register_best(config: Any, summary: Any, trials: int, storage_url: str | None) -> None:
    """Register the study's best trial if this worker is the one to; say why not otherwise."""
    from harness.registry import register_after_search

    def starting(why: str) -> None:
        console.print(f"Registering the best trial ({summary.best['trial']}): {why}; --no-register skips this.")

    try:
        registration, why = register_after_search(
            config,
            study_name=summary.study_name,
            total=trials,
            storage=storage_url,
            on_start=starting,
            reporter=_TrainingProgress("refit"),
        )
    except KeyboardInterrupt:
        errors.print(
            "\ninterrupted during the registration: nothing was registered and the study is complete. Run the"
            f" same command again, or `harness register {config.task.name} --study {summary.study_name}`"
        )
        raise typer.Exit(130) from None
    if registration is None:
        console.print(f"Not registering here: {why}.", highlight=False)
        return
    _print_registration(registration)


def _check_shared_storage(storage: str | None, n_workers: int) -> None:
    if n_workers > 1 and storage and storage.startswith("sqlite:"):
        raise HarnessError(
            f"--n-workers {n_workers} needs a storage several processes can write: {storage} is SQLite."
            " Pass --storage postgresql://... or a journal file (--storage mlruns/optuna-journal.log)."
        )


def _run_worker_pool(task: str, config: Any, options: Any, count: int, uri: str) -> None:
    """`--n-workers K`: prints where each worker runs, each one that fails, and the study's summary."""
    from harness import workers

    def report(exit: Any) -> None:
        if exit.returncode != 0:
            errors.print(f"{exit.describe()}; the other workers take over its trial", markup=False)

    try:
        pool = workers.run_search_pool(
            task,
            config,
            options,
            count,
            tracking_uri=uri,
            on_start=lambda slot, where: console.print(f"worker {slot.index}: {where}", highlight=False),
            on_exit=report,
        )
    except KeyboardInterrupt:
        errors.print("\ninterrupted: every worker marked its run KILLED; run the same command again to resume")
        raise typer.Exit(130) from None
    _print_search_summary(pool.summary, uri)
    if pool.finished < options.trials or pool.failed:
        errors.print(
            f"the study has {pool.finished} of {options.trials} finished trials"
            f"{''.join(f'; {f}' for f in pool.failed)}; see the workers' errors above"
            + ("; run the same command again to resume" if pool.finished < options.trials else "")
        )
        raise typer.Exit(1)


def _run_with_progress(config: Any, options: Any, *, quiet: bool) -> Any:
    """A Rich live view (trial i of N, current params and step, best so far, elapsed and ETA) around the search."""
    from rich.live import Live

    from harness.estimates import minutes
    from harness.search.run import run_search

    def running(progress: Any) -> str:
        if progress.current_trial is None:
            return ""
        return f"trial {progress.current_trial}, step {progress.current_step} of {progress.current_total_steps}"

    def best(progress: Any) -> str:
        return "-" if progress.best_value is None else f"{progress.best_value:.4f} (trial {progress.best_trial})"

    def render(progress: Any) -> Table:
        elapsed = time.monotonic() - progress.started
        table = Table(show_header=False, title=f"search {config.task.name}")
        table.add_row("estimate", progress.estimate or "-")
        table.add_row("trials finished", f"{progress.finished} of {progress.total}")
        table.add_row("running", running(progress) or "-")
        table.add_row("params", ", ".join(f"{k}={v}" for k, v in progress.current_params.items()) or "-")
        table.add_row("best so far", best(progress))
        left = "-" if progress.seconds_left is None else minutes(progress.seconds_left)
        table.add_row("elapsed / left", f"{minutes(elapsed)} / {left} (refit included; corrected as trials finish)")
        if progress.last_failure:
            table.add_row("last failure", progress.last_failure)
        return table

    if quiet:
        label = "" if options.worker_index is None else f"worker {options.worker_index}: "
        printed_estimate = False
        last_line = ""

        def log_line(p: Any) -> None:
            nonlocal printed_estimate, last_line
            if p.estimate and not printed_estimate:
                errors.print(f"{label}estimate on this machine: {p.estimate}", markup=False)
                printed_estimate = True
                return
            now = f", running {running(p)}" if running(p) else ""
            left = "" if p.seconds_left is None else f", about {minutes(p.seconds_left)} left"
            line = f"{label}finished {p.finished}/{p.total}{now}, best {best(p)}{left}"
            line += f", last failure: {p.last_failure}" if p.last_failure else ""
            if line != last_line:  # progress reported twice with nothing new (a trial's start, its step 0)
                errors.print(line, markup=False)
                last_line = line

        return run_search(config, options, on_progress=log_line)
    with Live(console=errors, refresh_per_second=2, transient=False) as live:
        return run_search(config, options, on_progress=lambda p: live.update(render(p)))


def _print_search_summary(summary: Any, uri: str) -> None:
    metric = summary.objective
    table = Table(title=f"study {summary.study_name}: top trials by {metric} ({summary.direction})")
    for column in ("trial", metric, "lora.r", "alpha_ratio", "targets", "learning rate", "quantization", "note"):
        table.add_column(column)

    def row(label: str, values: dict[str, Any], note: str) -> None:
        table.add_row(
            label,
            f"{values.get(metric, float('nan')):.4f}" if values.get(metric) is not None else "-",
            str(values.get("param.lora.r", "")),
            str(values.get("param.lora.alpha_ratio", "")),
            str(values.get("param.lora.target_modules", "")),
            f"{values['param.train.learning_rate']:.2e}" if "param.train.learning_rate" in values else "",
            str(values.get("param.quantization", "")),
            note,
        )

    for values in summary.rows[:5]:
        row(str(values["trial"]), values, "seed recipe" if values["seed_recipe"] else values["state"].lower())
    if summary.seed_recipe and summary.seed_recipe not in summary.rows[:5]:
        row(str(summary.seed_recipe["trial"]), summary.seed_recipe, "seed recipe")
    if summary.zero_shot:
        row("zero-shot", summary.zero_shot, "base model, no fine-tuning")
    console.print(table)
    console.print(
        f"Optuna study {summary.study_name} in {summary.storage}; MLflow parent run {summary.parent_run_id} in"
        f" {without_password(uri)}."
        " Next: `harness ui` to compare trials, `harness search` again with more --trials to extend the study.",
        highlight=False,
    )


@app.command()
def register(
    task: TaskArgument,
    study: StudyOption = None,
    profile: ProfileOption = "auto",
    trial: Annotated[int | None, typer.Option(help="Register this trial instead of the best one.")] = None,
    no_refit: Annotated[
        bool, typer.Option("--no-refit", help="Register the trial's adapter as it is, without retraining.")
    ] = False,
    run: Annotated[
        str | None, typer.Option(help="Register the adapter of this MLflow run (e.g. `harness train`), as trained.")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help="Register this model as it is, no adapter (e.g. the zero-shot base, as a baseline)."),
    ] = None,
    storage: StorageOption = None,
    tracking_uri: TrackingUriOption = None,
) -> None:
    """Refit a study's best trial, merge its adapter into the base model and register it as @challenger."""
    from harness import registry, tracking
    from harness.config import load_task
    from harness.search.study import latest_study_name

    config = load_task(task)
    if run and model:
        raise HarnessError("give --run or --model, not both")
    if (run or model) and (study or trial is not None or no_refit):
        raise HarnessError("--study, --trial and --no-refit choose a study's trial; they do not apply to --run/--model")
    chosen, _ = _choose_profile(config, profile)
    tracking.configure(tracking_uri)
    if run:
        registration = registry.register_run(config, run)
    elif model:
        registration = registry.register_model(config, model, profile=chosen)
    else:
        registration = registry.register_trial(
            config,
            study_name=study or latest_study_name(config.task.name, chosen, storage=storage),
            storage=storage,
            trial_number=trial,
            refit=not no_refit,
            reporter=_TrainingProgress("refit"),
        )
    _print_registration(registration)


def _print_registration(registration: Any) -> None:
    table = Table(title=f"{registration.name} version {registration.version} (@challenger), from {registration.source}")
    columns = ("metric", "refit run" if registration.refit else "trained", "merged (validation)", "stored test")
    for column in columns:
        table.add_column(column, justify="right")
    for key in registration.test:
        if key.startswith(("f1_", "acc_")) or key in ("exact_match", "json_valid_rate"):
            table.add_row(
                key,
                *(
                    f"{m[key]:.3f}" if key in m else "-"
                    for m in (registration.validation, registration.merged_validation, registration.test)
                ),
            )
    console.print(table)
    console.print(
        f"Logged on MLflow run {registration.run_id}. Next: `harness promote` to run the gate.", highlight=False
    )


@app.command()
def promote(
    task: TaskArgument,
    version: Annotated[int | None, typer.Option(help="Candidate version (default: @challenger).")] = None,
    tolerance: Annotated[
        float, typer.Option(min=0.0, help="Allowed f1_micro drop; each field's F1 may drop twice this.")
    ] = 0.01,
    force: Annotated[bool, typer.Option("--force", help="Promote even if the gate refuses (recorded).")] = False,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Evaluate both versions again, not reuse what is recorded on them.")
    ] = False,
    tracking_uri: TrackingUriOption = None,
) -> None:
    """The regression gate: score candidate and @champion on the stored test set, move @champion if it holds.

    A version's figures on the same stored set (digest) and budget are reused from the version unless --fresh."""
    from harness import tracking
    from harness.config import load_task
    from harness.registry import promote as run_promotion

    config = load_task(task)
    tracking.configure(tracking_uri)
    promotion = run_promotion(config, version=version, tolerance=tolerance, force=force, fresh=fresh)
    champion = "none" if promotion.champion is None else f"v{promotion.champion}"
    table = Table(title=f"{promotion.name}: candidate v{promotion.candidate} vs champion {champion} (stored test set)")
    for column in ("metric", "candidate", "champion", "delta"):
        table.add_column(column, justify="right")
    for metric, candidate, current in promotion.result.rows:
        delta = "" if current is None else f"{candidate - current:+.3f}"
        table.add_row(metric, f"{candidate:.3f}", "-" if current is None else f"{current:.3f}", delta)
    console.print(table)
    console.print(f"figures: {promotion.evaluations}", highlight=False)
    for reason in promotion.result.reasons:
        console.print(f"gate: {reason}", markup=False)
    console.print(f"verdict: {promotion.verdict} (recorded on the version and on run {promotion.run_id})")
    if not promotion.promoted:
        raise typer.Exit(1)


@app.command()
def regress(
    task: TaskArgument,
    model: Annotated[
        str | None,
        typer.Option(help="models:/NAME@ALIAS, models:/NAME/VERSION, runs:/RUN/model, rules or a model spec."),
    ] = None,
    eval_set: Annotated[str | None, typer.Option(help="Check this stored eval set only (default: all).")] = None,
    update_baseline: Annotated[
        bool, typer.Option("--update-baseline", help="Store this run's figures as the expectations.")
    ] = False,
    tolerance: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help="With --update-baseline: how far below each figure still passes (default: each metric's stored"
            " tolerance, 0.01 for a new one).",
        ),
    ] = None,
    accept_regression: Annotated[
        bool,
        typer.Option("--accept-regression", help="With --update-baseline: store figures worse than the stored ones."),
    ] = False,
    tracking_uri: TrackingUriOption = None,
) -> None:
    """Check a model (default @champion) on every stored eval set against the expectations stored beside it."""
    from harness import tracking
    from harness.config import load_task
    from harness.regression import regress as run_regression

    config = load_task(task)
    tracking.configure(tracking_uri)
    results = run_regression(
        config,
        model=model,
        eval_set=eval_set,
        update_baseline=update_baseline,
        tolerance=tolerance,
        accept_regression=accept_regression,
    )
    for result in results:
        table = Table(title=f"{result.model} on {result.eval_set}")
        for column in ("metric", "expected", "got", "delta", "verdict"):
            table.add_column(column, justify="right")
        for check in result.checks:
            verdict = "[red]REGRESSED[/red]" if check.verdict == "regressed" else check.verdict
            table.add_row(
                check.metric,
                f"{check.expected:.4f} ± {check.tolerance:g}",
                f"{check.got:.4f}",
                f"{check.delta:+.4f}",
                verdict,
            )
        console.print(table)
        if result.updated:
            console.print(f"expectations updated from this run: {result.path}", highlight=False)
    regressed = [(r.eval_set, c.metric) for r in results for c in r.regressed]
    if regressed:
        errors.print("regression: " + ", ".join(f"{metric} on {name}" for name, metric in regressed), markup=False)
        raise typer.Exit(1)
    console.print(f"no regression on {len(results)} eval set(s)")


@app.command()
def serve(
    task: TaskArgument,
    alias: Annotated[str, typer.Option(help="Serve models:/<task>-extractor@ALIAS.")] = "champion",
    host: Annotated[str, typer.Option(help="Interface to bind; 0.0.0.0 exposes the server to the network.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="Port of the OpenAI-compatible server.")] = 8000,
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar="HARNESS_API_KEY",
            help="Require this bearer key on every request; better from the environment, which `ps` does not show.",
        ),
    ] = None,
    max_model_len: Annotated[int, typer.Option(help="Longest prompt + answer in tokens.")] = 2048,
    lora: Annotated[
        bool, typer.Option("--lora", help="Serve the base model with the version's adapter unmerged (vLLM LoRA).")
    ] = False,
    json_schema: Annotated[
        bool,
        typer.Option("--json-schema", help="Constrain answers to the task's JSON Schema (response_format)."),
    ] = False,
    check: Annotated[
        bool, typer.Option("--check", help="Send the stored test set through it, compare with offline, then stop.")
    ] = False,
    detach: Annotated[bool, typer.Option("--detach", help="Leave the server running in the background.")] = False,
    tracking_uri: TrackingUriOption = None,
) -> None:
    """Serve a registered version with vLLM's OpenAI-compatible server (until Ctrl-C, or --detach / --check)."""
    from harness import serving, tracking
    from harness.config import load_task
    from harness.prompts import output_schema

    config = load_task(task)
    tracking.configure(tracking_uri)
    options = serving.ServerOptions(host=host, port=port, api_key=api_key, max_model_len=max_model_len)
    if warning := serving.exposure_warning(options):
        errors.print(f"warning: {warning}", markup=False)
    server, version, served_dir = serving.serve_registered(config, alias, options, lora=lora)
    how = f"adapter {served_dir} on its base model (LoRA, unmerged)" if lora else f"weights in {served_dir}"
    console.print(f"Serving {server.served_name} v{version} (@{alias}, {how}) at {server.base_url}", highlight=False)
    console.print(f"server pid {server.process.pid}, log {server.log_path}", highlight=False, soft_wrap=True)
    request: dict[str, Any] = {
        "model": server.served_name,
        "temperature": 0,
        "messages": [{"role": "user", "content": f"{config.task.instruction[:60]}... <document text>"}],
    }
    if json_schema:
        schema = output_schema(config)
        request["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": config.task.name, "schema": schema},
        }
    auth = ' -H "Authorization: Bearer $KEY"' if api_key else ""
    console.print(
        f"Try: curl {server.base_url}/chat/completions{auth} -H 'Content-Type: application/json'"
        f" -d '{json.dumps(request, ensure_ascii=False)}'",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    if check:
        try:
            result = serving.check_registered(config, server, version, api_key, json_schema=json_schema)
        finally:
            if not detach:
                serving.stop_server(server)
        _print_serving_check(result, version)
        if not result.passed:
            raise typer.Exit(1)
        return
    if detach:
        console.print(f"Detached; stop it with `kill -- -{server.process.pid}` (the server and its workers).")
        return
    try:
        server.process.wait()
    except KeyboardInterrupt:
        serving.stop_server(server)


def _print_serving_check(result: Any, version: int) -> None:
    table = Table(title=f"served vs offline, v{version}, stored test set")
    columns = ["metric", "served (vLLM)", "offline (transformers)"]
    if result.constrained is not None:
        columns.insert(2, "served, JSON Schema")
    for column in columns:
        table.add_column(column, justify="right")
    for key in ("f1_micro", "exact_match", "json_valid_rate", "schema_valid_rate"):
        constrained = [] if result.constrained is None else [f"{result.constrained[key]:.4f}"]
        table.add_row(key, f"{result.served[key]:.4f}", *constrained, f"{result.offline[key]:.4f}")
    console.print(table)
    speeds = [(f"concurrency {c}", speed) for c, speed in result.throughput.items()]
    if result.constrained_throughput is not None:
        speeds.append(("concurrency 16, JSON Schema", result.constrained_throughput))
    for label, (tokens_per_second, p50, p95) in speeds:
        console.print(f"{label}: {tokens_per_second:.0f} tokens/s, latency p50 {p50:.2f} s, p95 {p95:.2f} s")
    if result.constrained is not None:
        console.print(
            f"json_valid_rate without the schema {result.served['json_valid_rate']:.4f},"
            f" with it {result.constrained['json_valid_rate']:.4f}"
        )
    console.print(f"answers identical to the offline ones: {result.identical:.1%}")
    verdict = "passes" if result.passed else "FAILS"
    console.print(f"parity {verdict}: |delta f1_micro| = {result.delta:.4f} (tolerance {result.parity_tolerance})")


@app.command()
def ui(
    task: TaskArgument = "legal",
    host: Annotated[str, typer.Option(help="Interface to bind; 0.0.0.0 exposes the UI to the network.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the MLflow UI.")] = 5000,
    detach: Annotated[bool, typer.Option("--detach", help="Leave the UI running in the background.")] = False,
    tracking_uri: TrackingUriOption = None,
) -> None:
    """Start the MLflow UI on the store the search wrote; prints the page that ranks the task's trials.

    With --tracking-uri http://... (a team's `harness server`) the server is the UI: nothing is started."""
    from harness import tracking
    from harness.config import load_task

    config = load_task(task)
    uri = tracking.configure(tracking_uri)
    objective = config.search.objective.metric
    columns = [objective, *(f"f1_{name}" for name in config.fields), "exact_match", "json_valid_rate"]
    served = uri.startswith(("http://", "https://"))
    page = tracking.save_ranked_view(
        uri.rstrip("/") if served else f"http://{host}:{port}",
        config.task.name,
        metrics=list(dict.fromkeys(columns)),
        params=["lora.r", "lora.alpha", "lora.target_modules", "train.learning_rate", "quantization"],
    )
    if served:
        console.print(f"Trials ranked by {objective} on the tracking server {uri}, best first:", highlight=False)
        print(page)
        return
    log_path = tracking.mlruns_dir() / "ui" / f"mlflow-ui-{port}.log"
    process = tracking.start_mlflow_server(host, port, log_path)
    console.print(f"MLflow UI pid {process.pid}, log {log_path}", highlight=False, soft_wrap=True)
    console.print(f"Trials ranked by {objective}, best first, with their metrics and recipes as columns:")
    print(page)
    _wait_or_detach(process, detach=detach)


def _wait_or_detach(process: Any, *, detach: bool) -> None:
    """Leave an MLflow server running in the background, or serve until Ctrl-C and stop it with its workers."""
    from harness import tracking

    if detach:
        console.print(f"Detached; stop it with `kill -- -{process.pid}` (the server and its workers).")
        return
    try:
        process.wait()
    except KeyboardInterrupt:
        tracking.stop_mlflow_server(process)


@app.command()
def server(
    backend_store_uri: Annotated[
        str | None,
        typer.Option(
            help="Where runs and the model registry live: postgresql://USER:PASS@HOST:PORT/DB for a team"
            " (default: <mlruns>/mlflow.db)."
        ),
    ] = None,
    artifacts_destination: Annotated[
        str | None,
        typer.Option(help="Where the server stores the artifacts workers upload (default: <mlruns>/artifacts)."),
    ] = None,
    host: Annotated[str, typer.Option(help="Interface to bind; 0.0.0.0 for workers on other machines.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port workers and browsers reach it on.")] = 5000,
    server_workers: Annotated[int, typer.Option("--workers", help="Request-handling processes.")] = 2,
    detach: Annotated[bool, typer.Option("--detach", help="Leave the server running in the background.")] = False,
) -> None:
    """Start an MLflow tracking server for a team: runs in a database, artifacts uploaded through the server.

    Workers then pass --tracking-uri http://HOST:PORT to `harness search`; its web page is the UI."""
    from harness import tracking

    store = backend_store_uri or tracking.default_tracking_uri()
    artifacts = artifacts_destination or str(tracking.mlruns_dir() / "artifacts")
    if "://" not in artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
    log_path = tracking.mlruns_dir() / "server" / f"mlflow-server-{port}.log"
    process = tracking.start_mlflow_server(
        host, port, log_path, backend_store_uri=store, artifacts_destination=artifacts, workers=server_workers
    )
    console.print(f"MLflow tracking server pid {process.pid}, log {log_path}", highlight=False, soft_wrap=True)
    console.print(f"backend store {without_password(store)}; artifacts in {artifacts}", highlight=False)
    console.print(f"Workers: harness search TASK --tracking-uri http://{host}:{port} --storage postgresql://...")
    print(f"http://{host}:{port}")
    _wait_or_detach(process, detach=detach)


@app.command()
def report(
    task: TaskArgument,
    study: StudyOption = None,
    profile: ProfileOption = "auto",
    out: Annotated[Path | None, typer.Option(help="Directory for report.html and its PNGs.")] = None,
    tracking_uri: TrackingUriOption = None,
) -> None:
    """Write a study's self-contained HTML report (and PNGs), and log it on the study's run."""
    from harness import tracking
    from harness.config import load_task
    from harness.report import build_report

    config = load_task(task)
    chosen, _ = _choose_profile(config, profile)
    tracking.configure(tracking_uri)
    study_name = study or tracking.latest_study_name(config.task.name, chosen)
    built = build_report(config, study_name=study_name, out_dir=out or tracking.mlruns_dir() / "reports" / study_name)
    console.print(f"Report: {built.html_path} ({len(built.pngs)} PNGs beside it); logged on run {built.run_id}")


@app.command()
def results(
    task: TaskArgument,
    study: StudyOption = None,
    profile: ProfileOption = "auto",
    out: Annotated[Path, typer.Option(help="Directory for <study>.md, <study>.json and the PNGs.")] = Path("results"),
    tracking_uri: TrackingUriOption = None,
) -> None:
    """The study's evidence: the ladder (zero-shot, rule baseline, seed recipe, best trial, registered model) on
    every stored eval set, with each stage's time, tokens and memory and the leaderboard, as <study>.md/.json."""
    from harness import tracking
    from harness.config import load_task
    from harness.results import write_results

    config = load_task(task)
    chosen, _ = _choose_profile(config, profile)
    tracking.configure(tracking_uri)
    written = write_results(
        config,
        study_name=study or tracking.latest_study_name(config.task.name, chosen),
        out_dir=out,
        on_progress=lambda line: errors.print(line, markup=False, highlight=False),
    )
    console.print(f"Results: {written.markdown} and {written.figures} ({len(written.pngs)} PNGs beside them)")


@app.command("eval")
def eval_(
    task: TaskArgument,
    model: Annotated[str, typer.Option(help="Model spec: embedded:..., tiny:llama, a directory or a hub id.")],
    adapter: Annotated[Path | None, typer.Option(help="A LoRA adapter directory to apply.")] = None,
    split: SplitOption = "validation",
    limit: Annotated[int | None, typer.Option(help="Score only the first N examples.")] = None,
    max_new_tokens: Annotated[int, typer.Option(help="Generation budget per answer.")] = DEFAULT_MAX_NEW_TOKENS,
    out: Annotated[
        Path | None,
        typer.Option(help="Also write the raw answers here, one {id, output} per line (what `harness score` reads)."),
    ] = None,
) -> None:
    """Score any model, with or without an adapter (e.g. the zero-shot baseline); last line: metrics as JSON."""
    from harness.config import load_task
    from harness.predictions import write_predictions
    from harness.trial import evaluate_model

    config = load_task(task)
    scores, generated = evaluate_model(
        config, model, adapter=adapter, split=split, limit=limit, max_new_tokens=max_new_tokens
    )
    console.print(
        f"{generated.new_tokens} tokens generated in {generated.seconds:.1f} s"
        f" ({generated.tokens_per_second:.0f} tokens/s)"
    )
    if out is not None:
        # The scorer's records carry the ids in the split's order, the order the answers were generated in.
        write_predictions(out, [record.id for record in scores.records], generated.outputs)
        console.print(f"{len(generated.outputs)} answers written to {out}")
    _print_scores(config, scores, split=split)


def _choose_profile(task: Any, profile: str) -> tuple[str, str]:
    """`auto` is gpu when CUDA is available, else cpu; returns the profile and why it was chosen."""
    if profile != "auto":
        return profile, "asked for"
    from harness.machine import has_cuda

    chosen = "gpu" if has_cuda() else "cpu"
    why = task.profiles[chosen].why if chosen in task.profiles else ""
    return chosen, f"auto: {why}" if why else "auto"


def _print_metrics_table(metrics: dict[str, float]) -> None:
    table = Table(title="trial metrics")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        table.add_row(name, f"{value:.4g}" if isinstance(value, float) else str(value))
    console.print(table)


@app.command("fetch-model")
def fetch_model(
    spec: Annotated[
        str,
        typer.Argument(help="embedded:smollm2-135m-instruct, tiny:llama, a local directory or a Hugging Face id."),
    ],
) -> None:
    """Resolve a model spec to a local safetensors directory (converting or downloading once) and print it."""
    from harness.model_loading import resolve_model

    resolved = resolve_model(spec)
    console.print(resolved.origin)
    print(resolved.path)


def _print_scores(config: Any, scores: Any, *, split: str) -> None:
    """A per-field table (precision, recall, F1, accuracy), then the metrics as JSON on the last line."""
    table = Table(title=f"{config.task.name} / {split}: {scores.metrics['n']} examples")
    for column in ("field", "type", "precision", "recall", "F1", "accuracy"):
        table.add_column(column, justify="left" if column in ("field", "type") else "right")
    for name, spec in config.fields.items():
        counts = scores.counts[name]
        accuracy = scores.metrics.get(f"acc_{name}")
        table.add_row(
            name,
            spec.type,
            f"{counts.precision:.3f}",
            f"{counts.recall:.3f}",
            f"{counts.f1:.3f}",
            "" if accuracy is None else f"{accuracy:.3f}",
        )
    metrics = scores.metrics
    table.add_section()
    table.add_row("micro", "", "", "", f"{metrics['f1_micro']:.3f}", "")
    console.print(table)
    console.print(
        f"exact match {metrics['exact_match']:.3f} · valid JSON {metrics['json_valid_rate']:.3f}"
        f" · schema-valid {metrics['schema_valid_rate']:.3f}"
    )
    print(json.dumps({k: round(v, 6) if isinstance(v, float) else v for k, v in metrics.items()}))


def main() -> None:
    """Console-script entry point: user errors print one clear message and exit 2, never a stack trace."""
    # Preemption (Kubernetes, Slurm, `docker stop`) sends SIGTERM: it stops work exactly as Ctrl-C does (the
    # trial KILLED and retried, the study's run closed) instead of killing the process mid-write.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        app()
    except HarnessError as error:
        _print_error(str(error))
        sys.exit(2)
    except Exception as error:
        # A full disk, a locked or unreachable tracking store: one line with what to do. Anything else is a bug
        # and keeps its traceback.
        from harness.tracking import describe_failure

        described = describe_failure(error)
        if described is None:
            raise
        _print_error(described)
        sys.exit(2)


def _print_error(message: str) -> None:
    errors.print("error:", style="bold red", end=" ")
    errors.print(message, markup=False, highlight=False, soft_wrap=True)
