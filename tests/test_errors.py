"""What users read of errors: a URL never with its password; a failure of the machine in one line."""

import errno

import pytest
import torch

from harness.errors import describe_machine_failure, without_password

pytestmark = pytest.mark.fast  # the fast tier: no process started, no training (make test-fast)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://harness:s3cret@db:5432/optuna", "postgresql://harness:***@db:5432/optuna"),
        ("postgresql://db/optuna?user=harness&password=s3cret&sslmode=require",
         "postgresql://db/optuna?user=harness&password=***&sslmode=require"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("mlruns/optuna-journal.log", "mlruns/optuna-journal.log"),
    ],
)  # fmt: skip
def test_a_url_is_shown_without_its_password(url, shown):
    assert without_password(url) == shown
    assert "s3cret" not in without_password(url)


def test_a_full_disk_is_one_line_naming_the_file_and_what_to_do():
    full = OSError(errno.ENOSPC, "No space left on device", "/tmp/harness-adapter-x/adapter/adapter_model.safetensors")
    assert describe_machine_failure(RuntimeError("saving failed")) is None  # not the machine's: keeps its traceback
    try:
        try:
            raise full
        except OSError as cause:
            raise RuntimeError("could not save the adapter") from cause
    except RuntimeError as error:
        message = describe_machine_failure(error)
    assert message is not None
    assert message.startswith("no space left on the device writing /tmp/harness-adapter-x/adapter/adapter_model")
    assert "TMPDIR" in message and "HARNESS_MLRUNS" in message


def test_a_full_disk_reported_by_a_library_in_its_own_words_is_recognised():
    # safetensors (Rust) and SQLite say it without an OSError
    rust = Exception("Error while serializing: I/O error: No space left on device (os error 28)")
    assert describe_machine_failure(rust).startswith("no space left on the device (Error while serializing")
    assert describe_machine_failure(Exception("(sqlite3.OperationalError) database or disk is full")) is not None


def test_an_unwritable_directory_is_one_line():
    denied = PermissionError(errno.EACCES, "Permission denied", "/srv/mlruns/artifacts")
    assert describe_machine_failure(denied) == (
        "cannot write /srv/mlruns/artifacts: Permission denied; make it writable or point harness elsewhere"
    )


def test_a_gpu_out_of_memory_is_one_line_saying_what_to_change():
    error = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 39.39 GiB total capacity)")
    message = describe_machine_failure(RuntimeError("training failed")) or ""
    assert message == ""  # not the machine's
    message = describe_machine_failure(error)
    assert message.startswith("out of GPU memory (CUDA out of memory. Tried to allocate 2.00 GiB")
    assert "budget.gradient_checkpointing" in message and "harness plan" in message
