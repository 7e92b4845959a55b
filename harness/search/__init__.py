"""The search: an Optuna study over LoRA / QLoRA recipes. This package is the only code that imports Optuna.

A study is named `<task>-<profile>` unless told otherwise and lives in `<mlruns>/optuna-journal.log` (Optuna's
JournalStorage: safe for several local processes) or any Optuna storage URL (`postgresql://...` for many machines).
`trials` is the total number of finished (complete or pruned) trials the study should have: running the same
command again resumes it and runs only what is missing. Trial 0 is always the task's seed recipe. Each trial is
`harness.trial.run_trial`, nested in MLflow under one parent run per study.

Any number of workers may run the same command on one study at once (Optuna's own distributed engine): each pulls
trials until the study has its total, never starting one the total does not need.

Each part's file is named in docs/architecture.md. Nothing here is imported by `harness/__init__`: `harness --help`
stays instant (Optuna takes a second to import).
"""
