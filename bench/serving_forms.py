"""Every serving form of one registered version, side by side: quality, size, memory, speed and cost, on one page.

    .venv/bin/python bench/serving_forms.py [--task legal] [--version N | --alias champion]
        [--forms merged lora gguf-lora gguf-f16 gguf-q8_0 gguf-q4_k_m gguf-q4_0 w4a16-gptq] [--examples 200]
        [--price-per-hour 0.10] [--utilisation 1.0] [--p95-target 30] [--api-price-in 2.5 --api-price-out 10]
        [--max-p95 S] [--max-size-mb MB] [--max-cost-per-1000 X] [--out results/serving-forms-cpu]

The forms a team deploys after merging (docs/serving.md):
- `merged`: the merged 16-bit model on vLLM (`harness serve`);
- `lora`: the base model with the adapter on top, on vLLM (`harness serve --lora`);
- `gguf-lora`: the same on llama.cpp: the base in f16 GGUF and the adapter's GGUF (`harness export --adapter`);
- `gguf-<quant>`: the merged model exported to GGUF (`harness export`, written here when missing) on llama.cpp's
  own OpenAI-compatible server (`make llama-server` builds it);
- `w4a16-gptq`, `w4a16-awq`: the merged model's weights in 4 bits, calibrated by llm-compressor (`harness export
  --format gptq|awq`, written here when missing), on vLLM's int4 kernels. AWQ is not in the default list: on a
  2-core CPU its calibration of the embedded model takes about 35 minutes (GPTQ: 3.5).
Each form is started alone and sent the same stored test prompts: all of them 16 at a time (scored: f1_micro, and
the load at concurrency 16), the first 16 one at a time (concurrency 1), and all of them again asking for one
token (the prefill rate, which splits the hour between input and output tokens; harness/costs.py). Its server's
peak memory is its process tree's RSS, polled. Writes `<out>.json`, `<out>.md` and `<out>-pareto.png`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from harness import costs, machine, registry, serving, tables, tracking
from harness.config import load_task
from harness.costs import Constraint, Load, Prices
from harness.export import W4A16, convert_to_gguf, default_out, export_version
from harness.model_loading import supports_bf16
from harness.predictions import score_answers
from harness.promotion import stored_test_metrics
from harness.task_data import load_split

FORMS = ("merged", "lora", "gguf-lora", "gguf-f16", "gguf-q8_0", "gguf-q4_k_m", "gguf-q4_0", "w4a16-gptq", "w4a16-awq")
DEFAULT_FORMS = tuple(form for form in FORMS if form != "w4a16-awq")
SERVER_OF = {
    "merged": "vLLM",
    "lora": "vLLM --lora",
    "gguf-lora": "llama.cpp --lora",
    "w4a16-gptq": "vLLM (int4 kernels)",
    "w4a16-awq": "vLLM (int4 kernels)",
}


class PeakMemory:
    """The highest RSS of a process and its children, sampled every 0.2 s while in use."""

    def __init__(self, pid: int) -> None:
        self.process, self.peak_bytes, self._stop = psutil.Process(pid), 0, threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _poll(self) -> None:
        while not self._stop.wait(0.2):
            try:
                tree = [self.process, *self.process.children(recursive=True)]
                self.peak_bytes = max(self.peak_bytes, sum(p.memory_info().rss for p in tree if p.is_running()))
            except psutil.Error:
                continue


def directory_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def start_form(task: Any, name: str, number: int, form: str, port: int, log_path: Path) -> tuple[Any, int]:
    """The form's server, started, and its size on disk in bytes."""
    options = serving.ServerOptions(port=port, dtype="bfloat16" if supports_bf16() else "float32")
    if form == "merged":
        model_dir = registry.materialise_version(name, number)
        return serving.start_server(model_dir, name, options, log_path=log_path), directory_bytes(model_dir)
    if form == "lora":
        adapter_dir, base_dir = registry.materialise_adapter(name, number), registry.materialise_lora_base(name, number)
        server = serving.start_server(base_dir, name, options, log_path=log_path, adapter_dir=adapter_dir)
        return server, directory_bytes(base_dir) + directory_bytes(adapter_dir)
    if form.startswith("w4a16-"):
        method = form.removeprefix("w4a16-")
        path = default_out(name, number, format=method, quant=W4A16)
        if not path.exists():
            export_version(task, version=number, format=method, quant=W4A16, out=path, check=False)
        options = serving.ServerOptions(port=port, dtype=serving.int4_weights_dtype())
        return serving.start_server(path, name, options, log_path=log_path), directory_bytes(path)
    # Measured cold, as vLLM's calls are (each salted apart): llama.cpp's prompt cache would answer the prefill run
    # from the concurrency-16 run's prompts. vLLM still shares the instruction within a call: llama.cpp's input
    # figures are the more conservative.
    if form == "gguf-lora":  # the base the adapter was trained on, in f16, and the adapter on top
        base = Path("exports") / f"{name}-v{number}-base-f16.gguf"
        if not base.exists():
            convert_to_gguf(registry.materialise_lora_base(name, number), base, quant="f16")
        adapter = default_out(name, number, format="gguf", quant="f16", adapter=True)
        if not adapter.exists():
            export_version(task, version=number, quant="f16", adapter=True, out=adapter, check=False)
        server = serving.start_llama_server(base, name, options, log_path=log_path, prompt_cache=False, lora=adapter)
        return server, base.stat().st_size + adapter.stat().st_size
    quant = form.removeprefix("gguf-")
    path = default_out(name, number, format="gguf", quant=quant)
    if not path.exists():
        export_version(task, version=number, quant=quant, out=path, check=False)
    server = serving.start_llama_server(path, name, options, log_path=log_path, prompt_cache=False)
    return server, path.stat().st_size


