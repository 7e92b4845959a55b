"""The `harness` console script, run as a user runs it: help texts, scoring files, clear errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness.machine import has_cuda
from harness.task_data import load_split

HARNESS = str(Path(sys.executable).parent / "harness")
COMMANDS = [
    "score",
    "baseline",
    "data",
    "train",
    "eval",
    "search",
    "register",
    "promote",
    "regress",
    "serve",
    "ui",
    "server",
    "report",
    "results",
    "fetch-model",
    "plan",
    "export",
    "pick",
]


def run(*args: str, cwd: Path | None = None, columns: int | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it; `columns` widens its tables past the 80 columns of a pipe."""
    env = None if columns is None else {**os.environ, "COLUMNS": str(columns)}
    return subprocess.run([HARNESS, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def test_help_lists_every_command():
    result = run("--help")
    assert result.returncode == 0
    for command in COMMANDS:
        assert command in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_explains_itself(command):
    result = run(command, "--help")
    assert result.returncode == 0
    assert "Usage:" in result.stdout and len(result.stdout.splitlines()) > 5


def write_predictions(path: Path, records: list[tuple[str, str]]) -> Path:
    path.write_text("".join(json.dumps({"id": i, "output": o}) + "\n" for i, o in records))
    return path


def test_score_gives_one_for_gold_outputs_and_zero_for_empty_ones(legal, tmp_path):
    examples = load_split(legal, "test")
    gold = write_predictions(tmp_path / "gold.jsonl", [(e.id, json.dumps(e.fields)) for e in examples])
    empty = write_predictions(tmp_path / "empty.jsonl", [(e.id, "") for e in examples])

    metrics = last_json(run("score", "legal", str(gold)).stdout)
    assert metrics["n"] == 200 and metrics["f1_micro"] == 1.0 and metrics["exact_match"] == 1.0
    expected_names = ["n", "f1_micro"] + [f"f1_{f}" for f in legal.fields]
    expected_names += ["acc_dispute_subject", "acc_decision", "acc_initiator"]
    assert list(metrics) == [*expected_names, "exact_match", "json_valid_rate", "schema_valid_rate"]

    metrics = last_json(run("score", "legal", str(empty), "--split", "test").stdout)
    assert metrics["f1_micro"] == 0.0 and metrics["json_valid_rate"] == 0.0


def test_score_prints_a_readable_table(legal, tmp_path):
    examples = load_split(legal, "test")[:3]
    path = write_predictions(tmp_path / "p.jsonl", [(e.id, json.dumps(e.fields)) for e in examples])
    result = run("score", "legal", str(path))
    assert "claim_amount" in result.stdout and "precision" in result.stdout
    assert "predicts 3 of the 200 test examples; only those are scored" in result.stderr


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"id": "nope", "output": ""}'], "p.jsonl:1: id 'nope' is not in the test split"),
        (['{"id": "test-00000", "output": ""}'] * 2, "p.jsonl:2: id 'test-00000' already predicted on line 1"),
        (["not json"], "p.jsonl:1: not valid JSON"),
        (['{"id": "test-00000", "output": 3}'], "p.jsonl:1: 'output' must be the model's raw text"),
    ],
)
def test_score_refuses_bad_prediction_files_with_the_line(tmp_path, lines, message):
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(lines) + "\n")
    result = run("score", "legal", str(path))
    assert result.returncode == 2
    assert message in result.stderr.replace("\n", "")
    assert "Traceback" not in result.stderr


def test_unknown_task_is_a_clear_error_not_a_traceback(tmp_path):
    result = run("score", "contracts", str(tmp_path / "p.jsonl"))
    assert result.returncode == 2
    assert "unknown task 'contracts'" in result.stderr and "Traceback" not in result.stderr


def test_baseline_writes_predictions_and_scores_below_0_6(tmp_path):
    out = tmp_path / "baseline.jsonl"
    result = run("baseline", "legal", "--out", str(out))
    assert result.returncode == 0
    assert len(out.read_text().splitlines()) == 200
    assert 0.3 < last_json(result.stdout)["f1_micro"] < 0.6


