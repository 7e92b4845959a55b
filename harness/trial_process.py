"""A trial in a process of its own: how a search runs each of its trials and its refit.

Why: every trial then starts from a fresh process's memory, not what the earlier ones left (a fragmented heap,
libraries' caches), and a trial that takes its process down (the OOM killer, a crash in a native kernel) fails
that trial, not the search. The processes fork from a server that imported the training stack once, so a trial
does not pay for the imports; where there is a GPU they start as fresh interpreters (a CUDA context does not
survive a fork). The trial talks to the search over a pipe: the reporter's calls, its MLflow run id, its result.
The figures behind this choice are in docs/benchmarks.md (a trial in its own process against the search's).
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import traceback
import uuid
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Literal, NoReturn

# model_loading before training: it quiets bitsandbytes' import-time warning, and training's PEFT imports it.
from harness import machine, model_loading, tracking, training  # noqa: F401
from harness.config import TaskConfig, TrialConfig
from harness.errors import HarnessError, TrialStopped
from harness.trial import TrialResult, run_trial

tracking.import_first_run_modules()  # what MLflow imports at a process's first run: the fork server has it too
ATTEMPT_TAG = "harness.attempt"  # one per process started: finds its run whatever happens to the process
STOP_GRACE_SECONDS = 60  # for a stopped trial to end its MLflow run as KILLED before it is killed outright


class TrialFailed(Exception):
    """The trial failed in its own process: the message is the reason as the trial's MLflow run records it."""


def run_trial_in_own_process(
    task: TaskConfig,
    config: TrialConfig,
    *,
    output_dir: Path,
    reporter: training.TrainingReporter | None = None,
    on_run_started: Callable[[str], Any] | None = None,
    start_method: Literal["forkserver", "spawn"] | None = None,
    **options: Any,
) -> TrialResult:
    """`harness.trial.run_trial` (same arguments) in a process of its own. Raises what run_trial raises in the
    search's terms: TrialStopped (pruned), HarnessError (the user's to fix), TrialFailed (anything else, including
    the process dying); Ctrl-C or SIGTERM here stops the trial's process, which marks its run KILLED.
    `start_method`: "forkserver" or "spawn"; by default spawn where there is a GPU, else the fork server."""
    reporter = reporter or training.SilentReporter()
    # Its run carries a tag known here before the process starts: a process killed between creating its run and
    # telling us its id leaves a run that is still found, failed and reported.
    attempt = uuid.uuid4().hex
    options = {**options, "tags": {**(options.get("tags") or {}), ATTEMPT_TAG: attempt}}
    method = start_method or ("spawn" if machine.has_cuda() else "forkserver")
    context = multiprocessing.get_context("spawn") if method == "spawn" else multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])  # the server imports this module, and with it the training stack
    ours, theirs = context.Pipe()
    gpus = machine.visible_gpus() if machine.has_cuda() else []
    environment = machine.trial_gpu_environment(dict(os.environ), gpus, config.gpus)
    process = context.Process(
        target=_trial_process,
        args=(theirs, task, config, output_dir, options, tracking.tracking_uri(), environment, os.getcwd()),
        name=f"harness-trial-{options.get('run_name') or config.profile}",
    )
    with _environment_while_starting(environment):  # a spawned interpreter reads CUDA_VISIBLE_DEVICES at birth
        process.start()
    theirs.close()
    try:
        kind, payload = _follow(ours, reporter, on_run_started)
    except BaseException:
        if process.is_alive():
            process.terminate()  # interrupted, or the search failed: the trial ends its run as KILLED
        raise
    finally:
        _wait_for_end(process)
        ours.close()
    if kind == "done":
        metrics, run_id, adapter_dir = payload
        return TrialResult(metrics=metrics, run_id=run_id, adapter_dir=adapter_dir)
    if kind == "stopped":
        raise TrialStopped(payload)
    if kind == "harness_error":
        raise HarnessError(payload)
    if kind == "died":
        reason = f"the trial's process {_describe_exit(process.exitcode)}"
        run_id = payload or tracking.find_run_by_tag(task.task.name, ATTEMPT_TAG, attempt)
        if run_id:  # its run, left RUNNING
            if not payload and on_run_started:
                on_run_started(run_id)
            tracking.fail_run(run_id, reason)
        raise TrialFailed(reason)
    raise TrialFailed(payload)


def run_trial_on_its_gpus(task: TaskConfig, config: TrialConfig, **options: Any) -> TrialResult:
    """A command's one trial (`harness train`): in this process, unless it sees more GPUs than the trial's profile
    uses (gpus_per_trial); then in a fresh interpreter that sees only the first of them, as a search's trial does.
    Not here: with one model on one of several visible GPUs, Trainer wraps it in nn.DataParallel, which TRL refuses;
    with several, the model would be split over all of them. A failure there is the user's to read, not a bug's."""
    if not (machine.has_cuda() and len(machine.visible_gpus()) > config.gpus):
        return run_trial(task, config, **options)
    try:
        return run_trial_in_own_process(task, config, start_method="spawn", **options)
    except TrialFailed as failed:
        raise HarnessError(f"the trial failed: {failed}") from None


