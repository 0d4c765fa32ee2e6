"""The one exception type for bad user input (files, keys, values).

The CLI turns it into a one-line message and exit code 2; anything else is a bug and keeps
its traceback.
"""


class UserError(Exception):
    """Bad input from the user: names the file, key or value and what was expected."""


class RunStopped(RuntimeError):
    """A run stopped itself on purpose (e.g. a non-finite loss); the CLI prints the one-line
    message and exits with code 1."""


class DataWarning(UserWarning):
    """A data problem that was worked around (a skipped image, a clipped box); one line."""