def as_load(run: serving.ServedRun, concurrency: int) -> Load:
    return Load(
        concurrency=concurrency,
        documents=len(run.outputs),
        seconds=run.seconds,
        input_tokens=run.prompt_tokens,
        output_tokens=run.completion_tokens,
        p50_seconds=statistics.median(run.latencies),
        p95_seconds=run.latency(0.95),
    )


def measure_form(task: Any, name: str, number: int, form: str, examples: list[Any], max_tokens: int, port: int):
    log_path = Path(tempfile.mkdtemp(prefix="harness-forms-")) / f"{form}.log"
    started = time.perf_counter()
    server, size_bytes = start_form(task, name, number, form, port, log_path)
    startup = time.perf_counter() - started
    try:
        openai = serving.client(server, None)
        serving.ask(openai, name, task, examples[:2], max_tokens=max_tokens, concurrency=2)  # warm-up, not counted
        with PeakMemory(server.process.pid) as memory:
            concurrent = serving.ask(openai, name, task, examples, max_tokens=max_tokens, concurrency=16)
            single = serving.ask(openai, name, task, examples[:16], max_tokens=max_tokens, concurrency=1)
            prefill = serving.ask(openai, name, task, examples, max_tokens=1, concurrency=16)
    finally:
        serving.stop_server(server)
    metrics = dict(score_answers(task, examples, concurrent.outputs).metrics)
    print(f"{form}: f1_micro {metrics['f1_micro']:.4f}, {concurrent.tokens_per_second:.1f} tokens/s at 16", flush=True)
    return {
        "form": form,
        "server": SERVER_OF.get(form, "llama.cpp server"),
        "size_mb": round(size_bytes / 1e6, 1),
        "peak_memory_mb": round(memory.peak_bytes / 1e6),
        "startup_seconds": round(startup, 1),
        "f1_micro": metrics["f1_micro"],
        "json_valid_rate": metrics["json_valid_rate"],
        "loads": {str(load.concurrency): load.__dict__ for load in (as_load(single, 1), as_load(concurrent, 16))},
        "prefill_tokens_per_second": round(prefill.prompt_tokens / prefill.seconds, 1),
    }