def test_data_checks_digests_and_exports_splits(tmp_path):
    result = run("data", "legal", "--export", str(tmp_path), "--profile", "cpu", columns=300)
    assert result.returncode == 0
    assert "Eval set digests match" in result.stdout
    assert len((tmp_path / "train.jsonl").read_text().splitlines()) == 3200
    assert len((tmp_path / "test-v1.jsonl").read_text().splitlines()) == 200
    # Each split in the profile's model's tokens: every legal example fits the cpu profile's 576, none is cut.
    assert "legal in embedded:smollm2-135m-instruct's tokens" in result.stdout
    test_row = [line for line in result.stdout.splitlines() if line.startswith("│ test-v1 ")][-1]  # the second table
    assert test_row.split("│")[2].strip() == "245 / 328 / 410 / 447"  # measured by this command at 576
    assert "warning" not in result.stderr


def test_data_warns_of_examples_the_profile_cannot_train_or_generate_whole(task_copy):
    def shrink(data):
        data["profiles"]["cpu"]["budget"].update(max_seq_length=400, max_new_tokens=80)

    path, _ = task_copy(shrink)
    result = run("data", str(path), "--profile", "cpu")
    assert result.returncode == 0
    stderr = " ".join(result.stderr.split())
    assert re.search(r"warning: \d+ train examples \(the longest \d+ tokens\) and \d+ validation examples", stderr)
    assert "longer than the cpu profile's max_seq_length=400" in stderr
    assert "validation's longest answer is 92 tokens, more than the cpu profile's max_new_tokens=80" in stderr


def test_plan_says_70b_qlora_takes_two_a100_40gb_and_what_else_would_fit():
    model = "meta-llama/Llama-3.1-70B-Instruct"
    result = run("plan", "legal", "--model", model, "--gpu", "a100-40gb", "--gpus", "2", columns=200)
    assert result.returncode == 0, result.stderr
    assert "70.55B parameters; 2 x NVIDIA A100 40GB" in result.stdout
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if line.startswith("│ ")}
    assert "split over 2 GPUs" in rows["qlora-4bit"] and "does not fit" in rows["lora-16bit"]
    assert "lora-16bit: fits split over 5 GPUs of this kind (--gpus 5)" in result.stdout
    text = " ".join(result.stdout.split())
    assert "qlora-4bit: its trials generate through the adapter on the nf4 base" in text
    assert "registration: the winner merged into bf16 and evaluated needs 70.3 GiB per GPU split over 2 x 40" in text
    assert "does NOT fit" in text
    # Offline, the lineup's tokenizer is not at hand: the times say they are upper bounds.
    assert "the times are upper bounds" in " ".join(result.stdout.split())


def test_plan_of_a_sized_profile_plans_its_own_cards_and_says_whether_it_keeps_to_its_hours():
    result = run("plan", "legal", "--profile", "gpu-70b", columns=200)
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert "70.55B parameters; 2 x NVIDIA A100 80GB" in text
    assert re.search(r"profile gpu-70b is sized for 22 h on 2 x a100-80gb: within them at the seed's speed"
                     r" \(at most \d+\.\d h\)", text)  # fmt: skip
    assert "profile gpu-70b trains in nf4 only: its trials draw no other" in text
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if line.startswith("│ ")}
    assert "a worker on each of 2 GPUs" in rows["qlora-4bit"]
    # On a card the profile was not sized for, no verdict on its hours.
    assert "is sized for" not in run("plan", "legal", "--profile", "gpu-70b", "--gpu", "h100-80gb").stdout


def test_fetch_model_prints_the_local_directory():
    result = run("fetch-model", "tiny:llama")
    assert result.returncode == 0
    assert (Path(result.stdout.strip().splitlines()[-1]) / "model.safetensors").exists()


