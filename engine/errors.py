"""Bad input, a run that stopped itself, a data problem worked around: two exceptions, one warning.

The CLI turns a :class:`UserError` into a one-line message and exit code 2, and a
:class:`RunStopped` into one line and exit code 1; anything else is a bug and keeps its
traceback. A :class:`DataWarning` (one line) says what was worked around; the work goes on.
"""


class UserError(Exception):
    """Bad input from the user: names the file, key or value and what was expected."""


class RunStopped(RuntimeError):
    """A run stopped itself on purpose (e.g. a non-finite loss); the CLI prints the one-line
    message and exits with code 1."""


class DataWarning(UserWarning):
    """A data problem that was worked around (a skipped image, a clipped box); one line."""
