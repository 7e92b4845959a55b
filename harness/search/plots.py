"""Optuna's plots of a study (history, importances, parallel coordinates, slices), drawn from the study and
logged on its MLflow parent run as `plots/` (HTML and PNG): the MLflow UI shows them beside the trials, and
`harness report` / `harness results` take the PNGs from there. Drawn here because drawing them is Optuna's."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import optuna
from optuna.trial import TrialState

from harness import tracking

PLOTS = ("optimization_history", "param_importances", "parallel_coordinate", "slice")


def log_study_plots(study: optuna.Study, parent_run_id: str) -> None:
    """Optuna's plots of the study on its parent run: interactive HTML (plotly) and PNG (matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")  # no display: render to files
    import matplotlib.pyplot as plt
    import optuna.visualization as interactive
    import optuna.visualization.matplotlib as static

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return
    skipped = {}
    with tempfile.TemporaryDirectory() as directory, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the matplotlib backend is marked experimental on every call
        for name in PLOTS:
            try:
                getattr(interactive, f"plot_{name}")(study).write_html(Path(directory) / f"{name}.html")
                axes = getattr(static, f"plot_{name}")(study)
                figure = axes.flat[0].figure if hasattr(axes, "flat") else axes.figure
                figure.savefig(Path(directory) / f"{name}.png", bbox_inches="tight")
                plt.close(figure)
            except (ValueError, RuntimeError, ZeroDivisionError) as error:
                # Importances need two trials that differ; a one-trial study has none to show yet.
                skipped[name] = f"{type(error).__name__}: {error}"[:200]
        tracking.log_directory_to_run(parent_run_id, Path(directory), "plots")
    if skipped:
        tracking.log_to_run(parent_run_id, tags={f"harness.plot_skipped.{k}": v for k, v in skipped.items()})
