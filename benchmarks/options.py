"""Command-line options shared by the grid runners: ``sqdf-bbo bench`` (:mod:`benchmarks.cli`),
``python -m benchmarks.runner`` and ``python -m benchmarks.frontier`` (one source for all).

Light on purpose (argparse only): ``sqdf-bbo`` builds its parser, ``bench`` included, on
every call.
"""

from __future__ import annotations

import argparse

__all__ = ["add_grid_arguments", "split_list"]


def add_grid_arguments(p: argparse.ArgumentParser) -> None:
    """The options every grid runner takes: sub-grid filters, local workers or a Dask
    cluster, torch threads per run, the sampler's K, progress."""
    p.add_argument("--seeds", default=None, help="comma-separated seeds, e.g. 0,1,2")
    p.add_argument("--methods", default=None, help="comma-separated method names")
    p.add_argument("--tasks", default=None, help="comma-separated task names")
    p.add_argument("--workers", type=int, default=None, help="parallel runs (default 2)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        metavar="K",
        help="DDIM sampling steps K of every prior-based method (default: the suite's, else "
        "the prior's: 20 for the shipped priors)",
    )
    p.add_argument(
        "--dask",
        default=None,
        metavar="ADDRESS|local:N",
        help="run each run as a job on this Dask scheduler (local:N: a local cluster of N "
        "processes) instead of --workers local processes",
    )
    p.add_argument("--no-progress", dest="progress", action="store_false")


def split_list(s: str | None) -> list[str] | None:
    """``"a, b,,c"`` → ``["a", "b", "c"]``; ``None`` or nothing but commas → ``None``."""
    if s is None:
        return None
    items = [p.strip() for p in str(s).split(",") if p.strip()]
    return items or None
