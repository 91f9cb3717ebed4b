"""The two kinds of failure a user sees: their mistake (exit 2) and a run that failed (exit 1).

Both carry one sentence that names the fix; the CLI prints it without a traceback unless
`--debug` is given.
"""

from __future__ import annotations

import errno


class PoolbenchError(Exception):
    exit_code = 1


class UsageError(PoolbenchError):
    """Bad input: unknown name, bad value, malformed override, missing files."""

    exit_code = 2


class RunError(PoolbenchError):
    """A run that started and could not finish (diverged, data unreadable, ...)."""

    exit_code = 1


def first_line(err: BaseException | str | None, default: str = "") -> str:
    """The first line of an error's text (or of its cause, where libraries such as Hydra keep
    the reason), for one-sentence messages; `default` (or the type name) when it has none."""
    if isinstance(err, BaseException):
        text = str(err).strip()
        if not text and err.__cause__ is not None:
            return first_line(err.__cause__, default)
        return text.splitlines()[0] if text else (default or type(err).__name__)
    text = str(err or "").strip()
    return text.splitlines()[0] if text else default


NO_SPACE = "unexpected pos"  # torch.save's text when the disk fills mid-write (no OSError is raised)


def write_failure(err: BaseException, path) -> PoolbenchError | None:
    """One sentence for a file poolbench could not write (`path`): a full disk (RunError: free space,
    then resume) or a folder it may not write to (UsageError: choose another). None for other errors."""
    if (isinstance(err, OSError) and err.errno == errno.ENOSPC) or NO_SPACE in str(err):
        return RunError(f"Cannot write {path}: the disk is full; free some space (or write elsewhere), "
                        "then run again (an interrupted run continues with train.resume=RUN_DIR).")
    if isinstance(err, OSError) and err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        reason = "the file system is read-only" if err.errno == errno.EROFS else "permission denied"
        return UsageError(f"Cannot write {path} ({reason}): choose a folder you can write to "
                          "(hydra.run.dir=..., hydra.sweep.dir=..., or compare -o ...).")
    return None
