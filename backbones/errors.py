"""The one exception type for bad user input (files, keys, values).

The CLI turns it into a one-line message and exit code 2; anything else is a bug and keeps
its traceback.
"""


class UserError(Exception):
    """Bad input from the user: names the file, key or value and what was expected."""
