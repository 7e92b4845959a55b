"""The search: an Optuna study over LoRA / QLoRA recipes. This package is the only code that imports Optuna.

A study is named `<task>-<profile>` unless told otherwise and lives in `<mlruns>/optuna-journal.log` (Optuna's
JournalStorage: safe for several local processes) or any Optuna storage URL (`postgresql://...` for many machines).
`trials` is the total number of finished (complete or pruned) trials the study should have: running the same
command again resumes it and runs only what is missing. Trial 0 is always the task's seed recipe. Each trial is
`harness.trial.run_trial`, nested in MLflow under one parent run per study.

Any number of workers may run the same command on one study at once (Optuna's own distributed engine): each pulls
trials until the study has its total, never starting one the total does not need.

Where each part lives, so a question names its file:
- `options.py`      what a search is asked to do (`SearchOptions`, the single source of `harness search`'s defaults)
- `storage.py`      opening an Optuna storage (journal file, SQLite, PostgreSQL) and the default one
- `space.py`        the sampler, the pruner and the parameters, built from the task's YAML; the seed recipe in them
- `study.py`        a study's name, identity (what makes its trials comparable), creation, resumption and results
- `coordination.py` workers sharing a study: liveness, dead workers' trials retried, claims ("only one of us")
- `objective.py`    one trial as Optuna sees it: sample, run `harness.trial.run_trial` in a process of its own
                    (`harness.trial_process`), report rungs, prune
- `run.py`          `run_search`: the loop that ties them together, with its progress and estimate
- `plots.py`        Optuna's plots of a study, logged on its MLflow parent run

Nothing here is imported by `harness/__init__`: `harness --help` stays instant (Optuna takes a second to import).
"""
