"""User-facing errors.

A :class:`DiffcommError` is an error the user can fix (bad input, missing data, bad config).
Its message is one line that says what is wrong and how to fix it; the CLI prints it without a
traceback and exits with status 2.
"""


class DiffcommError(ValueError):
    """A user error with a one-line, actionable message."""
