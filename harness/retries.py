"""One retry policy for every call that may fail for a moment and then succeed: workers racing to create a
database's tables, a tracking store whose lock lifts, a server still starting. tenacity does the looping; each
caller says what it retries, for how long and how often, and what a last failure means."""

from __future__ import annotations

from collections.abc import Iterator

from tenacity import (
    AttemptManager,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_fixed,
    wait_incrementing,
)


def attempts(
    *,
    retry_on: tuple[type[BaseException], ...],
    tries: int | None = None,
    seconds: float | None = None,
    wait_seconds: float = 1.0,
    wait_growth: float = 0.0,
) -> Iterator[AttemptManager]:
    """Attempts of a block: `for attempt in attempts(...): with attempt: ...` runs it until it does not raise
    `retry_on`, for at most `tries` attempts or `seconds`, waiting `wait_seconds` (plus `wait_growth` more after
    each failure) in between. Any other exception ends it at once; after the last attempt its exception is raised
    as it was, for the caller to say what it means."""
    if tries is None and seconds is None:
        raise ValueError("give tries or seconds: a retry without a bound would never give up")
    stop = stop_after_attempt(tries) if tries is not None else stop_after_delay(seconds or 0.0)
    wait = wait_incrementing(start=wait_seconds, increment=wait_growth) if wait_growth else wait_fixed(wait_seconds)
    return iter(Retrying(stop=stop, wait=wait, retry=retry_if_exception_type(retry_on), reraise=True))
