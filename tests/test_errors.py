"""What of a URL may be printed or logged: never its password."""

import pytest

from harness.errors import without_password


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