@contextlib.contextmanager
def _environment_while_starting(environment: dict[str, str]) -> Iterator[None]:
    before = dict(os.environ)
    os.environ.clear()
    os.environ.update(environment)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(before)


def _follow(
    connection: Connection, reporter: training.TrainingReporter, on_run_started: Callable[[str], Any] | None
) -> tuple[str, Any]:
    """Serve the trial's process until its last word: ("done", result), ("stopped" | "harness_error" | "failed",
    message), or ("died", its run's id or None) when it ended without one."""
    run_id = None
    while True:
        try:
            kind, payload = connection.recv()
        except EOFError:
            return "died", run_id
        if kind == "report":
            method, arguments = payload
            answer = getattr(reporter, method)(*arguments)
            if method == "should_stop":
                connection.send(bool(answer))
        elif kind == "run_started":
            run_id = payload
            if on_run_started:
                on_run_started(payload)
        else:
            return kind, payload


def _trial_process(
    connection: Connection,
    task: TaskConfig,
    config: TrialConfig,
    output_dir: Path,
    options: dict[str, Any],
    tracking_uri: str,
    environment: dict[str, str],
    cwd: str,
) -> None:
    """The trial's process: the search's environment, directory and tracking store (the server that forked it
    kept those of the moment it started), then the trial, told back over `connection`."""
    _die_with_parent()
    os.environ.clear()
    os.environ.update(environment)
    os.chdir(cwd)
    # Ctrl-C in a terminal reaches every process in it: the search stops this one (SIGTERM) once, so that a
    # second interrupt cannot cut short the ending of the trial's run.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _interrupt_once)
    try:
        tracking.configure(tracking_uri)
        result = run_trial(
            task,
            config,
            output_dir=output_dir,
            reporter=_ReporterOverPipe(connection),
            on_run_started=lambda run_id: _tell(connection, ("run_started", run_id)),
            **options,
        )
    except KeyboardInterrupt:
        return  # stopped by the search, which is being interrupted itself: its run is ended as KILLED
    except TrialStopped as stopped:
        _tell(connection, ("stopped", str(stopped)))
    except HarnessError as error:
        _tell(connection, ("harness_error", str(error)))
    except Exception as error:
        reason = tracking.describe_failure(error)
        if reason is None:
            traceback.print_exc()  # a bug: its traceback, in the search's log
            reason = f"{type(error).__name__}: {error}"
        _tell(connection, ("failed", reason))
    else:
        _tell(connection, ("done", (result.metrics, result.run_id, result.adapter_dir)))


def _tell(connection: Connection, message: tuple[str, Any]) -> None:
    try:
        connection.send(message)
    except OSError:  # a broken pipe: the search is gone
        _vanish()


def _vanish() -> NoReturn:
    """The search that started this trial is gone (killed): end at once, as if killed with it. The trial's run is
    left RUNNING, for the next search on the study to fail it with the reason (its worker died) and retry it."""
    os._exit(1)


class _ReporterOverPipe:
    """The trial's reporter, in the trial's process: passes each call to the search's reporter and, for
    `should_stop`, waits for its answer."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def _call(self, method: str, *arguments: Any) -> None:
        _tell(self.connection, ("report", (method, arguments)))

    def on_train_begin(self, total_steps: int) -> None:
        self._call("on_train_begin", total_steps)

    def on_log(self, step: int, metrics: dict[str, float]) -> None:
        self._call("on_log", step, metrics)

    def on_evaluate(self, step: int, validation_loss: float) -> None:
        self._call("on_evaluate", step, validation_loss)

    def should_stop(self, step: int) -> bool:
        self._call("should_stop", step)
        try:
            return bool(self.connection.recv())
        except (EOFError, OSError):
            _vanish()

    def on_train_end(self) -> None:
        self._call("on_train_end")


def _wait_for_end(process: multiprocessing.process.BaseProcess) -> None:
    """Wait for the trial's process to end (it has said its last word, or was asked to stop); kill it if it
    does not within the grace period."""
    process.join(STOP_GRACE_SECONDS)
    if process.is_alive():
        process.kill()
        process.join()


def _interrupt_once(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies


def _die_with_parent() -> None:
    """A trial whose search was killed (SIGKILL, the machine's OOM killer) must not train on unseen: when its
    parent ends (the search itself, or the fork server, which exits with the search), the kernel kills the trial
    (Linux; elsewhere a no-op)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:  # the parent was already gone before the line above
        os._exit(1)


def _describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        name = signal.Signals(-code).name
        hint = " (the system's out-of-memory killer sends SIGKILL)" if -code == signal.SIGKILL else ""
        return f"was killed by {name}{hint}"
    return f"exited with code {code} before reporting a result"
