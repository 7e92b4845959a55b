"""The house rules that keep the code readable: each outside library has exactly one owner module."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("harness", "evaluators")
# Library -> the one module allowed to import it. Modules that do not exist yet own nothing.
OWNERS = {
    "optuna": "harness/search.py",
    "mlflow": "harness/tracking.py",
    "trl": "harness/training.py",
    "peft": "harness/training.py",
    "vllm": "harness/serving.py",
    "openai": "harness/serving.py",
    "bitsandbytes": "harness/model_loading.py",
    "gguf": "harness/model_loading.py",
    "huggingface_hub": "harness/model_loading.py",
    "typer": "harness/cli.py",
}


def imported_top_level_names(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_each_outside_library_is_imported_by_its_owner_only():
    importers = defaultdict(set)
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for name in imported_top_level_names(path) & set(OWNERS):
                importers[name].add(str(path.relative_to(ROOT)))
    for library, modules in importers.items():
        assert modules == {OWNERS[library]}, f"{library} imported by {sorted(modules)}, owner {OWNERS[library]}"


def test_no_module_is_named_after_a_library_it_would_shadow():
    shadowing = {"optuna", "mlflow", "trl", "peft", "vllm", "evaluate", "transformers", "torch", "datasets"}
    for package in PACKAGES:
        assert not {p.stem for p in (ROOT / package).rglob("*.py")} & shadowing


def test_the_cli_imports_no_heavy_library_at_module_level():
    tree = ast.parse((ROOT / "harness" / "cli.py").read_text())
    top_level = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            top_level |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            top_level.add(node.module.split(".")[0])
    assert not top_level & {"torch", "transformers", "trl", "peft", "optuna", "mlflow", "vllm"}
