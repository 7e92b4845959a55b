"""The `harness` command line: each command parses its arguments, calls one function, and prints the result.

The commands live by workflow, a module each (docs/architecture.md); `app.py` holds what they share and the
entry point. Importing a module registers its commands, in the order `harness --help` lists them.
"""

# isort: off
from harness.cli import data, search, release, runs  # noqa: F401  (registers the commands, in this order)
from harness.cli.app import app, main

# isort: on

__all__ = ["app", "main"]
