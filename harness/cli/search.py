"""`harness train`, `search` and `register`: one trial, a study of them, and the winner refitted and registered."""

from __future__ import annotations

import dataclasses
import json
from typing import Annotated, Any

import typer
from rich.table import Table

from harness.cli.app import (
    ModelOption,
    ProfileOption,
    StorageOption,
    StudyOption,
    TaskArgument,
    TrackingUriOption,
    app,
    console,
    errors,
    print_json_line,
)
from harness.errors import HarnessError, without_password
from harness.search.options import SearchOptions, check_storage_for_workers


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
        str | None, typer.Option(help="Refuse a trial whose estimated peak exceeds this: 24GiB (or 24G, 10^9 bytes).")
    ] = None,
    tracking_uri: TrackingUriOption = None,
) -> None:
    """Fine-tune and score one configuration (one trial), tracked in MLflow; the last line is its metrics as JSON."""
    from harness.config import load_task, parse_memory_size, parse_set_options, resolve_trial_config

    config_task = load_task(task)
    from harness.machine import choose_profile

    chosen, reason = choose_profile(config_task, profile, trains=True)
    config = resolve_trial_config(config_task, profile=chosen, model=model, overrides=parse_set_options(set_ or []))
    # MLflow, transformers and TRL take seconds to import: only once the arguments are known to be good.
    from harness import tracking
    from harness.progress import ConsoleProgress
    from harness.trial import train_output_dir
    from harness.trial_process import run_trial_on_its_gpus

    limit = parse_memory_size(max_memory) if max_memory else None
    uri = tracking.configure(tracking_uri)
    budget, recipe = config.budget, config.recipe
    console.print(
        f"profile [bold]{chosen}[/bold] ({reason}); model [bold]{config.model}[/bold]; {budget.train_examples}"
        f" examples in batches of {budget.batch_size}; {recipe.quantization}, LoRA r={recipe.lora.r} on"
        f" {recipe.lora.target_modules}, learning rate {recipe.train.learning_rate:g}",
        highlight=False,
    )
    result = run_trial_on_its_gpus(
        config_task, config, output_dir=train_output_dir(), max_memory_mb=limit, reporter=ConsoleProgress(errors)
    )
    console.print(
        f"MLflow run {result.run_id} in {uri}; adapter in {result.adapter_dir}", highlight=False, soft_wrap=True
    )
    _print_metrics_table(result.metrics)
    print_json_line(result.metrics)


def _print_metrics_table(metrics: dict[str, float]) -> None:
    table = Table(title="trial metrics")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        table.add_row(name, f"{value:.4g}" if isinstance(value, float) else str(value))
    console.print(table)


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
    max_memory: Annotated[
        str | None, typer.Option(help="Skip trials whose estimated peak exceeds this: 24GiB (or 24G, 10^9 bytes).")
    ] = None,
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
    from harness.config import load_task, parse_memory_size
    from harness.machine import choose_profile

    config = load_task(task)
    chosen, reason = choose_profile(config, profile, trains=True)
    check_storage_for_workers(storage, n_workers)  # before the heavy imports: a wrong command fails at once
    options = SearchOptions(
        trials=trials,
        profile=chosen,
        model=model,
        study_name=study or f"{config.task.name}-{chosen}",
        sampler=sampler,
        pruner=pruner,
        seed=seed,
        timeout_seconds=timeout,
        max_memory_mb=parse_memory_size(max_memory) if max_memory else None,
        storage=storage,
        worker_index=worker_index,
        max_failures=max_failures,
        register=not no_register,
    )

    from harness import tracking, workers
    from harness.search.storage import default_storage

    storage_url = storage or default_storage()
    check_storage_for_workers(storage_url, n_workers)
    index = worker_index if worker_index is not None else workers.worker_index_from_environment()
    options = dataclasses.replace(options, storage=storage_url, worker_index=index)
    uri = tracking.configure(tracking_uri)
    if options.register and not pool_worker:
        from harness.registry import check_the_gpus_hold_registration

        check_the_gpus_hold_registration(config, profile=chosen, model=model)  # now, not after hours of trials
    if n_workers > 1:
        # The workers only search; this process, which sees every GPU of the machine (a worker sees its own),
        # registers once they are done: a 70B model merged in bf16 needs two 80 GB cards.
        pool_summary = _run_worker_pool(task, config, dataclasses.replace(options, register=False), n_workers, uri)
        if options.register and pool_summary.best is not None:
            _register_best(config, pool_summary, trials, storage_url)
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
    from harness.progress import ConsoleProgress
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
            reporter=ConsoleProgress(errors, "refit"),
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


