"""Server processes harness starts (vLLM, llama.cpp, the MLflow UI and tracking server): found, started with their
output in a log file, waited on until their `/health` answers, and stopped with everything they started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from harness import retries
from harness.errors import HarnessError


def llama_cpp_binary(name: str) -> Path:
    """One of llama.cpp's programs (`llama-server`, `llama-quantize`), built by `make llama-server` into the virtual
    environment, or where `HARNESS_LLAMA_SERVER` / `HARNESS_LLAMA_QUANTIZE` points."""
    variable = "HARNESS_" + name.upper().replace("-", "_")
    binary = Path(os.environ.get(variable) or Path(sys.prefix) / "bin" / name)
    if not binary.exists():
        raise HarnessError(
            f"no {name} at {binary}: run `make llama-server` (it builds llama.cpp's server and quantiser from the"
            " llama-cpp-python source release the GGUF converter comes from, once, into the virtual environment),"
            f" or set {variable} to a {name} binary"
        )
    return binary


def start_logged(command: list[str], log_path: Path, *, environment: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start `command` with stdout and stderr in `log_path`, in a session of its own: the terminal's Ctrl-C goes
    to harness, which stops the server (and the workers it forked, as one process group) itself."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=environment, start_new_session=True)


def wait_until_healthy(
    process: subprocess.Popen[bytes], health_url: str, *, name: str, log_path: Path, timeout_seconds: float
) -> None:
    """Return once `health_url` answers 200. A process that exits first, or does not answer in time (then it is
    stopped), is an error quoting the end of its log."""
    try:
        _wait(process, health_url, name=name, log_path=log_path, timeout_seconds=timeout_seconds)
    except BaseException:
        # Ctrl-C while a server starts (minutes, for vLLM): it runs in a session of its own, so the terminal's
        # SIGINT does not reach it; stopped here, or it would hold its port (and GPU) after harness exits.
        stop(process)
        raise


class _NotYetHealthy(Exception):
    """The server runs but does not answer its health check yet."""


def _wait(
    process: subprocess.Popen[bytes], health_url: str, *, name: str, log_path: Path, timeout_seconds: float
) -> None:
    try:
        for attempt in retries.attempts(retry_on=(_NotYetHealthy,), seconds=timeout_seconds):
            with attempt:
                _check_health(process, health_url, name=name, log_path=log_path)
    except _NotYetHealthy:
        raise HarnessError(
            f"the {name} did not answer {health_url} within {timeout_seconds:.0f} s; see {log_path}"
        ) from None


def _check_health(process: subprocess.Popen[bytes], health_url: str, *, name: str, log_path: Path) -> None:
    if process.poll() is not None:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
        raise HarnessError(
            f"the {name} exited with code {process.returncode} while starting; its log ({log_path}) ends:\n{tail}"
        )
    try:
        with urllib.request.urlopen(health_url, timeout=5) as response:
            if response.status == 200:
                return
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        pass
    raise _NotYetHealthy(health_url)


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a server started by `start_logged` and every process it started (its process group): SIGTERM, then
    SIGKILL after 30 s."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