def pareto_plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axes_of = (
        ("size_mb", "size on disk (MB)"),
        ("p95_seconds", "p95 latency (s)"),
        ("cost_per_1000", "cost / 1,000 docs"),
    )
    figure, axes = plt.subplots(1, 3, figsize=(13, 4))
    for axis, (key, label) in zip(axes, axes_of, strict=True):
        shown = [r for r in rows if r.get(key) is not None]
        front = costs.pareto_front(shown, lambda r, key=key: r[key])
        for row in shown:
            axis.scatter(row[key], row["f1_micro"], color="tab:blue" if row in front else "tab:gray")
            axis.annotate(
                row["form"], (row[key], row["f1_micro"]), fontsize=8, xytext=(4, 4), textcoords="offset points"
            )
        axis.plot([r[key] for r in front], [r["f1_micro"] for r in front], color="tab:blue", linewidth=1)
        axis.set_xlabel(label)
        axis.set_ylabel("f1_micro")
    figure.suptitle("Serving forms: the Pareto front (blue) of quality against size, latency and cost")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_page(figures: dict[str, Any], out: Path) -> None:
    rows, prices = figures["forms"], figures["prices"]
    lines = [
        f"# Serving forms of {figures['model']}",
        "",
        f"Written {figures['written']} by `{figures['command']}`. Machine: {figures['machine_line']}.",
        f"Stored test set `{figures['eval_set']}` ({figures['examples']} documents); the merged model offline:"
        f" f1_micro {figures['merged_offline_f1_micro']:.4f}.",
        "",
        "## Quality, size, memory and speed",
        "",
    ]
    header = ["form", "server", "f1_micro", "vs offline", "JSON valid", "size (MB)", "peak RSS (MB)", "start (s)"]
    header += ["tokens/s @1", "p50 / p95 @1 (s)", "tokens/s @16", "p50 / p95 @16 (s)", "prefill tokens/s"]
    table = []
    for r in rows:
        one, sixteen = r["loads"]["1"], r["loads"]["16"]
        table.append(
            [r["form"], r["server"], tables.figure(r["f1_micro"], 4),
             f"{r['f1_micro'] - figures['merged_offline_f1_micro']:+.4f}", tables.figure(r["json_valid_rate"]),
             f"{r['size_mb']:.1f}", f"{r['peak_memory_mb']}", f"{r['startup_seconds']:.0f}",
             f"{one['output_tokens'] / one['seconds']:.1f}", f"{one['p50_seconds']:.2f} / {one['p95_seconds']:.2f}",
             f"{sixteen['output_tokens'] / sixteen['seconds']:.1f}",
             f"{sixteen['p50_seconds']:.2f} / {sixteen['p95_seconds']:.2f}", f"{r['prefill_tokens_per_second']:.0f}"]
        )  # fmt: skip
    lines += tables.markdown_table(header, table)
    target = "no latency target" if prices["p95_target"] is None else f"p95 within {prices['p95_target']} s"
    api = (
        f", beside an API at {prices['api_in']} / {prices['api_out']} per 1M input / output tokens"
        if prices["api_in"] is not None
        else ""
    )
    lines += [
        "",
        "## Cost",
        "",
        f"At {prices['per_hour']} an hour, busy {prices['utilisation']:.0%} of it, {target}{api}. Each form's figures"
        " come from its busiest load meeting the target; input and output split the hour by the measured prefill"
        " rate (harness/costs.py), so `input x per 1M in + output x per 1M out` is the document's cost.",
        "",
    ]
    header = ["form", "load", "per 1,000 documents", "per 1M input", "per 1M output", "API per 1,000", "API / this"]
    table = []
    for r in rows:
        c = r["cost"]
        if c is None:
            table.append([r["form"], "misses the target", "", "", "", "", ""])
            continue
        table.append(
            [r["form"], f"concurrency {c['concurrency']}", f"{c['per_1000_documents']:.4f}",
             f"{c['per_million_input']:.4f}", f"{c['per_million_output']:.4f}",
             "" if c["api_per_1000_documents"] is None else f"{c['api_per_1000_documents']:.4f}",
             "" if c["cheaper_than_api"] is None else f"{c['cheaper_than_api']:.1f}x"]
        )  # fmt: skip
    lines += tables.markdown_table(header, table)
    pick, constraint = figures["pick"], figures["constraint"]
    stated = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in constraint.items() if v is not None) or "none"
    lines += ["", "## The pick", "", f"Constraint: {stated}."]
    if pick is None:
        lines += ["No form meets it."]
    else:
        lines += [f"Best f1_micro meeting it: **{pick['form']}** ({pick['f1_micro']:.4f}, {pick['size_mb']:.0f} MB)."]
    for row in rows:
        if row["misses"]:
            lines += [f"- {row['form']} misses it: {'; '.join(row['misses'])}"]
    lines += ["", f"![Pareto front]({out.name}-pareto.png)", ""]
    out.with_suffix(".md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="legal")
    parser.add_argument("--version", type=int)
    parser.add_argument("--alias", default="champion")
    parser.add_argument("--forms", nargs="+", default=list(DEFAULT_FORMS), choices=FORMS)
    parser.add_argument("--examples", type=int, default=200)
    parser.add_argument("--port", type=int, default=8811)
    parser.add_argument("--price-per-hour", type=float, default=0.10)
    parser.add_argument("--utilisation", type=float, default=1.0)
    parser.add_argument("--p95-target", type=float)
    parser.add_argument("--api-price-in", type=float)
    parser.add_argument("--api-price-out", type=float)
    parser.add_argument("--max-p95", type=float)
    parser.add_argument("--max-size-mb", type=float)
    parser.add_argument("--max-cost-per-1000", type=float)
    parser.add_argument("--out", type=Path, default=Path("results/serving-forms-cpu"))
    args = parser.parse_args()

    prices = Prices(args.price_per_hour, args.utilisation, args.api_price_in, args.api_price_out)
    constraint = Constraint(args.max_p95, args.max_size_mb, args.max_cost_per_1000)
    tracking.configure()  # the project's store (<mlruns>/mlflow.db), where `harness register` put the version
    task = load_task(args.task)
    name = task.registered_name
    found = registry.find_version(name, alias=None if args.version else args.alias, version=args.version)
    number = int(found.version)
    max_tokens = registry.max_new_tokens_for(task, found.tags)
    examples = load_split(task, "test")[: args.examples]
    merged, _ = stored_test_metrics(task, name, number, max_tokens)
    rows = [measure_form(task, name, number, form, examples, max_tokens, args.port) for form in args.forms]
    rows = [costs.price_form(r, prices, args.p95_target) for r in rows]
    for row in rows:
        row["misses"] = constraint.misses(row)
    pick = costs.pick(rows, constraint)
    described = machine.describe()
    figures = {
        "model": f"{name} v{number}",
        "command": "bench/serving_forms.py "
        + " ".join(
            f"--{k.replace('_', '-')} {' '.join(v) if isinstance(v, list) else v}"
            for k, v in vars(args).items()
            if v is not None and k not in ("out", "port") and not (k == "alias" and args.version)
        ),
        "written": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": described,
        "machine_line": f"{described['cpu']} {described.get('cpu_generation', '')}, {described['cores']} cores,"
        f" avx512_bf16 {described['avx512_bf16']}, torch {described['torch']}",
        "eval_set": task.data.eval_sets[0].name,
        "examples": len(examples),
        "max_tokens": max_tokens,
        "merged_offline_f1_micro": merged["f1_micro"],
        "prices": {
            "per_hour": prices.per_hour,
            "utilisation": prices.utilisation,
            "p95_target": args.p95_target,
            "api_in": prices.api_in,
            "api_out": prices.api_out,
        },
        "constraint": constraint.__dict__,
        "forms": rows,
        "pick": pick and {"form": pick["form"], "f1_micro": pick["f1_micro"], "size_mb": pick["size_mb"]},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(figures, indent=1))
    pareto_plot(rows, args.out.parent / f"{args.out.name}-pareto.png")
    write_page(figures, args.out)
    print(args.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
