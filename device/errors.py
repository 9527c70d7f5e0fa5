"""The one exception type for bad user input: the CLI prints its message on one line and exits non-zero."""


class EdgedetError(Exception):
    """A problem the user can fix (bad path, bad flag, malformed file). The message names the problem."""
