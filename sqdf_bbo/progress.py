"""Progress bars: the one rule for when a tqdm bar is drawn.

``progress=True`` means "show a bar where someone watches it": on a terminal
(or in a notebook, through ``tqdm.auto``). When the bar's stream is not a
terminal (a log file, a pipe, a CI job) nothing is drawn, so logs are not
filled with carriage-return redraws; this is tqdm's ``disable=None`` rule.
``progress=False`` never draws.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from tqdm import tqdm

__all__ = ["progress_bar"]

T = TypeVar("T")


def progress_bar(iterable: Iterable[T] | None = None, *, progress: bool, **kwargs: Any) -> tqdm:
    """A ``tqdm.auto`` bar over ``iterable`` (or a manual one with ``total=``).

    Args:
        iterable: what to iterate over; ``None`` for a bar advanced with ``update``.
        progress: ``True``: draw when the output stream (``file=``, default
            stderr) is a terminal or in a notebook; ``False``: never draw.
        **kwargs: other tqdm arguments (``desc``, ``total``, ``leave``, ``unit``…);
            not ``disable``, which this function decides.

    Returns:
        The tqdm bar; a disabled bar still iterates and accepts ``update``,
        ``set_postfix`` and ``close``.
    """
    if "disable" in kwargs:
        raise TypeError("progress_bar decides 'disable' from 'progress'; do not pass it")
    from tqdm.auto import tqdm  # lazy: tqdm.auto probes for IPython on import

    return tqdm(iterable, disable=None if progress else True, **kwargs)
