"""Regression checks on the stored eval sets: the comparison, `harness regress` end to end, and the stored suite
itself (`pytest -m regression`: one test per eval set x model with expectations committed beside the set)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.config import SEARCH_SPACES_DIR, load_task
from harness.errors import HarnessError
from harness.regression import MetricCheck, compare, expectations_path, model_key, regress

HARNESS = str(Path(sys.executable).parent / "harness")


def test_a_metric_below_its_expectation_by_more_than_the_tolerance_regressed():
    assert MetricCheck("f1_micro", expected=0.80, tolerance=0.01, got=0.789).verdict == "regressed"
    assert MetricCheck("f1_micro", expected=0.80, tolerance=0.01, got=0.79).verdict == "ok"
    assert MetricCheck("f1_micro", expected=0.80, tolerance=0.01, got=0.811).verdict == "improved"


def test_an_expected_metric_the_run_did_not_produce_is_an_error():
    with pytest.raises(HarnessError, match="the run produced no f1_judge"):
        compare({"f1_judge": {"expected": 0.5, "tolerance": 0.01}}, {"f1_micro": 0.5})


def test_expectations_are_stored_beside_the_eval_set_under_the_model_name(legal):
    [test_v1, _] = legal.data.eval_sets
    path = expectations_path(legal, test_v1, "models:/legal-extractor@champion")
    assert path == SEARCH_SPACES_DIR.parent / "tasks/legal/eval_sets/expectations/test-v1/legal-extractor@champion.json"
    assert model_key("runs:/0a1b/model") == "0a1b-model" and model_key("tiny:llama") == "tiny-llama"


def regress_command(task_path: Path, tmp_path: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [HARNESS, "regress", str(task_path), *options],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "HARNESS_MLRUNS": str(tmp_path / "mlruns"), "COLUMNS": "200"},
    )


def test_regress_passes_on_stored_figures_fails_above_reach_and_refuses_a_changed_set(legal_test_head, tmp_path):
    task_path = legal_test_head(8)
    model = ["--model", "tiny:llama"]
    missing = regress_command(task_path, tmp_path, *model)
    assert missing.returncode == 2 and "--update-baseline" in missing.stderr

    stored = regress_command(task_path, tmp_path, *model, "--update-baseline")
    assert stored.returncode == 0, stored.stdout + stored.stderr
    expectations = task_path.parent.parent / "tasks/legal/eval_sets/expectations/test-head-v1/tiny-llama.json"
    assert "expectations updated from this run" in stored.stdout and expectations.exists()
    again = regress_command(task_path, tmp_path, *model)
    assert again.returncode == 0 and "no regression on 1 eval set(s)" in again.stdout

    record = json.loads(expectations.read_text())
    record["metrics"]["f1_initiator"]["expected"] = 0.9  # out of a random tiny model's reach
    expectations.write_text(json.dumps(record))
    failed = regress_command(task_path, tmp_path, *model)
    assert failed.returncode == 1
    assert "regression: f1_initiator on test-head-v1" in failed.stderr and "REGRESSED" in failed.stdout

    eval_set = task_path.parent.parent / "tasks/legal/eval_sets/test-head-v1.jsonl"
    eval_set.write_text(eval_set.read_text().replace("rubles", "roubles", 1))
    changed = regress_command(task_path, tmp_path, *model)
    assert changed.returncode == 2 and "sha256 is" in changed.stderr and "Traceback" not in changed.stderr


def test_update_baseline_refuses_worse_figures_keeps_each_tolerance_and_writes_whole(legal_test_head):
    task = load_task(str(legal_test_head(8)))
    [first] = regress(task, model="rules", update_baseline=True)
    record = json.loads(first.path.read_text())
    record["metrics"]["f1_micro"] = {"expected": 0.99, "tolerance": 0.002}  # beyond the rules' reach
    record["metrics"]["exact_match"]["tolerance"] = 0.25
    first.path.write_text(json.dumps(record))
    before = first.path.read_bytes()

    with pytest.raises(HarnessError, match=r"regresses \(f1_micro on test-head-v1 0\.\d+ < stored 0\.9900 - 0\.002\)"):
        regress(task, model="rules", update_baseline=True)
    assert first.path.read_bytes() == before  # refused: nothing written

    [accepted] = regress(task, model="rules", update_baseline=True, accept_regression=True)
    metrics = json.loads(accepted.path.read_text())["metrics"]
    assert metrics["f1_micro"]["expected"] < 0.99
    # each metric keeps its own tolerance; --tolerance replaces them all
    assert (metrics["f1_micro"]["tolerance"], metrics["exact_match"]["tolerance"]) == (0.002, 0.25)
    assert metrics["json_valid_rate"]["tolerance"] == 0.01
    assert [p.name for p in accepted.path.parent.iterdir()] == [accepted.path.name]  # no partial file left
    [replaced] = regress(task, model="rules", update_baseline=True, tolerance=0.05)
    assert {m["tolerance"] for m in json.loads(replaced.path.read_text())["metrics"].values()} == {0.05}


def test_an_unknown_eval_set_names_the_stored_ones(legal):
    with pytest.raises(HarnessError, match="no eval set 'test-v9'; stored sets: test-v1, defendant-initiated-v1"):
        regress(legal, model="rules", eval_set="test-v9")


def stored_expectations():
    """Every expectations file committed beside a stored eval set of a task in search_spaces/."""
    for task_file in sorted(SEARCH_SPACES_DIR.glob("*.yaml")):
        task = load_task(str(task_file))
        for eval_set in task.data.eval_sets:
            for path in sorted(expectations_path(task, eval_set, "x").parent.glob("*.json")):
                model = json.loads(path.read_text())["model"]
                yield pytest.param(task_file, eval_set.name, model, id=f"{task.task.name}/{eval_set.name}/{path.stem}")


@pytest.mark.regression
@pytest.mark.parametrize(("task_file", "eval_set", "model"), list(stored_expectations()))
def test_no_regression_against_the_stored_expectations(task_file, eval_set, model):
    [result] = regress(load_task(str(task_file)), model=model, eval_set=eval_set)
    assert not result.regressed, [(c.metric, c.expected, c.got) for c in result.regressed]
