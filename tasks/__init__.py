"""Task-specific code, one package per task (`tasks/<name>/`): what only that task knows. A task's YAML names
its modules (`data.generator`, `data.baseline`); the generic code in `harness/` and `evaluators/` knows no task."""
