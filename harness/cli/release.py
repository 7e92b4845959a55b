"""`harness promote`, `regress`, `serve`, `export` and `pick`: the gate that moves @champion, the checks on stored
eval sets, the registered model behind vLLM's OpenAI-compatible server and in the file llama.cpp deploys, and the
form to deploy under what you can afford."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from harness.cli.app import TaskArgument, TrackingUriOption, app, console, errors
from harness.errors import HarnessError


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
    from harness.progress import ConsoleProgress
    from harness.promotion import promote as run_promotion

    config = load_task(task)
    tracking.configure(tracking_uri)
    promotion = run_promotion(
        config, version=version, tolerance=tolerance, force=force, fresh=fresh, reporter=ConsoleProgress(errors)
    )
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
    from harness.progress import ConsoleProgress
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
        reporter=ConsoleProgress(errors),
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
    form: Annotated[
        str | None,
        typer.Option(
            help="Serve a form `harness export` wrote for the version, as `harness pick` names it: w4a16-gptq,"
            " w4a16-awq (vLLM), gguf-q4_k_m and the other GGUF quants (llama.cpp's server: make llama-server)."
        ),
    ] = None,
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
    """Serve a registered version with vLLM's OpenAI-compatible server (until Ctrl-C, or --detach / --check); with
    --form, one of its exports (--check then holds it to the scores recorded at export)."""
    from harness import serving, tracking
    from harness.config import load_task
    from harness.prompts import output_schema

    config = load_task(task)
    tracking.configure(tracking_uri)
    options = serving.ServerOptions(host=host, port=port, api_key=api_key, max_model_len=max_model_len)
    if warning := serving.exposure_warning(options):
        errors.print(f"warning: {warning}", markup=False)
    if form and lora:
        raise HarnessError("give --form or --lora, not both: --lora serves the merged version's adapter unmerged")
    record: dict[str, Any] = {}
    offline = None
    if form:
        server, version, record = serving.serve_registered_form(config, alias, form, options, scored=check)
        how = f"form {form}, {record['file']}"
    else:
        offline = serving.offline_answers(config, alias) if check else None  # before a server holds the GPU
        server, version, served_dir = serving.serve_registered(
            config, alias, options, lora=lora, version=offline.version if offline else None
        )
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
            if offline is not None:
                result = serving.check_registered(config, server, offline, api_key, json_schema=json_schema)
            else:
                result = serving.check_registered_form(
                    config, server, version, record, api_key, json_schema=json_schema
                )
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
    table = Table(title=f"served vs {result.reference}, v{version}, stored test set")
    columns = ["metric", "served", result.reference]
    if result.constrained is not None:
        columns.insert(2, "served, JSON Schema")
    for column in columns:
        table.add_column(column, justify="right")
    for key in ("f1_micro", "exact_match", "json_valid_rate", "schema_valid_rate"):
        constrained = [] if result.constrained is None else [f"{result.constrained[key]:.4f}"]
        offline = f"{result.offline[key]:.4f}" if key in result.offline else "—"
        table.add_row(key, f"{result.served[key]:.4f}", *constrained, offline)
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
    if result.identical is not None:
        console.print(f"answers identical to the offline ones: {result.identical:.1%}")
    verdict = "passes" if result.passed else "FAILS"
    console.print(f"parity {verdict}: |delta f1_micro| = {result.delta:.4f} (tolerance {result.parity_tolerance})")


@app.command()
def export(
    task: TaskArgument,
    alias: Annotated[str | None, typer.Option(help="Export models:/<task>-extractor@ALIAS.")] = "champion",
    version: Annotated[int | None, typer.Option(help="Export this version number instead of an alias.")] = None,
    format: Annotated[
        str,
        typer.Option(
            "--format", help="gguf (llama.cpp, Ollama); gptq or awq (4-bit weights for vLLM, llm-compressor)."
        ),
    ] = "gguf",
    quant: Annotated[
        str | None,
        typer.Option(
            help="gguf: f32, f16, bf16, q8_0 (llama.cpp's converter); q5_1, q5_0, q4_1, q4_0 (requantised); q4_k_m,"
            " q6_k, ... (llama-quantize, built by make llama-server); default q8_0. gptq, awq: w4a16."
        ),
    ] = None,
    adapter: Annotated[
        bool, typer.Option("--adapter", help="The LoRA adapter alone, for llama.cpp's --lora on the base model.")
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Where to write (default exports/<name>-v<N>-<quant>.gguf, or the directory"
            " exports/<name>-v<N>-<format>-w4a16)."
        ),
    ] = None,
    check: Annotated[
        bool,
        typer.Option(
            "--check/--no-check",
            help="Score the stored test set with the export loaded back (gguf) or served by vLLM (gptq, awq).",
        ),
    ] = True,
    calibration: Annotated[
        int | None,
        typer.Option(
            help="gptq, awq: calibrate on the first N training conversations (default 128; llm-compressor's"
            " examples use 256-512)."
        ),
    ] = None,
    tracking_uri: TrackingUriOption = None,
) -> None:
    """Write a registered version as a GGUF file for llama.cpp / Ollama, or as 4-bit weights for vLLM (GPTQ, AWQ),
    score it, record it on the version (--adapter: its LoRA adapter alone, for llama.cpp's --lora)."""
    from harness import export as exporting
    from harness import tracking
    from harness.config import load_task
    from harness.progress import ConsoleProgress

    exporting.check_format(format)
    quant = quant or ("q8_0" if format == "gguf" else exporting.W4A16)
    exporting.check_quant(quant, format)
    config = load_task(task)
    tracking.configure(tracking_uri)
    done = exporting.export_version(
        config, alias=None if version else alias, version=version, format=format, quant=quant, adapter=adapter,
        out=out, check=check, calibration=calibration, reporter=ConsoleProgress(errors, label="answers"),
    )  # fmt: skip
    file = done.file
    held = ", ".join(f"{count} {kind}" for kind, count in file.tensor_types.items())
    console.print(f"{done.name} v{done.version} -> {file.path} ({file.size_bytes / 1e6:.1f} MB, {quant})", markup=False)
    console.print(f"tensors: {held}; written in {done.convert_seconds:.0f} s; sha256 {file.sha256[:16]}", markup=False)
    if done.test:
        scored = "the GGUF file" if format == "gguf" else f"the {format} checkpoint served by vLLM"
        export_f1, merged_f1, valid = done.test["f1_micro"], done.merged_test["f1_micro"], done.test["json_valid_rate"]
        console.print(
            f"{done.eval_set}: f1_micro {export_f1:.4f} from {scored}, {merged_f1:.4f} merged"
            f" ({done.merged_source}), delta {export_f1 - merged_f1:+.4f}; json_valid {valid:.3f}",
            markup=False,
        )
    if adapter:
        console.print(
            "not scored: only llama.cpp's runtime applies a GGUF adapter (llama-server -m BASE.gguf --lora FILE)"
        )
    console.print(
        f"recorded on {done.name} v{done.version} as {exporting.EXPORT_TAG}.{done.form}.{quant}", markup=False
    )


@app.command()
def pick(
    pages: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Serving-forms pages' figures, written by bench/serving_forms.py: one per registered version (the"
            " top trials) to pick among them all. Default results/serving-forms-cpu.json."
        ),
    ] = None,
    price_per_hour: Annotated[float, typer.Option(help="What the machine costs an hour.")] = 0.10,
    utilisation: Annotated[float, typer.Option(help="The share of paid hours it is busy, in (0, 1].")] = 1.0,
    p95_target: Annotated[
        float | None, typer.Option(help="Latency target, seconds: cost at the busiest load whose p95 meets it.")
    ] = None,
    api_price_in: Annotated[float | None, typer.Option(help="An API's price per 1M input tokens.")] = None,
    api_price_out: Annotated[float | None, typer.Option(help="An API's price per 1M output tokens.")] = None,
    max_p95: Annotated[float | None, typer.Option(help="Afford at most this p95 latency, seconds.")] = None,
    max_size_mb: Annotated[float | None, typer.Option(help="Afford at most this size on disk, MB.")] = None,
    max_cost_per_1000: Annotated[float | None, typer.Option(help="Afford at most this per 1,000 documents.")] = None,
) -> None:
    """The best serving form (f1_micro) that meets what you can afford, costed at your prices from measured pages."""
    from harness import costs

    model, forms = costs.read_forms_pages(pages or [Path("results/serving-forms-cpu.json")])
    prices = costs.Prices(price_per_hour, utilisation, api_price_in, api_price_out)
    constraint = costs.Constraint(max_p95, max_size_mb, max_cost_per_1000)
    rows = [costs.price_form(form, prices, p95_target) for form in forms]
    table = Table(title=f"{model}: serving forms at {price_per_hour} an hour, busy {utilisation:.0%}")
    for column in ("form", "f1_micro", "size MB", "p95 s", "per 1,000 docs", "per 1M in", "per 1M out", "vs API"):
        table.add_column(column, justify="right")
    for row in rows:
        cost = row["cost"] or {}
        ratio = cost.get("cheaper_than_api")
        table.add_row(
            row["form"], f"{row['f1_micro']:.4f}", f"{row['size_mb']:.0f}",
            "misses the target" if row["p95_seconds"] is None else f"{row['p95_seconds']:.2f}",
            *(f"{cost[k]:.4f}" if k in cost else "" for k in ("per_1000_documents", "per_million_input",
                                                              "per_million_output")),
            "" if ratio is None else f"{ratio:.1f}x cheaper",
        )  # fmt: skip
    console.print(table)
    chosen = costs.pick(rows, constraint)
    for row in rows:
        missed = constraint.misses(row)
        if missed:
            console.print(f"{row['form']} misses it: {'; '.join(missed)}", markup=False)
    if chosen is None:
        console.print("no form meets the constraint", markup=False)
        raise typer.Exit(1)
    console.print(f"pick: {chosen['form']} (f1_micro {chosen['f1_micro']:.4f}, {chosen['size_mb']:.0f} MB)")
