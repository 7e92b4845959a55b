"""The one error type users see: a message that says what was wrong, where, and what was expected; and what of a
URL may appear in a message or a log."""

import errno
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


# Failures of the machine rather than of harness: said in one line with what to do, not as a stack trace.
_DISK_FULL = re.compile(r"No space left on device|Disk quota exceeded|database or disk is full|StorageFull")
# torch.OutOfMemoryError's message on a GPU (the class is torch's, matched by name: this module imports no torch).
_GPU_OUT_OF_MEMORY = re.compile(r"CUDA out of memory|CUDA error: out of memory")


def causes(error: BaseException) -> list[BaseException]:
    """The error and every error it was raised from or while handling, outermost first."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def describe_machine_failure(error: BaseException) -> str | None:
    """A full disk, a directory harness may not write or a GPU out of memory, as one line saying where and what to
    do; None for any other error (a bug keeps its traceback)."""
    for cause in causes(error):
        where = getattr(cause, "filename", None)
        at = f" writing {where}" if where else ""
        if (isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT)) or _DISK_FULL.search(
            str(cause)
        ):
            return (
                f"no space left on the device{at} ({_first_line(cause)}): free some space, or put the work"
                " elsewhere (TMPDIR for temporary files such as adapters being saved, HARNESS_MLRUNS for runs"
                " and models)"
            )
        if type(cause).__name__ == "OutOfMemoryError" or _GPU_OUT_OF_MEMORY.search(str(cause)):
            return (
                f"out of GPU memory ({_first_line(cause)}): turn on budget.gradient_checkpointing, lower"
                " budget.micro_batch_size or max_seq_length, or quantize (nf4); `harness plan TASK --gpu ...` shows"
                " what fits"
            )
        if isinstance(cause, OSError) and cause.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return f"cannot write {where or 'a file'}: {cause.strerror}; make it writable or point harness elsewhere"
    return None


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__
