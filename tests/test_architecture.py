"""The house rules that keep the code readable: each outside library has exactly one owner module."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.fast  # the fast tier: no process started, no training (make test-fast)

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("harness", "evaluators", "tasks")
# Library -> the one module (or package, a path ending in "/") allowed to import it.
OWNERS = {
    "optuna": "harness/search/",
    "sqlalchemy": "harness/search/",  # Optuna's database storages, and the claims table beside them
    "mlflow": "harness/tracking/",
    "trl": "harness/training.py",
    "peft": "harness/training.py",
    # serving.py starts vLLM's server as a process; the plugin is the file that server loads into itself.
    "vllm": "harness/vllm_plugins/",
    "openai": "harness/serving.py",
    "bitsandbytes": "harness/model_loading.py",
    "gguf": "harness/model_loading.py",
    "huggingface_hub": "harness/model_loading.py",
    "typer": "harness/cli.py",
    "jsonschema": "evaluators/field_types.py",
    "evaluate": "evaluators/field_f1/field_f1.py",
    # The model side: loading (and quantizing), training and generation are the modules that touch weights.
    "transformers": ("harness/model_loading.py", "harness/training.py", "harness/generation.py"),
    # ... and tensors; `machine.py` answers what the hardware can do (CUDA, bf16) for everyone else.
    "torch": (
        "harness/model_loading.py",
        "harness/training.py",
        "harness/generation.py",
        "harness/memory.py",
        "harness/estimates.py",
        "harness/machine.py",
    ),
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
        owners = OWNERS[library] if isinstance(OWNERS[library], tuple) else (OWNERS[library],)
        outside = {m for m in modules if not any(m.startswith(o) if o.endswith("/") else m == o for o in owners)}
        assert not outside, f"{library} imported by {sorted(outside)}, owners {owners}"


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


def test_the_generic_code_knows_no_task():
    """A task's knowledge lives in tasks/<name>/ and its YAML: the generic packages never name its fields."""
    legal_fields = yaml.safe_load((ROOT / "search_spaces" / "legal.yaml").read_text())["fields"]
    for package in ("harness", "evaluators"):
        for path in (ROOT / package).rglob("*.py"):
            text = path.read_text()
            # As a string or an identifier in code; "decision" as a plain word (a promotion decision) is no knowledge.
            named = sorted(
                n for n in legal_fields if re.search(rf"[\"']{n}[\"']" + (rf"|\b{n}\b" if "_" in n else ""), text)
            )
            assert not named, f"{path.relative_to(ROOT)} names the legal task's fields {named}"
