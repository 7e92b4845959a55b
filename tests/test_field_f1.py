"""The scorer as a Hugging Face `evaluate` metric, loaded from the repository path as a team would load it."""

from __future__ import annotations

import json

import pytest

from evaluators.scoring import score_outputs
from harness.task_data import load_split, rule_baseline
from tests.conftest import LEGAL_YAML

pytestmark = pytest.mark.fast  # the fast tier: no process started, no training (make test-fast)


def test_the_evaluate_metric_gives_the_scorers_figures_on_the_rule_baselines_answers(legal, monkeypatch):
    import evaluate

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a local path needs no hub
    metric = evaluate.load(str(LEGAL_YAML.parent.parent / "evaluators" / "field_f1"))
    examples = load_split(legal, "test")
    predict = rule_baseline(legal)
    assert predict is not None
    answers = [predict(e.text) for e in examples]
    figures = metric.compute(
        predictions=answers, references=[json.dumps(e.fields) for e in examples], task=str(legal.file)
    )
    expected = score_outputs(
        legal.fields, [e.fields for e in examples], answers, [e.id for e in examples], vocabulary=legal.vocabulary
    ).metrics
    assert figures == pytest.approx(expected)
    assert figures["f1_micro"] == pytest.approx(0.582, abs=0.001)  # the rule baseline on test-v1, as frozen