def test_train_runs_one_smoke_trial_and_eval_scores_its_adapter_and_keeps_its_answers(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_MLRUNS", str(tmp_path / "mlruns"))
    result = run("train", "legal", "--profile", "smoke", "--set", "lora.r=8")
    assert result.returncode == 0, result.stderr
    assert "profile smoke (asked for); model tiny:llama" in result.stdout
    metrics = last_json(result.stdout)
    assert metrics["n"] == 4 and metrics["trainable_params"] == 2 * 8 * (256 + 192 + 192 + 256)
    assert (tmp_path / "mlruns" / "mlflow.db").exists()
    adapter = next(line.split("adapter in ")[1] for line in result.stdout.splitlines() if "adapter in " in line)

    answers = tmp_path / "answers.jsonl"
    evaluated = run(
        "eval", "legal", "--model", "tiny:llama", "--adapter", adapter.strip(), "--limit", "2", "--max-new-tokens", "8",
        "--out", str(answers),
    )  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr
    assert last_json(evaluated.stdout)["n"] == 2
    assert "  2/2 answers, " in evaluated.stderr  # the answers as they come, on stderr
    # The kept answers are the validation split's first two, and scoring them again gives the same figures.
    assert [json.loads(line)["id"] for line in answers.read_text().splitlines()] == [
        "validation-00000",
        "validation-00001",
    ]


def test_score_gives_the_figures_eval_gave_for_the_answers_it_kept(smoke_study, tmp_path):
    """The kept answers are what was scored: rescoring them with `harness score` gives eval's figures. The adapter
    that always gives one answer scores above zero, so equal figures are not two zeros."""
    answers = tmp_path / "answers.jsonl"
    evaluated = run(
        "eval", "legal", "--model", "tiny:llama", "--adapter", str(smoke_study.constant_answer_adapter),
        "--split", "test", "--limit", "8", "--out", str(answers),
    )  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr
    figures = last_json(evaluated.stdout)
    assert figures["n"] == 8 and figures["json_valid_rate"] == 1.0 and figures["f1_micro"] > 0.1
    rescored = run("score", "legal", str(answers), "--split", "test")
    assert rescored.returncode == 0, rescored.stderr
    assert last_json(rescored.stdout) == figures


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "lora.rank=8"], "unknown recipe key 'lora.rank'"),
        (["--set", "quantization=nf5"], "quantization: Input should be 'none', 'int8' or 'nf4'"),
        (["--set", "lora.r"], "--set 'lora.r': expected key=value"),
        (["--profile", "tpu"], "unknown profile 'tpu'"),
        (["--max-memory", "lots"], "cannot read memory size 'lots'"),
        pytest.param(
            ["--profile", "gpu"],
            "profile gpu trains on a CUDA GPU and this machine has none (torch",
            marks=pytest.mark.skipif(has_cuda(), reason="this machine has a GPU"),
        ),
    ],
)
def test_train_refuses_bad_settings_before_loading_anything(args, message):
    result = run("train", "legal", "--profile", "smoke", *args)
    assert result.returncode == 2
    assert message in result.stderr.replace("\n", "") and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--trials", "0"], "--trials must be at least 1"),
        (["--trials", "-3"], "--trials must be at least 1"),
        (["--timeout", "0"], "--timeout must be a positive number of seconds"),
    ],
)
def test_a_search_that_means_nothing_is_refused_before_anything_exists(tmp_path, option, message):
    result = subprocess.run(
        [HARNESS, "search", "legal", "--profile", "smoke", *option],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HARNESS_MLRUNS": str(tmp_path / "mlruns")},
    )
    assert result.returncode == 2
    assert message in result.stderr.replace("\n", " ") and "Traceback" not in result.stderr
    # no study, no parent run, not even an empty store
    assert not (tmp_path / "mlruns").exists() or not any((tmp_path / "mlruns").iterdir())


