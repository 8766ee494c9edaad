"""The study layer's errors (raised by the store, its folder checks and loading)."""

from __future__ import annotations

__all__ = ["StudyError", "SnapshotMissing"]


class StudyError(RuntimeError):
    """A study folder is missing, corrupted, foreign, or cannot be written."""


class SnapshotMissing(StudyError):
    """The referenced snapshot folder is gone (e.g. a writer replaced it while this process
    was reading: :meth:`~sqdf_bbo.optimizers.base.Optimizer.load` retries then)."""

    def __init__(self, message: str, name: str) -> None:
        super().__init__(message)
        self.name = name