def _run_worker_pool(task: str, config: Any, options: Any, count: int, uri: str) -> Any:
    """`--n-workers K`: prints where each worker runs, each one that fails, and the study's summary; returns it."""
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
    return pool.summary


def _run_with_progress(config: Any, options: Any, *, quiet: bool) -> Any:
    """The search, watched: a live view on a terminal, log lines elsewhere (or with --quiet)."""
    from harness.progress import live_search_view, search_log_lines
    from harness.search.run import run_search

    if quiet:
        return run_search(config, options, on_progress=search_log_lines(errors, options.worker_index))
    with live_search_view(errors, config.task.name) as on_progress:
        return run_search(config, options, on_progress=on_progress)


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
    from harness.machine import choose_profile
    from harness.progress import ConsoleProgress
    from harness.search.study import latest_study_name

    config = load_task(task)
    if run and model:
        raise HarnessError("give --run or --model, not both")
    if (run or model) and (study or trial is not None or no_refit):
        raise HarnessError("--study, --trial and --no-refit choose a study's trial; they do not apply to --run/--model")
    chosen, _ = choose_profile(config, profile, trains=True)
    if not run:  # (a run's adapter is on its own base model)
        registry.check_the_gpus_hold_registration(config, profile=chosen, model=model)
    tracking.configure(tracking_uri)
    progress = ConsoleProgress(errors, "refit")
    if run:
        registration = registry.register_run(config, run, reporter=progress)
    elif model:
        registration = registry.register_model(config, model, profile=chosen, reporter=progress)
    else:
        registration = registry.register_trial(
            config,
            study_name=study or latest_study_name(config.task.name, chosen, storage=storage),
            storage=storage,
            trial_number=trial,
            refit=not no_refit,
            reporter=progress,
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
def plan(
    task: TaskArgument,
    model: ModelOption = None,
    gpu: Annotated[
        str | None,
        typer.Option(
            help="a100-40gb, a100-80gb, h100-80gb, h200-141gb, l4-24gb, a10-24gb, l40s-48gb (default: this"
            " machine's GPU, else a100-80gb)."
        ),
    ] = None,
    gpus: Annotated[
        int | None,
        typer.Option(
            help="GPUs of that kind: a worker on each, or one model split over them (default: what the profile was"
            " sized for, else 1)."
        ),
    ] = None,
    profile: Annotated[str, typer.Option(help="The budget to plan (a GPU's: gpu).")] = "gpu",
    trials: Annotated[int, typer.Option(help="Trials of the search to plan.")] = 30,
) -> None:
    """Whether full fine-tuning, LoRA, 8-bit LoRA and QLoRA fit a GPU, and how long the search takes on it: before
    any GPU hour is paid for (arithmetic on the model's config.json and the task's tokens; no GPU needed)."""
    from harness import plan as planning
    from harness.config import load_task, resolve_trial_config
    from harness.progress import minutes

    config = load_task(task)
    spec = model or resolve_trial_config(config, profile=profile).model
    sized = config.profiles[profile].sized_for if profile in config.profiles else None
    if gpu is None and sized is not None:  # the card the profile was sized for, unless another is named
        gpu, gpus = sized.gpu, gpus or sized.gpus
    gpus = gpus or 1
    card = planning.known_gpu(gpu) if gpu else planning.local_gpu() or planning.GPUS["a100-80gb"]
    shape, tokens, counted = planning.model_and_tokens(
        config, spec, tokenizer_spec=resolve_trial_config(config, profile="cpu").model
    )
    made = planning.make_plan(
        config, profile=profile, model=spec, shape=shape, gpu=card, gpus=gpus, tokens=tokens, trials=trials
    )
    budget, adapter = made.budget, made.adapter
    console.print(
        f"{spec}: {shape.parameters / 1e9:.2f}B parameters; {gpus} x {card.name} ({card.memory_gib:g} GiB,"
        f" bf16 matmuls at {card.matmul_tflops:.0f} TFLOP/s)",
        markup=False,
    )
    console.print(
        f"profile {profile}: micro-batches of {budget.micro_batch_size or budget.batch_size} x {budget.max_seq_length}"
        f" tokens, gradient checkpointing {'on' if budget.gradient_checkpointing else 'off'}; the largest adapter the"
        f" search draws: rank {adapter.rank} on {adapter.target_modules}; tokens: {counted}",
        markup=False,
    )
    table = Table(title=f"{config.task.name}: {trials} trials and the refit, planned")
    columns = ("method", "peak per GPU", "1 GPU, no ckpt", "1 GPU, ckpt", "runs on", "trial", "search + refit",
               "at the seed's speed")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column in ("method", "runs on") else "right")
    for row in made.rows:
        table.add_row(
            row.method.name,
            f"{row.memory.total_mb / 1024:.1f} GiB",
            f"{row.without_checkpointing_gib:.1f} GiB",
            f"{row.with_checkpointing_gib:.1f} GiB",
            row.placement,
            minutes(row.trial_seconds) if row.trial_seconds else "—",
            minutes(row.search_seconds) if row.search_seconds else "—",
            minutes(row.search_seconds_at_seed_speed) if row.search_seconds_at_seed_speed else "—",
        )
    console.print(table)
    if sized is not None and (sized.gpu, sized.gpus) == (gpu, gpus):
        seconds = [row.search_seconds_at_seed_speed for row in planning.drawn_rows(made, config)]
        slowest = max((s for s in seconds if s is not None), default=0.0)
        within = None not in seconds and slowest <= sized.hours * 3600
        why = "a quantization its trials draw does not fit" if None in seconds else f"at most {slowest / 3600:.1f} h"
        console.print(
            f"profile {profile} is sized for {sized.hours:g} h on {sized.gpus} x {sized.gpu}:"
            f" {'within' if within else 'OVER'} them at the seed's speed ({why})",
            markup=False,
        )
    if allowed := config.profiles[profile].quantization:
        console.print(f"profile {profile} trains in {', '.join(allowed)} only: its trials draw no other", markup=False)
    for row in made.rows:
        for advice in row.advice:
            console.print(f"{row.method.name}: {advice}", markup=False)
    for row in made.rows:
        if row.folds is False:
            console.print(
                f"{row.method.name}: its trials generate through the adapter on the {row.method.quantization} base"
                " (slower, not in the times above): the adapter folded into bf16 would not fit a trial's GPUs",
                markup=False,
            )
    merged = made.registration.total_mb / 1024
    console.print(
        f"registration: the winner merged into bf16 and evaluated needs {merged:.1f} GiB per GPU"
        f" {'split over' if gpus > 1 else 'on'} {gpus} x {card.memory_gib:g} GiB: "
        + ("fits" if merged <= card.memory_gib else "does NOT fit; register on more or larger GPUs (docs/gpu.md)"),
        markup=False,
    )
    console.print(
        "Memory: harness's estimate (weights, adapter and AdamW state, activations, logits, CUDA context), checked"
        " against published tables (docs/gpu.md). Time: its FLOP model at the card's rate; bitsandbytes' own"
        " dequantisation is not in it. At the seed's speed: training as slow as the seed's one published figure"
        f" (Llama 3.1 8B, A100, 3,200 x 3 in 4 h: {made.seed_slowdown:.1f}x the FLOP model), what the GPU"
        " profiles are sized on. Full fine-tuning is shown for scale: harness searches LoRA recipes.",
        markup=False,
    )
