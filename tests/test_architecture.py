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
    # export.py runs llm-compressor's job in that library's own environment, where the job loads the model itself.
    "llmcompressor": "harness/llm_compressor_jobs/",
    "openai": "harness/serving.py",
    "bitsandbytes": "harness/model_loading.py",
    "gguf": "harness/export.py",  # GGUF files written and read back (models load from them through transformers)
    "huggingface_hub": "harness/model_loading.py",
    "typer": "harness/cli/",
    "tenacity": "harness/retries.py",
    "tabulate": "harness/tables.py",
    "jsonschema": "evaluators/field_types.py",
    "evaluate": "evaluators/field_f1/field_f1.py",
    # Russian grammar for legal-ru's generator: the one module that writes Russian.
    "pymorphy3": "tasks/legal_ru/russian.py",
    "num2words": "tasks/legal_ru/russian.py",
    # The model side: loading (and quantizing), training and generation are the modules that touch weights.
    "transformers": (
        "harness/model_loading.py",
        "harness/training.py",
        "harness/generation.py",
        "harness/llm_compressor_jobs/",
    ),
    # ... and tensors; `machine.py` answers what the hardware can do (CUDA, bf16) for everyone else.
    "torch": (
        "harness/model_loading.py",
        "harness/training.py",
        "harness/generation.py",
        "harness/memory.py",
        "harness/estimates.py",
        "harness/machine.py",
        "harness/llm_compressor_jobs/",
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
    for path in (ROOT / "harness" / "cli").glob("*.py"):
        top_level = set()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Import):
                top_level |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                top_level.add(node.module.split(".")[0])
                # harness's own modules count by what they import at their top level in turn
                if node.module.startswith("harness."):
                    top_level |= imported_top_level_names(_module_file(node.module))
        heavy = top_level & {"torch", "transformers", "trl", "peft", "optuna", "mlflow", "vllm"}
        assert not heavy, f"{path.relative_to(ROOT)} imports {sorted(heavy)} when `harness --help` runs"


def _module_file(module: str) -> Path:
    path = ROOT / module.replace(".", "/")
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def test_no_module_of_the_generic_packages_is_over_500_lines():
    """A module past one screenful of concepts is split along its seams (docs/architecture.md)."""
    for package in ("harness", "evaluators"):
        for path in (ROOT / package).rglob("*.py"):
            lines = len(path.read_text().splitlines())
            assert lines <= 500, f"{path.relative_to(ROOT)} has {lines} lines"


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


def test_the_generic_scorer_knows_no_language():
    """Legal forms, currencies and number words are the task's (its YAML's `normalization`): a task in another
    language brings its own, and the scorer holds none of any task's."""
    spellings: set[str] = set()
    for task_file in (ROOT / "search_spaces").rglob("*.yaml"):
        words = yaml.safe_load(task_file.read_text()).get("normalization", {})
        spellings |= {s for token, forms in words.get("synonyms", {}).items() for s in (token, *forms)}
        spellings |= set(words.get("currency", [])) | set(words.get("subunits", {})) | set(words.get("multipliers", {}))
    for path in (ROOT / "evaluators").rglob("*.py"):
        code = _code_without_docstrings_and_comments(path)
        assert not re.search(r"[а-яё]", code, re.IGNORECASE), f"{path.relative_to(ROOT)} holds Cyrillic words"
        named = sorted(s for s in spellings if len(s) > 2 and re.search(rf"[\"']{re.escape(s)}[\"' ]", code, re.I))
        assert not named, f"{path.relative_to(ROOT)} names a task's words {named}"


def _code_without_docstrings_and_comments(path: Path) -> str:
    """The module's string literals and names, without docstrings and comments (which may give examples)."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return "\n".join(
        repr(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    )


def test_the_readme_stays_a_guide_with_a_row_for_every_command():
    """The front door: short enough to read in five minutes, every command in its table, figures in docs/."""
    from harness.cli import app

    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    commands = [command.name or command.callback.__name__ for command in app.registered_commands]
    missing = [name for name in commands if f"| `harness {name}" not in readme]
    assert len(commands) >= 15 and not missing, f"commands without a row in the README: {missing}"
    for page in ("benchmarks", "search", "serving", "tasks", "robustness", "architecture"):
        assert f"(docs/{page}.md)" in readme and (ROOT / "docs" / f"{page}.md").exists()
