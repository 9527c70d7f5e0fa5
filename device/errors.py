"""The one exception type for bad user input: the CLI prints its message on one line and exits non-zero."""


class EdgedetError(Exception):
    """A problem the user can fix (bad path, bad flag, malformed file). The message names the problem."""


def first_line(error: Exception) -> str:
    """The first line (at most 300 characters) of an exception's text, for a one-line EdgedetError."""
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:300]
