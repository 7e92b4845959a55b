"""Serving under load: `harness serve` held by 64 concurrent clients for 2 minutes, on loopback.

    .venv/bin/python bench/serving_load.py [--task legal] [--alias challenger] [--clients 64] [--seconds 120]

Starts the real `harness serve TASK --alias ALIAS --detach` (vLLM's OpenAI server on the registered version, with an
API key from HARNESS_API_KEY), then runs `--clients` client threads that each send stored test prompts (test-v1,
round robin, greedy, the profile's max_new_tokens; each pass over them with a prefix-cache salt of its own, so
a decision sent again is not answered from the cache) one after another until `--seconds` have passed: a bounded
loop, no request starts after the deadline and every request started is waited for. Counts errors (an exception
or a refused request) and dropped requests (no answer within the client timeout), and prints throughput
(requests and completion tokens per second over the whole run) and latency p50 / p95 / p99. Writes the figures
as JSON with `--out`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from openai import APITimeoutError, OpenAI

from harness import serving
from harness.config import load_task
from harness.machine import describe as machine_description
from harness.prompts import prompt_turns
from harness.registry import max_new_tokens_for
from harness.task_data import load_split

HARNESS = str(Path(sys.executable).parent / "harness")
CLIENT_TIMEOUT_SECONDS = 600  # a request with no answer by then is dropped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="legal")
    parser.add_argument("--alias", default="challenger")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    task = load_task(args.task)
    examples = load_split(task, "test")
    port, key = serving.free_port(), os.urandom(16).hex()
    environment = {**os.environ, "HARNESS_API_KEY": key}
    started = subprocess.run(
        [HARNESS, "serve", args.task, "--alias", args.alias, "--port", str(port), "--detach"],
        env=environment,
        capture_output=True,
        text=True,
    )
    if started.returncode:
        sys.exit(f"harness serve failed:\n{started.stderr[-3000:]}")
    print(" ".join(started.stdout.split("Try:")[0].split()), flush=True)
    pid = int(re.search(r"server pid (\d+)", started.stdout)[1])  # type: ignore[index]
    base_url = f"http://127.0.0.1:{port}/v1"
    served_name = task.registered_name
    from harness import tracking

    tracking.configure()
    version = tracking.model_version(served_name, alias=args.alias)
    max_tokens = max_new_tokens_for(task, version.tags if version else {})
    openai = OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=CLIENT_TIMEOUT_SECONDS)

    latencies: list[float] = []
    tokens, errors, dropped = [0], [], [0]
    lock, deadline = threading.Lock(), time.monotonic() + args.seconds
    counter, run_salt = iter(range(10**9)), os.urandom(8).hex()

    def client() -> None:
        while time.monotonic() < deadline:
            with lock:
                number = next(counter)
            example = examples[number % len(examples)]
            sent = time.perf_counter()
            try:
                response = openai.chat.completions.create(
                    model=served_name,
                    messages=prompt_turns(task, example.text),  # type: ignore[arg-type]
                    temperature=0.0,
                    max_tokens=max_tokens,
                    # Each pass over the stored prompts is cold: requests share the instruction's cached prefix
                    # as production traffic would, but a decision sent again is not answered from the cache.
                    extra_body={"cache_salt": f"{run_salt}-{number // len(examples)}"},
                )
            except APITimeoutError:
                with lock:
                    dropped[0] += 1
                continue
            except Exception as error:  # refused, reset, 5xx: an error either way
                with lock:
                    errors.append(f"{type(error).__name__}: {error}"[:200])
                continue
            with lock:
                latencies.append(time.perf_counter() - sent)
                tokens[0] += response.usage.completion_tokens if response.usage else 0

    began = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(args.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    stop(pid)

    ordered = sorted(latencies)

    def quantile(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")

    figures = {
        "model": f"models:/{served_name}@{args.alias}" + (f" (v{version.version})" if version else ""),
        "clients": args.clients,
        "sending_seconds": args.seconds,
        "wall_seconds": round(wall, 1),
        "requests_answered": len(latencies),
        "errors": len(errors),
        "dropped": dropped[0],
        "requests_per_second": round(len(latencies) / wall, 3),
        "completion_tokens_per_second": round(tokens[0] / wall, 1),
        "latency_p50_s": round(quantile(0.50), 2),
        "latency_p95_s": round(quantile(0.95), 2),
        "latency_p99_s": round(quantile(0.99), 2),
        "max_new_tokens": max_tokens,
        "machine": machine_description(),
    }
    print(json.dumps(figures, indent=2))
    if errors:
        print("first errors:", *errors[:5], sep="\n  ")
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    sys.exit(1 if errors or dropped[0] else 0)


def stop(pid: int) -> None:
    """Stop the detached server as `harness serve` would on Ctrl-C: SIGTERM, and wait for it to exit."""
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(1)
    os.kill(pid, signal.SIGKILL)


if __name__ == "__main__":
    main()
