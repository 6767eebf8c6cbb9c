"""User-facing errors: one actionable line, shown by the CLI (exit 2) and by widgets without a traceback."""
from __future__ import annotations


class WorkbenchError(Exception):
    """Bad input or an impossible request; the message alone tells the user what to fix."""


class CheckFailed(WorkbenchError):
    """A check ran and the model did not pass it (CLI exit 1)."""


def one_line(exc: BaseException) -> str:
    """An exception's whole message on one line (runtimes put the useful part on later lines); its type when it
    has no message."""
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return text or type(exc).__name__
