"""The one error type users see: a message that says what was wrong, where, and what was expected."""


class HarnessError(Exception):
    """A problem with the user's input or environment, reported without a stack trace."""


class TrialStopped(Exception):
    """Training was stopped on request (the search pruned the trial): not a failure, and not a finished trial."""