def test_register_without_a_study_says_which_studies_exist(tmp_path):
    result = subprocess.run(
        [HARNESS, "register", "legal", "--profile", "smoke"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HARNESS_MLRUNS": str(tmp_path)},
    )
    assert result.returncode == 2
    assert "no study 'legal-smoke'" in result.stderr and "studies there: none" in result.stderr
    assert "Traceback" not in result.stderr


def test_register_names_a_run_that_does_not_exist(tmp_path):
    result = subprocess.run(
        [HARNESS, "register", "legal", "--run", "0123456789abcdef"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HARNESS_MLRUNS": str(tmp_path)},
    )
    assert result.returncode == 2
    assert "no MLflow run '0123456789abcdef'" in result.stderr and "Traceback" not in result.stderr


def test_register_refuses_a_run_and_a_model_together():
    result = subprocess.run(
        [HARNESS, "register", "legal", "--run", "abc", "--model", "tiny:llama"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2 and "give --run or --model, not both" in result.stderr


def test_promote_without_a_registered_model_says_to_register_first(tmp_path):
    result = subprocess.run(
        [HARNESS, "promote", "legal"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HARNESS_MLRUNS": str(tmp_path)},
    )
    assert result.returncode == 2
    assert "legal-extractor has no alias @challenger" in result.stderr.replace("\n", " ")
    assert "harness register legal" in result.stderr.replace("\n", " ")


def forms_page(path: Path, model: str = "legal-extractor v2", f1_shift: float = 0.0) -> Path:
    """A serving-forms page's figures as bench/serving_forms.py writes them: two forms, each with its loads."""

    def loads(seconds16: float, p95_16: float) -> dict:
        one = dict(concurrency=1, documents=16, seconds=32.0, input_tokens=8000, output_tokens=1600,
                   p50_seconds=1.9, p95_seconds=2.4)  # fmt: skip
        sixteen = dict(concurrency=16, documents=100, seconds=seconds16, input_tokens=50000, output_tokens=10000,
                       p50_seconds=7.0, p95_seconds=p95_16)  # fmt: skip
        return {"1": one, "16": sixteen}

    forms = [
        {"form": "merged", "f1_micro": 0.975 + f1_shift, "size_mb": 270.9, "loads": loads(50.0, 9.0),
         "prefill_tokens_per_second": 5000.0},
        {"form": "gguf-q4_0", "f1_micro": 0.946 + f1_shift, "size_mb": 77.6, "loads": loads(40.0, 8.0),
         "prefill_tokens_per_second": 5000.0},
    ]  # fmt: skip
    path.write_text(json.dumps({"model": model, "forms": forms}))
    return path


def test_pick_costs_a_measured_page_at_the_users_prices_and_names_the_best_form_that_fits(tmp_path):
    page = forms_page(tmp_path / "forms.json")
    result = run("pick", str(page), "--price-per-hour", "3.6", "--api-price-in", "2.5", "--api-price-out", "10",
                 columns=200)  # fmt: skip
    assert result.returncode == 0, result.stderr
    # merged at concurrency 16: 2 documents a second, so 1,000 cost $0.50; the API $2.25 for the same tokens.
    assert re.search(
        r"merged │ +0\.9750 │ +271 │ +9\.00 │ +0\.5000 │ +0\.2000 │ +4\.0000 │ +4\.5x cheaper", result.stdout
    )
    assert "pick: merged (f1_micro 0.9750, 271 MB)" in result.stdout

    small = run("pick", str(page), "--max-size-mb", "100", "--p95-target", "5", columns=200)
    assert small.returncode == 0, small.stderr
    assert "merged misses it: size 271 MB > 100 MB" in small.stdout
    assert "pick: gguf-q4_0 (f1_micro 0.9460, 78 MB)" in small.stdout  # costed at concurrency 1, p95 2.4 s

    nothing = run("pick", str(page), "--max-size-mb", "50")
    assert nothing.returncode == 1 and "no form meets the constraint" in nothing.stdout


def test_pick_sweeps_the_forms_of_several_versions_and_names_the_version_it_picks(tmp_path):
    """Two top trials, each registered and measured in each form: the pick runs over every (version, form)."""
    v2 = forms_page(tmp_path / "v2.json")
    v1 = forms_page(tmp_path / "v1.json", model="legal-extractor v1", f1_shift=0.01)  # v1's 4-bit keeps more
    result = run("pick", str(v2), str(v1), "--max-size-mb", "100", columns=200)
    assert result.returncode == 0, result.stderr
    assert "legal-extractor v2 and legal-extractor v1: serving forms" in result.stdout
    assert "legal-extractor v1 merged misses it: size 271 MB > 100 MB" in result.stdout
    assert "pick: legal-extractor v1 gguf-q4_0 (f1_micro 0.9560, 78 MB)" in result.stdout

    same = run("pick", str(v2), str(v2))
    assert same.returncode != 0 and "two pages of the same model" in same.stdout + same.stderr


def test_pick_refuses_a_file_that_is_not_a_forms_page(tmp_path):
    result = run("pick", str(tmp_path / "missing.json"))
    assert result.returncode != 0
    assert "missing.json: not a serving-forms page" in result.stderr + result.stdout
    assert "bench/serving_forms.py" in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
