"""The one error type users see: a message that says what was wrong, where, and what was expected; and what of a
URL may appear in a message or a log."""

import re


class HarnessError(Exception):
    """A problem with the user's input or environment, reported without a stack trace."""


class TrialStopped(Exception):
    """Training was stopped on request (the search pruned the trial): not a failure, and not a finished trial."""


def without_password(url: str) -> str:
    """URLs may carry credentials (postgresql://user:secret@host/db, ...?password=secret): never print or log
    the secret."""
    url = re.sub(r"([?&]password=)[^&]*", r"\1***", url, flags=re.IGNORECASE)
    if "://" not in url or "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"
