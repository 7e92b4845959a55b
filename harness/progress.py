"""What a person watches while harness works: a training's steps and an evaluation's answers with the time left,
and a search's live view (or, in a log, one line each time something changed). The commands pass in where to
print; the work reports through the plain callbacks these return, and never prints itself."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table


def minutes(seconds: float) -> str:
    """A duration as a person reads it: `45 s`, `12 min`, `2.5 h`."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class ConsoleProgress:
    """What a long command tells a person as it goes: a training reporter (`harness.training.TrainingReporter`: a
    line per logged step with the loss and the time left) and an answer reporter
    (`harness.generation.AnswerReporter`: each stage, and the answers generated with the time left)."""

    def __init__(self, out: Console, label: str = "training") -> None:
        self.out = out
        self.label = label
        self.total_steps = 0
        self.started = 0.0
        self.answers_started = 0.0

    def on_train_begin(self, total_steps: int) -> None:
        self.total_steps, self.started = total_steps, time.monotonic()
        self.out.print(f"{self.label}: {total_steps} optimizer steps", markup=False)

    def on_log(self, step: int, metrics: dict[str, float]) -> None:
        per_step = (time.monotonic() - self.started) / max(step, 1)
        self.out.print(
            f"{self.label}: step {step}/{self.total_steps}, loss {metrics.get('loss', float('nan')):.4f},"
            f" {per_step:.1f} s a step, about {minutes(per_step * (self.total_steps - step))} of training left",
            markup=False,
        )

    def on_evaluate(self, step: int, validation_loss: float) -> None:
        pass

    def should_stop(self, step: int) -> bool:
        return False

    def on_train_end(self) -> None:
        self.out.print(f"{self.label}: generating and scoring the validation answers", markup=False)

    def stage(self, text: str) -> None:
        self.out.print(text, markup=False, highlight=False)

    def answers(self, done: int, total: int) -> None:
        if done == 0:  # generation starts now (the model is loaded)
            self.answers_started = time.monotonic()
            return
        # The first batches hold the longest prompts (batches go by length): the time left errs on the long side.
        per_answer = (time.monotonic() - self.answers_started) / done
        left = "" if done >= total else f", about {minutes(per_answer * (total - done))} left"
        self.out.print(f"  {done}/{total} answers, {per_answer:.1f} s an answer{left}", markup=False)


def _running(progress: Any) -> str:
    if progress.current_trial is None:
        return ""
    return f"trial {progress.current_trial}, step {progress.current_step} of {progress.current_total_steps}"


def _best(progress: Any) -> str:
    return "-" if progress.best_value is None else f"{progress.best_value:.4f} (trial {progress.best_trial})"


def search_table(task_name: str, progress: Any) -> Table:
    """The live view of a search: trial i of N, what runs now, the best so far, elapsed and time left."""
    elapsed = time.monotonic() - progress.started
    table = Table(show_header=False, title=f"search {task_name}")
    table.add_row("estimate", progress.estimate or "-")
    table.add_row("trials finished", f"{progress.finished} of {progress.total}")
    table.add_row("running", _running(progress) or "-")
    table.add_row("params", ", ".join(f"{k}={v}" for k, v in progress.current_params.items()) or "-")
    table.add_row("best so far", _best(progress))
    left = "-" if progress.seconds_left is None else minutes(progress.seconds_left)
    table.add_row("elapsed / left", f"{minutes(elapsed)} / {left} (refit included; corrected as trials finish)")
    if progress.last_failure:
        table.add_row("last failure", progress.last_failure)
    return table


@contextmanager
def live_search_view(out: Console, task_name: str) -> Iterator[Callable[[Any], None]]:
    """A search's progress callback that redraws the live view in place, for a terminal."""
    with Live(console=out, refresh_per_second=2, transient=False) as live:
        yield lambda progress: live.update(search_table(task_name, progress))


def search_log_lines(out: Console, worker_index: int | None) -> Callable[[Any], None]:
    """A search's progress callback for a log (a live view redrawn into a file shows nothing until the end): the
    estimate once, then a line whenever the finished count, the running trial, the best or the time left changed."""
    label = "" if worker_index is None else f"worker {worker_index}: "
    printed_estimate = False
    last_line = ""

    def log_line(progress: Any) -> None:
        nonlocal printed_estimate, last_line
        if progress.estimate and not printed_estimate:
            out.print(f"{label}estimate on this machine: {progress.estimate}", markup=False)
            printed_estimate = True
            return
        now = f", running {_running(progress)}" if _running(progress) else ""
        left = "" if progress.seconds_left is None else f", about {minutes(progress.seconds_left)} left"
        line = f"{label}finished {progress.finished}/{progress.total}{now}, best {_best(progress)}{left}"
        line += f", last failure: {progress.last_failure}" if progress.last_failure else ""
        if line != last_line:  # progress reported twice with nothing new (a trial's start, its step 0)
            out.print(line, markup=False)
            last_line = line

    return log_line
