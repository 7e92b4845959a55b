"""Serving a registered version with the real vLLM server (its own virtual environment), checked end to end."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from openai import OpenAI

from harness import export, registry, serving, tracking
from harness.errors import HarnessError
from harness.promotion import promote
from harness.task_data import load_split
from tests.conftest import free_port

HARNESS = str(Path(sys.executable).parent / "harness")


def get(url: str, key: str) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, {}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()


def stop(pid: int) -> None:
    os.kill(pid, signal.SIGTERM)
    for _ in range(60):
        if not alive(pid):
            return
        time.sleep(1)
    os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def champion(smoke_study, tmp_path_factory):
    """A champion whose answers are known: the tiny model trained to give one fixed answer (f1_micro 0.163 on the
    shared study's stored set of 32 decisions, enough for concurrency 16 twice over), registered as v2 and promoted
    in a copy of the shared stores. A served answer that differs from the offline one, or a server that scores it
    otherwise, shows in every figure (the untrained v1 scores 0 both ways)."""
    mlruns = tmp_path_factory.mktemp("serving") / "mlruns"
    shutil.copytree(smoke_study.mlruns, mlruns)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HARNESS_MLRUNS", str(mlruns))
        tracking.configure()
        registration = registry.register_run(smoke_study.task, smoke_study.constant_answer_run_id)
        assert registration.test["f1_micro"] > 0.1, registration.test
        assert promote(smoke_study.task).promoted
    return smoke_study.task, smoke_study.task_path, mlruns


def f1_micro_served_and_offline(stdout: str) -> tuple[float, float]:
    """The check table's f1_micro row: served (vLLM), then offline (transformers)."""
    row = re.search(r"f1_micro\W+(\d\.\d{4})\W+(?:\d\.\d{4}\W+)?(\d\.\d{4})", stdout)
    assert row, stdout
    return float(row.group(1)), float(row.group(2))


def identical_share(stdout: str) -> float:
    """The check's share of served answers identical to the offline ones, in percent."""
    share = re.search(r"answers identical to the offline ones: ([\d.]+)%", stdout)
    assert share, stdout
    return float(share.group(1))


def serve(
    task_path: Path, mlruns: Path, port: int, *options: str, key_in_environment: bool = False
) -> tuple[subprocess.CompletedProcess[str], int]:
    """`harness serve TASK --check --detach` with the key `sesame` (as --api-key, or as HARNESS_API_KEY); returns
    the result and the server's pid."""
    command = [HARNESS, "serve", str(task_path), "--check", "--detach", "--port", str(port)]
    key = {"HARNESS_API_KEY": "sesame"} if key_in_environment else {}
    result = subprocess.run(
        [*command, *([] if key_in_environment else ["--api-key", "sesame"]), "--max-model-len", "1024", *options],
        capture_output=True,
        text=True,
        timeout=900,
        # Wide enough that Rich does not wrap the lines this test reads.
        env={**os.environ, "HARNESS_MLRUNS": str(mlruns), "COLUMNS": "200", **key},
    )
    print(result.stdout)  # the check's figures, for `pytest -s`
    started = re.search(r"server pid (\d+)", result.stdout)
    assert started, result.stdout + result.stderr
    return result, int(started.group(1))


@pytest.mark.slow
def test_serve_check_matches_offline_and_the_server_requires_its_key(champion):
    _, task_path, mlruns = champion
    port = free_port()
    result, pid = serve(task_path, mlruns, port)
    try:
        assert result.returncode == 0, result.stdout + result.stderr
        assert "parity passes" in result.stdout
        served, offline = f1_micro_served_and_offline(result.stdout)
        assert served == pytest.approx(offline, abs=0.02) and served > 0.1
        # Same merged weights, greedy both sides, each answer ended where its JSON closes (the model never learned
        # to end its turn: without the server's stop rule every served answer runs on to max_tokens).
        identical = identical_share(result.stdout)
        assert identical >= 90.0, result.stdout  # measured 100%; bf16 kernels may differ on another CPU
        assert re.search(r"concurrency 16: \d+ tokens/s, latency p50", result.stdout)
        assert f"http://127.0.0.1:{port}/v1" in result.stdout  # bound to the loopback interface by default
        status, models = get(f"http://127.0.0.1:{port}/v1/models", "sesame")
        assert status == 200 and [m["id"] for m in models["data"]] == ["legal-extractor"]
        assert get(f"http://127.0.0.1:{port}/v1/models", "wrong")[0] == 401
        assert "sesame" not in command_line(pid)  # the key reached vLLM through its environment
    finally:
        stop(pid)
    assert not alive(pid)


@pytest.mark.slow
def test_serve_lora_serves_the_adapter_unmerged_and_json_schema_constrains_the_answers(champion):
    task, task_path, mlruns = champion
    port = free_port()
    result, pid = serve(task_path, mlruns, port, "--lora", "--json-schema", key_in_environment=True)
    try:
        assert result.returncode == 0, result.stdout + result.stderr
        assert "LoRA, unmerged" in result.stdout and "parity passes" in result.stdout
        served, offline = f1_micro_served_and_offline(result.stdout)
        assert served == pytest.approx(offline, abs=0.02) and served > 0.1
        # Base + unmerged adapter answer as the merged bf16 weights did offline.
        identical = identical_share(result.stdout)
        assert identical >= 90.0, result.stdout
        assert re.search(r"json_valid_rate without the schema [\d.]+, with it [\d.]+", result.stdout)
        assert re.search(r"concurrency 16, JSON Schema: \d+ tokens/s", result.stdout)
        assert '"response_format": {"type": "json_schema"' in result.stdout  # the printed example uses it
        status, models = get(f"http://127.0.0.1:{port}/v1/models", "sesame")  # HARNESS_API_KEY's key
        assert status == 200 and get(f"http://127.0.0.1:{port}/v1/models", "wrong")[0] == 401
        assert sorted(m["id"] for m in models["data"]) == ["legal-extractor", "legal-extractor-base"]

        # Under a schema the answer is valid JSON of that schema, even from a random tiny model.
        decision_only = {
            "type": "object",
            "properties": {"decision": {"type": "string", "enum": list(task.fields["decision"].values)}},
            "required": ["decision"],
            "additionalProperties": False,
        }
        openai = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sesame")
        examples = load_split(task, "test")[:8]
        run = serving.ask(
            openai, "legal-extractor", task, examples, max_tokens=32, concurrency=8, json_schema=decision_only
        )
        answers = run.outputs
        # The server's count of prompt tokens, which splits serving's cost between input and output (costs.py):
        # legal's test prompts are 245 tokens and more in this tokenizer (docs/tasks.md).
        assert run.prompt_tokens >= 8 * 245
        assert [json.loads(a)["decision"] in decision_only["properties"]["decision"]["enum"] for a in answers] == [
            True
        ] * 8
    finally:
        stop(pid)
    assert not alive(pid)


def command_line(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


@pytest.mark.parametrize(
    ("host", "api_key", "warned"),
    [
        ("127.0.0.1", None, False),
        ("localhost", None, False),
        ("::1", None, False),
        ("0.0.0.0", None, True),
        ("::", None, True),
        ("10.1.2.3", None, True),
        ("serving.example.com", None, True),
        ("0.0.0.0", "sesame", False),
    ],
)
def test_a_server_other_machines_reach_without_a_key_is_warned_about(host, api_key, warned):
    warning = serving.exposure_warning(serving.ServerOptions(host=host, api_key=api_key))
    assert (warning is not None) == warned
    if warned:
        assert host in warning and "--api-key" in warning and "HARNESS_API_KEY" in warning


# Run by vLLM's interpreter: the processor's bookkeeping over a changing batch, on a five-token vocabulary.
ANSWER_STOP_SCRIPT = """
import torch
from json_answer_stop import JsonAnswerStop
from vllm.v1.sample.logits_processor import BatchUpdate, MoveDirectionality

class Params:  # what the processor reads of vLLM's SamplingParams
    def __init__(self, eos_token_id=2, extra_args=None):
        self.eos_token_id, self.extra_args = eos_token_id, extra_args

stop = JsonAnswerStop.__new__(JsonAnswerStop)
stop.start(["{", "}", "<end>", "a", "{}"])
def ended(rows=3, forbid_end=()):  # the rows whose next token is forced to be the end of the turn
    logits = torch.zeros(rows, 5)
    for row in forbid_end:
        logits[row, 2] = float("-inf")
    logits = stop.apply(logits)
    return [row for row in range(rows) if logits[row].argmax() == 2 and logits[row, 0] == float("-inf")]
a, b, c = [], [], []  # vLLM's live output-token lists
stop.update_state(BatchUpdate(3, [], [(0, Params(), None, a), (1, Params(), None, b), (2, Params(), None, c)], []))
a += [0, 3]; b += [0, 3, 1]; c += [3, 1]  # a open, b closed, c never opened (a stray brace closes nothing)
print("step 1", ended())
print("end forbidden", ended(forbid_end=[1]))  # by the request's grammar, min_tokens or bad_words
stop.update_state(BatchUpdate(3, [], [], [(0, 1, MoveDirectionality.SWAP)]))
print("swapped", ended())
a += [-1]  # a placeholder, as under asynchronous scheduling ...
print("placeholder", ended())
a[-1] = 1  # ... which vLLM fills in before the next step: it closes a
print("filled", ended())
stop.update_state(BatchUpdate(2, [0], [], [(2, 0, MoveDirectionality.UNIDIRECTIONAL)]))  # b done; c fills its row
print("condensed", ended(rows=2))
opted_out, ignoring_eos, plain = [4], [4], [4]  # "{}": each answer closes in one token
stop.update_state(BatchUpdate(5, [], [
    (2, Params(extra_args={"json_answer_stop": "off"}), None, opted_out),
    (3, Params(eos_token_id=None), None, ignoring_eos),
    (4, Params(), None, plain),
], []))
print("new requests", ended(rows=5))
"""


def test_the_answer_stop_ends_each_answer_once_its_braces_balance_as_the_batch_changes():
    python = serving.vllm_python()
    if not python.exists():
        pytest.fail(f"no vLLM environment at {python}: `make setup` makes it")
    result = subprocess.run(
        [str(python), "-c", ANSWER_STOP_SCRIPT],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(serving.VLLM_PLUGINS)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "step 1 [1]",  # only the answer whose braces balance; an answer without "{" runs on, as offline
        "end forbidden []",  # never overrules what the request allows
        "swapped [0]",  # the closed answer moved to row 0 with its count
        "placeholder [0]",  # a placeholder counts as nothing ...
        "filled [0, 1]",  # ... and the token written over it counts
        "condensed [1]",  # row 0 now holds c (still open), row 1 the closed a
        "new requests [1, 4]",  # not the request that opted out, nor one that ignores the end token
    ]


def test_a_missing_llama_cpp_server_is_a_clear_error_naming_how_to_build_it(monkeypatch, tmp_path):
    monkeypatch.setenv("HARNESS_LLAMA_SERVER", str(tmp_path / "llama-server"))
    with pytest.raises(HarnessError, match=r"no llama-server at .*llama-server: run `make llama-server`"):
        serving.start_llama_server(
            tmp_path / "model.gguf", "legal-extractor", serving.ServerOptions(), log_path=tmp_path
        )


def export_champion(task, mlruns: Path, out: Path, **options) -> export.Export:
    """`harness export` of the champion (the fixed-answer v2), in the champion's stores."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HARNESS_MLRUNS", str(mlruns))
        tracking.configure()
        return export.export_version(task, alias="champion", out=out, **options)


def check_served_form(task_path: Path, mlruns: Path, form: str, path: Path, f1_at_export: float) -> None:
    """`harness serve --form FORM --check`: the export served, its answers scored and held to its own scores at
    export (not the merged model's), the registry's name served."""
    port = free_port()
    result, pid = serve(task_path, mlruns, port, "--form", form)
    try:
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"(@champion, form {form}, {path.resolve()})" in result.stdout
        assert "served vs at export" in result.stdout and "parity passes" in result.stdout
        served, at_export = f1_micro_served_and_offline(result.stdout)
        assert at_export == round(f1_at_export, 4)
        assert served == pytest.approx(at_export, abs=0.02)
        assert "answers identical" not in result.stdout  # no offline answers of the export's to compare with
        status, models = get(f"http://127.0.0.1:{port}/v1/models", "sesame")
        assert status == 200 and [m["id"] for m in models["data"]] == ["legal-extractor"]
    finally:
        stop(pid)


@pytest.mark.slow
def test_a_gptq_export_is_calibrated_served_by_vllm_scored_recorded_and_served_under_the_registry_name(
    champion, tmp_path
):
    """`harness export --format gptq` as a user types it: llm-compressor's GPTQ on the task's first 32 training
    conversations (--calibration), the checkpoint served by vLLM (its CPU int4 kernels) and sent the stored test set,
    both scores printed and recorded; then `harness serve --form w4a16-gptq --check` serves it and holds it to that
    score."""
    _, task_path, mlruns = champion
    out = tmp_path / "v2-gptq"
    command = [HARNESS, "export", str(task_path), "--alias", "champion", "--format", "gptq", "--out", str(out)]
    done = subprocess.run([*command, "--calibration", "32"], capture_output=True, text=True, timeout=900,
                          env={**os.environ, "HARNESS_MLRUNS": str(mlruns), "COLUMNS": "200"})  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"legal-extractor v2 -> {out} (" in done.stdout and "MB, w4a16)" in done.stdout
    assert "tensors: 14 int4 (groups of 128), 6 bf16" in done.stdout
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HARNESS_MLRUNS", str(mlruns))
        tracking.configure()
        record = json.loads(tracking.model_version("legal-extractor", version=2).tags["harness.export.gptq.w4a16"])
    assert record["converter"] == export.COMPRESSOR_RELEASE
    assert record["calibration_conversations"] == 32  # --calibration: the first 32 training conversations
    assert record["size_bytes"] == (out / "model.safetensors").stat().st_size
    assert f"{record['f1_micro']:.4f} from the gptq checkpoint served by vLLM" in done.stdout
    assert f"{record['merged_f1_micro']:.4f} merged" in done.stdout
    assert record["f1_micro"] > 0.1, record  # the fixed answer survives int4: the parity below can fail
    check_served_form(task_path, mlruns, "w4a16-gptq", out, record["f1_micro"])


@pytest.mark.slow
@pytest.mark.skipif(
    not (Path(sys.prefix) / "bin" / "llama-server").exists(), reason="llama-server not built (make llama-server)"
)
def test_serve_form_serves_a_gguf_export_on_llama_cpps_server(champion, tmp_path):
    task, task_path, mlruns = champion
    made = export_champion(task, mlruns, tmp_path / "v2-q8_0.gguf", quant="q8_0")
    assert made.test["f1_micro"] > 0.1, made.test
    check_served_form(task_path, mlruns, "gguf-q8_0", made.file.path, made.test["f1_micro"])


def test_checking_an_export_recorded_without_scores_is_refused_before_any_server_starts(smoke_study, smoke_store,
                                                                                        tmp_path):  # fmt: skip
    tiny = registry.materialise_version("legal-extractor", 1)
    written = export.convert_to_gguf(tiny, tmp_path / "v1-q8_0.gguf", quant="q8_0")
    record = {"file": str(written.path), "sha256": written.sha256}  # as bench/serving_forms.py records its own
    tracking.tag_model_version("legal-extractor", 1, {"harness.export.gguf.q8_0": json.dumps(record)})
    options = serving.ServerOptions(port=free_port())
    with pytest.raises(HarnessError, match=r"gguf-q8_0 export at .* was recorded without scores"):
        serving.serve_registered_form(smoke_study.task, "challenger", "gguf-q8_0", options, scored=True)
    assert not list((smoke_store / "serving").glob("*gguf-q8_0*"))  # no server was started (none logged)
