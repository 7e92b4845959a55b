"""The Typer app, the options every command shares, where output goes, and the entry point that turns a user's
error into one line and exit 2.

Heavy libraries (torch, transformers) are imported inside the commands that need them, so `harness --help`
answers at once.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Annotated, Any

import typer
from rich.console import Console

from harness.errors import HarnessError

app = typer.Typer(
    help="Find the best LoRA / QLoRA fine-tuning recipe for a structured-extraction task, and ship it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _console(*, stderr: bool) -> Console:
    """Output piped into a CI log or a file is not cut to Rich's 80 columns: lines are never broken mid-sentence (a
    terminal still wraps them at its edge) and tables get 160 columns, unless COLUMNS says otherwise."""
    made = Console(stderr=stderr, soft_wrap=True)
    if not made.is_terminal and "COLUMNS" not in os.environ:
        made.width = 160
    return made


console = _console(stderr=False)
errors = _console(stderr=True)

TaskArgument = Annotated[str, typer.Argument(help="Task name (a file in search_spaces/) or a path to a task YAML.")]
# From the environment too: a Kubernetes Secret or a Slurm script passes the database password without a command line.
StorageOption = Annotated[
    str | None,
    typer.Option(
        envvar="HARNESS_STORAGE",
        help="Optuna storage shared by a study's workers: postgresql://USER:PASS@HOST/DB, or a journal file"
        " (default <mlruns>/optuna-journal.log).",
    ),
]
TrackingUriOption = Annotated[
    str | None,
    typer.Option(
        envvar="HARNESS_TRACKING_URI",
        help="MLflow tracking URI: http://HOST:PORT for a team's `harness server` (default: <mlruns>/mlflow.db).",
    ),
]
StudyOption = Annotated[
    str | None,
    typer.Option(help="Study name (default: TASK-PROFILE, or the task's most recent study when that does not exist)."),
]
SplitOption = Annotated[
    str, typer.Option(help="train, validation, test (the task's first stored eval set) or an eval set name.")
]
ProfileOption = Annotated[
    str,
    typer.Option(
        help="A profile of the task's YAML: smoke (tiny model, seconds), cpu (SmolLM2), gpu (Llama 3.1 8B), the"
        " lineup's gpu-1b, gpu-3b, gpu-70b, gpu-70b-40gb (`harness plan TASK --profile P`), or auto (gpu if CUDA)."
    ),
]
ModelOption = Annotated[str | None, typer.Option(help="Model spec overriding the profile's base model.")]


def print_json_line(metrics: dict[str, Any]) -> None:
    """The metrics as one JSON object, the last line a command prints (what scripts read)."""
    import json

    print(json.dumps({k: round(v, 6) if isinstance(v, float) else v for k, v in metrics.items()}))


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main() -> None:
    """Console-script entry point: user errors print one clear message and exit 2, never a stack trace."""
    # Preemption (Kubernetes, Slurm, `docker stop`) sends SIGTERM: it stops work exactly as Ctrl-C does (the
    # trial KILLED and retried, the study's run closed) instead of killing the process mid-write.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        app()
    except HarnessError as error:
        _print_error(str(error))
        sys.exit(2)
    except Exception as error:
        # A full disk, a locked or unreachable tracking store: one line with what to do. Anything else is a bug
        # and keeps its traceback.
        from harness.tracking import describe_failure

        described = describe_failure(error)
        if described is None:
            raise
        _print_error(described)
        sys.exit(2)


def _print_error(message: str) -> None:
    errors.print("error:", style="bold red", end=" ")
    errors.print(message, markup=False, highlight=False, soft_wrap=True)
