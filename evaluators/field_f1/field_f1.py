"""harness's field-level scorer as a Hugging Face `evaluate` metric, for teams that score with `evaluate`:

    import evaluate
    metric = evaluate.load("path/to/harness/evaluators/field_f1")
    metric.compute(predictions=[raw model output, ...], references=[gold fields as JSON, ...], task="legal")

`task` is a task name (search_spaces/<name>.yaml) or a task YAML path: its fields say how each value is compared.
The figures are `evaluators.scoring.score_outputs`'s, the same function `harness score`, every trial and every
gate use (f1_micro, f1_<field>, acc_<enum field>, exact_match, json_valid_rate, schema_valid_rate, n).
`evaluate` copies this script into its cache before importing it: it imports harness as an installed package.
"""

from __future__ import annotations

import json

import datasets
import evaluate

from evaluators.scoring import score_outputs
from harness.config import load_task

_DESCRIPTION = "Field-level precision, recall and F1 of JSON answers against gold fields, per field and micro-averaged."
_KWARGS_DESCRIPTION = """
Args:
    predictions: the model's raw answers (text with one JSON object in it).
    references: the gold fields of each example, as a JSON object (text).
    task: a task name or task YAML path, whose fields say how each value is normalised and compared.
Returns:
    n, f1_micro, f1_<field> for every field, acc_<field> for every enum field, exact_match, json_valid_rate,
    schema_valid_rate.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class FieldF1(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions: list[str], references: list[str], task: str = "legal") -> dict[str, float]:
        config = load_task(task)
        golds = [json.loads(reference) for reference in references]
        ids = [str(index) for index in range(len(predictions))]
        return dict(score_outputs(config.fields, golds, predictions, ids, vocabulary=config.vocabulary).metrics)
