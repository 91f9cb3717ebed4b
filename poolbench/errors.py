"""The two kinds of failure a user sees: their mistake (exit 2) and a run that failed (exit 1).

Both carry one sentence that names the fix; the CLI prints it without a traceback unless
`--debug` is given.
"""


class PoolbenchError(Exception):
    exit_code = 1


class UsageError(PoolbenchError):
    """Bad input: unknown name, bad value, malformed override, missing files."""

    exit_code = 2


class RunError(PoolbenchError):
    """A run that started and could not finish (diverged, data unreadable, ...)."""

    exit_code = 1
