"""`harness data`, `baseline`, `score`, `eval` and `fetch-model`: a task's data, and scoring any system's answers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from harness.cli.app import ModelOption, ProfileOption, SplitOption, TaskArgument, app, console, errors, print_json_line
from harness.config import DEFAULT_MAX_NEW_TOKENS
from harness.errors import HarnessError


@app.command()
def data(
    task: TaskArgument,
    export: Annotated[Path | None, typer.Option(help="Write every split as JSONL into this directory.")] = None,
    show: Annotated[int, typer.Option(help="Print this many validation examples with their gold fields.")] = 0,
    profile: ProfileOption = "auto",
    model: ModelOption = None,
) -> None:
    """Check a task's data (digests, leakage, schema) and summarise each split, in words and in the profile's
    model's tokens."""
    from harness.config import load_task, resolve_trial_config
    from harness.machine import choose_profile
    from harness.model_loading import load_tokenizer, resolve_model
    from harness.prompts import summarise_token_counts, token_counts
    from harness.task_data import load_split, split_names, summarise_split

    config = load_task(task)
    chosen, _ = choose_profile(config, profile)
    trial_config = resolve_trial_config(config, profile=chosen, model=model)
    budget, model_spec = trial_config.budget, trial_config.model
    tokenizer = load_tokenizer(resolve_model(model_spec))
    table = Table(title=f"{config.task.name} data")
    tokens = Table(
        title=f"{config.task.name} in {model_spec}'s tokens (profile {chosen}: prompt and answer at most"
        f" {budget.max_seq_length} to train)"
    )
    splits = [s for s in split_names(config) if s != "test"]
    too_long: list[str] = []
    for split in splits:
        examples = load_split(config, split)
        summary = summarise_split(config, examples)
        if not table.columns:
            for column in ("split", *summary):
                table.add_column(column)
        table.add_row(split, *summary.values())
        counts = [token_counts(tokenizer, config, e.text, e.fields) for e in examples]
        token_summary = summarise_token_counts(counts, max_seq_length=budget.max_seq_length)
        if not tokens.columns:
            for column in ("split", *token_summary):
                tokens.add_column(column, justify="left" if column == "split" else "right")
        tokens.add_row(split, *token_summary.values())
        over = [prompt + answer for prompt, answer in counts if prompt + answer > budget.max_seq_length]
        if over and split in ("train", "validation"):
            too_long.append(f"{len(over)} {split} examples (the longest {max(over)} tokens)")
        longest_answer = max(answer for _, answer in counts)
        if longest_answer > budget.max_new_tokens:
            errors.print(
                f"warning: {split}'s longest answer is {longest_answer} tokens, more than the {chosen} profile's"
                f" max_new_tokens={budget.max_new_tokens}: generation would cut such answers; raise"
                f" profiles.{chosen}.budget.max_new_tokens in {config.file}",
                markup=False,
            )
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
    console.print(tokens)
    console.print("Eval set digests match; no eval-set text appears in train or validation.")
    if too_long:
        # Training refuses such examples rather than cut their answers: say so before a search is started.
        errors.print(
            f"warning: {' and '.join(too_long)} are longer than the {chosen} profile's max_seq_length="
            f"{budget.max_seq_length}: training refuses them; raise profiles.{chosen}.budget.max_seq_length in"
            f" {config.file}",
            markup=False,
        )
    if export:
        console.print(f"Exported {', '.join(splits)} to {export}/")


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
    print_scores(config, scores, split=split)


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
    print_scores(config, scores, split=split)


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
    from harness.progress import ConsoleProgress
    from harness.trial import evaluate_model

    config = load_task(task)
    scores, generated = evaluate_model(
        config,
        model,
        adapter=adapter,
        split=split,
        limit=limit,
        max_new_tokens=max_new_tokens,
        reporter=ConsoleProgress(errors),
    )
    console.print(
        f"{generated.new_tokens} tokens generated in {generated.seconds:.1f} s"
        f" ({generated.tokens_per_second:.0f} tokens/s)"
    )
    if out is not None:
        # The scorer's records carry the ids in the split's order, the order the answers were generated in.
        write_predictions(out, [record.id for record in scores.records], generated.outputs)
        console.print(f"{len(generated.outputs)} answers written to {out}")
    print_scores(config, scores, split=split)


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


def print_scores(config: Any, scores: Any, *, split: str) -> None:
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
    print_json_line(metrics)
