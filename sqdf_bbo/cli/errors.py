"""The CLI's one error type: a user-facing message printed as one line, exit code 2."""

from __future__ import annotations

__all__ = ["CLIError"]


class CLIError(Exception):
    """A user-facing error: printed as one line, exit code 2."""
