"""Task configuration: `search_spaces/<task>.yaml` -> validated models -> plain values for one trial.

The schema, the YAML loading with its error wording, and resolving a trial's values are three modules here
(docs/architecture.md).
"""

from harness.config.loading import load_task, task_path
from harness.config.resolving import (
    apply_overrides,
    flat_params,
    for_profile,
    parse_memory_size,
    parse_set_options,
    recipe_keys,
    recipe_values,
    resolve_trial_config,
)
from harness.config.schema import (
    DEFAULT_MAX_NEW_TOKENS,
    SEARCH_SPACES_DIR,
    BudgetSpec,
    CategoricalParam,
    EvalSetSpec,
    FieldSpec,
    FloatParam,
    IntParam,
    LoraSpec,
    NormalizationSpec,
    ProfileSpec,
    PruningSpec,
    Recipe,
    SearchSpec,
    TaskConfig,
    TrainSpec,
    TrialConfig,
    metric_names,
)

__all__ = [
    "DEFAULT_MAX_NEW_TOKENS",
    "SEARCH_SPACES_DIR",
    "BudgetSpec",
    "CategoricalParam",
    "EvalSetSpec",
    "FieldSpec",
    "FloatParam",
    "IntParam",
    "LoraSpec",
    "NormalizationSpec",
    "ProfileSpec",
    "PruningSpec",
    "Recipe",
    "SearchSpec",
    "TaskConfig",
    "TrainSpec",
    "TrialConfig",
    "apply_overrides",
    "flat_params",
    "for_profile",
    "load_task",
    "metric_names",
    "parse_memory_size",
    "parse_set_options",
    "recipe_keys",
    "recipe_values",
    "resolve_trial_config",
    "task_path",
]
