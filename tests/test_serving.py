"""Serving a registered version with the real vLLM server (its own virtual environment), checked end to end."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from harness import registry, tracking
from harness.search import SearchOptions, run_search

HARNESS = str(Path(sys.executable).parent / "harness")
PORT = 8765


def get(url: str, key: str) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, {}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()


def stop(pid: int) -> None:
    os.kill(pid, signal.SIGTERM)
    for _ in range(60):
        if not alive(pid):
            return
        time.sleep(1)
    os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
def test_serve_check_matches_offline_and_the_server_requires_its_key(legal, tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_MLRUNS", str(tmp_path / "mlruns"))
    tracking.configure()
    run_search(legal, SearchOptions(trials=1, profile="smoke"))
    registry.register_trial(legal, study_name="legal-smoke", refit=False)
    assert registry.promote(legal).promoted

    result = subprocess.run(
        [
            HARNESS,
            "serve",
            "legal",
            "--check",
            "--detach",
            "--port",
            str(PORT),
            "--api-key",
            "sesame",
            "--max-model-len",
            "1024",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        # Wide enough that Rich does not wrap the lines this test reads.
        env={**os.environ, "HARNESS_MLRUNS": str(tmp_path / "mlruns"), "COLUMNS": "200"},
    )
    started = re.search(r"server pid (\d+)", result.stdout)
    assert started, result.stdout + result.stderr
    pid = int(started.group(1))
    try:
        assert result.returncode == 0, result.stdout + result.stderr
        assert "parity passes" in result.stdout
        assert re.search(r"concurrency 16: \d+ tokens/s, latency p50", result.stdout)
        assert "http://127.0.0.1:8765/v1" in result.stdout  # bound to the loopback interface by default
        status, models = get(f"http://127.0.0.1:{PORT}/v1/models", "sesame")
        assert status == 200 and [m["id"] for m in models["data"]] == ["legal-extractor"]
        assert get(f"http://127.0.0.1:{PORT}/v1/models", "wrong")[0] == 401
    finally:
        stop(pid)
    assert not alive(pid)
