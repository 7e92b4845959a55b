"""Task YAML loading: every shipped task validates, and every kind of bad input names file, line and key."""

from __future__ import annotations

import re

import pytest

from harness.config import (
    SEARCH_SPACES_DIR,
    CategoricalParam,
    apply_overrides,
    flat_params,
    for_profile,
    load_task,
    metric_names,
    recipe_keys,
    resolve_trial_config,
)
from harness.errors import HarnessError
from tests.conftest import LEGAL_YAML

pytestmark = pytest.mark.fast  # the fast tier: no process started, no training (make test-fast)


@pytest.mark.parametrize("path", sorted(SEARCH_SPACES_DIR.rglob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_task_yaml_loads(path):
    config = load_task(str(path))
    assert config.task.name == path.stem
    assert {"smoke", "cpu", "gpu"} <= set(config.profiles)


def test_legal_declares_the_seven_fields_with_their_types(legal):
    assert {name: spec.type for name, spec in legal.fields.items()} == {
        "plaintiff": "string",
        "defendant": "string",
        "dispute_subject": "enum",
        "decision": "enum",
        "claim_amount": "number",
        "awarded_amount": "number",
        "initiator": "enum",
    }
    assert legal.fields["decision"].values == ("satisfied", "partially_satisfied", "dismissed")
    assert len(legal.fields["dispute_subject"].values) == 8


def test_legal_seed_recipe_is_the_standard_qlora_recipe(legal):
    recipe = legal.recipe
    assert (recipe.lora.r, recipe.lora.resolved_alpha, recipe.lora.target_modules) == (16, 32, "attn")
    assert (recipe.train.learning_rate, recipe.quantization) == (2e-4, "nf4")


def test_legal_search_space_has_the_agreed_defaults(legal):
    params = legal.search.params
    assert params["lora.r"].choices == (4, 8, 16, 32, 64)
    assert params["lora.alpha_ratio"].choices == (0.5, 1, 2, 4)
    assert params["lora.target_modules"].choices == ("attn", "mlp", "all")
    assert (params["train.learning_rate"].low, params["train.learning_rate"].high) == (5e-5, 5e-3)
    assert params["train.learning_rate"].log is True
    assert params["quantization"].choices == ("none", "int8", "nf4")
    assert legal.search.objective.metric == "f1_micro"


def test_metric_names_cover_every_field_and_enum(legal):
    names = metric_names(legal.fields)
    assert names[:2] == ["n", "f1_micro"]
    assert "f1_claim_amount" in names and "acc_initiator" in names and "acc_claim_amount" not in names
    assert names[-3:] == ["exact_match", "json_valid_rate", "schema_valid_rate"]


def test_overrides_replace_dotted_keys_and_validate(legal):
    recipe = apply_overrides(legal.recipe, {"lora.r": 32, "quantization": "int8", "lora.alpha_ratio": 2})
    assert (recipe.lora.r, recipe.quantization, recipe.lora.resolved_alpha) == (32, "int8", 64)
    assert "lora.r" in recipe_keys(recipe) and "train.learning_rate" in recipe_keys(recipe)


def test_override_of_an_unknown_key_names_the_known_keys(legal):
    with pytest.raises(HarnessError, match=r"unknown recipe key 'lora.rank'; known keys: lora.r, lora.alpha"):
        apply_overrides(legal.recipe, {"lora.rank": 8})


def test_override_with_a_bad_value_says_what_was_expected(legal):
    with pytest.raises(HarnessError, match=r"quantization: Input should be 'none', 'int8' or 'nf4' \(got 'nf5'\)"):
        apply_overrides(legal.recipe, {"quantization": "nf5"})


def _line_of(path, needle):
    return next(i for i, line in enumerate(path.read_text().splitlines(), start=1) if needle in line)


def test_malformed_yaml_names_file_line_and_column(task_copy):
    path, _ = task_copy(text="task:\n  name: legal\n  instruction: [unclosed\nfields: {}\n")
    with pytest.raises(HarnessError, match=rf"{re.escape(str(path))}:4:7: malformed YAML: expected ',' or ']'"):
        load_task(str(path))


def test_unknown_key_is_named_with_its_line_and_the_allowed_keys(task_copy):
    path, _ = task_copy(lambda d: d["recipe"]["lora"].update(rank=8))
    with pytest.raises(HarnessError) as error:
        load_task(str(path))
    line = _line_of(path, "rank:")
    assert str(error.value) == (
        f"{path}:{line}: unknown key 'recipe.lora.rank';"
        " expected one of: r, alpha, alpha_ratio, dropout, target_modules, use_rslora"
    )


def test_missing_section_is_named(task_copy):
    path, _ = task_copy(lambda d: d.pop("search"))
    with pytest.raises(HarnessError, match=r":1: missing required key 'search'"):
        load_task(str(path))


def test_range_with_low_above_high_is_an_error_at_its_line(task_copy):
    path, _ = task_copy(lambda d: d["search"]["params"]["train.learning_rate"].update(low=0.1, high=0.001))
    with pytest.raises(HarnessError) as error:
        load_task(str(path))
    line = _line_of(path, "train.learning_rate:")
    assert f"{path}:{line}: search.params.train.learning_rate: low (0.1) is greater than high (0.001)" in str(
        error.value
    )


def test_search_choice_outside_the_recipe_type_is_an_error(task_copy):
    path, _ = task_copy(lambda d: d["search"]["params"]["quantization"].update(choices=["none", "nf5"]))
    with pytest.raises(HarnessError, match=r"search\.params\.quantization\.choices\[1\]: 'nf5' is not a valid value"):
        load_task(str(path))


def test_a_misspelt_normalization_key_is_named_with_the_allowed_ones(task_copy):
    path, _ = task_copy(lambda d: d["normalization"].update(currencies=["eur"]))
    with pytest.raises(HarnessError) as error:
        load_task(str(path))
    line = _line_of(path, "currencies:")
    assert str(error.value) == (
        f"{path}:{line}: unknown key 'normalization.currencies';"
        " expected one of: synonyms, currency, subunits, multipliers, fold"
    )


def test_a_synonym_token_must_be_one_word_and_a_factor_a_number(task_copy):
    path, _ = task_copy(lambda d: d["normalization"]["synonyms"].update({"two words": ["x"]}))
    with pytest.raises(HarnessError, match=r"normalization\.synonyms\.two words.*should match pattern"):
        load_task(str(path))
    path, _ = task_copy(lambda d: d["normalization"]["multipliers"].update(lakh="a hundred thousand"))
    with pytest.raises(HarnessError, match=r"normalization\.multipliers\.lakh: Input should be a valid number"):
        load_task(str(path))


def test_fold_replaces_single_characters_only(task_copy):
    path, _ = task_copy(lambda d: d["normalization"].update(fold={"ae": "ä"}))
    with pytest.raises(HarnessError, match=r"normalization\.fold: .*fold replaces single characters; not 'ae'"):
        load_task(str(path))
    path, _ = task_copy(lambda d: d["normalization"].update(fold={"Ü": "ue"}))
    assert load_task(str(path)).normalization.fold == {"Ü": "ue"}


def test_a_task_without_normalization_scores_with_no_words(task_copy):
    from evaluators.normalization import normalize_string

    path, _ = task_copy(lambda d: d.pop("normalization"))
    words = load_task(str(path)).vocabulary
    assert normalize_string('OOO "Sever"', words) == "ooo sever"  # not legal's `llc sever`


def test_enum_field_without_values_is_an_error(task_copy):
    path, _ = task_copy(lambda d: d["fields"]["decision"].pop("values"))
    with pytest.raises(HarnessError, match=r"fields\.decision: an enum field needs a non-empty 'values' list"):
        load_task(str(path))


def test_values_on_a_non_enum_field_is_an_error(task_copy):
    path, _ = task_copy(lambda d: d["fields"]["plaintiff"].update(values=["a"]))
    with pytest.raises(HarnessError, match=r"'values' is only allowed on enum fields, not on a string field"):
        load_task(str(path))


def test_unknown_field_type_lists_the_types(task_copy):
    path, _ = task_copy(lambda d: d["fields"]["plaintiff"].update(type="text"))
    with pytest.raises(HarnessError, match=r"fields\.plaintiff\.type: Input should be 'string', 'number', 'enum'"):
        load_task(str(path))


def test_objective_metric_must_be_a_metric_of_the_task(task_copy):
    path, _ = task_copy(lambda d: d["search"]["objective"].update(metric="f1_judge"))
    with pytest.raises(HarnessError, match=r"search\.objective\.metric: 'f1_judge' is not a metric of this task"):
        load_task(str(path))


def test_both_alpha_and_alpha_ratio_is_an_error(task_copy):
    path, _ = task_copy(lambda d: d["recipe"]["lora"].update(alpha_ratio=2))
    with pytest.raises(HarnessError, match=r"recipe\.lora: give alpha or alpha_ratio, not both"):
        load_task(str(path))


def test_missing_profile_is_named(task_copy):
    path, _ = task_copy(lambda d: d["profiles"].pop("gpu"))
    with pytest.raises(HarnessError, match=r"profiles: must define smoke, cpu, gpu; missing gpu"):
        load_task(str(path))


def test_task_name_must_match_the_file_name(task_copy):
    path, _ = task_copy(lambda d: d["task"].update(name="contracts"))
    with pytest.raises(HarnessError, match=r"task\.name: is 'contracts' but the file is legal\.yaml"):
        load_task(str(path))


def test_duplicate_yaml_key_is_an_error_not_an_overwrite(task_copy):
    text = LEGAL_YAML.read_text().replace("  seed: 17\n", "  seed: 17\n  seed: 18\n")
    path, _ = task_copy(text=text)
    with pytest.raises(HarnessError, match=rf":{_line_of(path, 'seed: 18')}: key 'data.seed' appears twice"):
        load_task(str(path))


def test_generator_source_without_sizes_is_an_error(task_copy):
    path, _ = task_copy(lambda d: d["data"].pop("train_size"))
    with pytest.raises(HarnessError, match=r"data: source=generator needs train_size"):
        load_task(str(path))


def test_a_generator_named_the_old_way_says_how_it_is_named_now(task_copy):
    path, _ = task_copy(lambda d: d["data"].update(generator="legal"))
    with pytest.raises(HarnessError, match=r"data.generator: .*generator: tasks.legal.generator .*tasks.legal.rules"):
        load_task(str(path))


def test_unknown_task_name_lists_known_tasks():
    with pytest.raises(HarnessError, match=r"unknown task 'contracts'.*known tasks: legal"):
        load_task("contracts")


def test_pruning_rungs_grow_by_the_reduction_factor_below_the_trial_budget(legal):
    pruning = legal.search.pruning
    assert (pruning.first_rung, pruning.reduction_factor) == (0.2, 4)
    assert pruning.rung_steps(12) == (2, 8)  # the cpu profile
    assert pruning.rung_steps(40) == (8, 32)
    assert pruning.rung_steps(2) == (1,)  # the smoke profile: one rung, one step in
    assert pruning.rung_steps(1) == ()


def test_a_batch_that_micro_batches_do_not_divide_is_an_error(legal):
    with pytest.raises(HarnessError, match="batch_size 8 is not a multiple of micro_batch_size 3"):
        resolve_trial_config(legal, profile="cpu", overrides={"budget.batch_size": 8, "budget.micro_batch_size": 3})


def test_a_profile_that_allows_only_nf4_searches_only_nf4_and_its_seed_recipe_takes_it():
    """gpu-70b: a 70B model fits an 80 GB card in 4 bits only, so its trials never draw 16 or 8 bits, and a seed
    recipe in 16 bits becomes nf4 rather than a trial that cannot fit."""
    task = load_task("legal")
    task = task.model_copy(update={"recipe": task.recipe.model_copy(update={"quantization": "none"})})
    narrowed = for_profile(task, "gpu-70b")
    assert narrowed.search.params["quantization"].choices == ("nf4",)
    assert narrowed.recipe.quantization == "nf4"
    assert resolve_trial_config(task, profile="gpu-70b").recipe.quantization == "nf4"
    assert for_profile(task, "cpu") is task  # a profile without the restriction leaves the task as it is
    with pytest.raises(HarnessError, match="quantization=none: profile gpu-70b trains in nf4 only"):
        resolve_trial_config(task, profile="gpu-70b", overrides={"quantization": "none"})


def test_a_profile_whose_quantizations_the_space_does_not_offer_is_refused():
    task = load_task("legal")
    space = {**task.search.params, "quantization": CategoricalParam(type="categorical", choices=("none", "int8"))}
    task = task.model_copy(update={"search": task.search.model_copy(update={"params": space})})
    with pytest.raises(HarnessError, match=r"profile gpu-70b allows quantization nf4, none of the search space's"):
        for_profile(task, "gpu-70b")


def test_a_profile_that_splits_its_trials_over_two_gpus_says_so_in_every_trial_config():
    """gpu-70b-40gb: the seed's 70B QLoRA on two 40 GB cards; the count travels with the trial (its process sees
    that many GPUs) and is logged with its run."""
    task = load_task("legal")
    split = resolve_trial_config(task, profile="gpu-70b-40gb")
    assert (split.gpus, resolve_trial_config(task, profile="gpu-70b").gpus) == (2, 1)
    assert resolve_trial_config(task, profile="gpu-70b-40gb", refit=True).gpus == 2
    assert flat_params(split)["gpus"] == 2
    # and the anchors share the 80 GB profile's budgets
    assert split.budget == resolve_trial_config(task, profile="gpu-70b").budget
