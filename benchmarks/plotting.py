"""Matplotlib for the benchmarks' figures: :func:`pyplot` selects the Agg backend (files only,
no display) once and returns ``matplotlib.pyplot``.

Every function that draws a figure calls it instead of importing matplotlib itself, so
matplotlib is imported only by the commands that draw.
"""

from __future__ import annotations

from functools import cache
from types import ModuleType

__all__ = ["pyplot"]


@cache
def pyplot() -> ModuleType:
    """``matplotlib.pyplot`` with the Agg backend selected (before pyplot is first imported)."""
    import matplotlib  # lazy: slow to import, needed only by the functions that draw figures

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: as above, after the backend is chosen

    return plt
