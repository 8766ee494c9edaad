"""The ``sqdf-bbo bench`` and ``sqdf-bbo demo`` commands, added to the library's CLI through the
``sqdf_bbo.commands`` entry points (``pyproject.toml``; :mod:`sqdf_bbo.cli.plugins`).

The options are declared here (the grid options once, :mod:`benchmarks.options`, shared with
``python -m benchmarks.runner`` and ``python -m benchmarks.frontier``). ``sqdf-bbo`` builds its
parser on every call, ``ask`` and ``tell`` included, so it imports this module every time; the
runner and the demo are imported at the top all the same: the library's CLI has already
imported torch and pandas, and they add about 25 ms to its 1.2 s (``python -X importtime``).
"""

from __future__ import annotations

import argparse
from importlib.util import find_spec

from benchmarks import demo, runner
from benchmarks.options import add_grid_arguments
from sqdf_bbo.cli.errors import CLIError
from sqdf_bbo.cli.plugins import EXPECTED, Command

__all__ = ["BENCH_SUITES", "bench_command", "demo_command"]

BENCH_SUITES = ("smoke", "quick", "paper")  # the suites sqdf-bbo bench offers


def add_bench_arguments(p: argparse.ArgumentParser) -> None:
    """``sqdf-bbo bench`` options: the suite, the output folder and the grid options."""
    p.add_argument("--suite", choices=BENCH_SUITES, default="quick")
    p.add_argument("--out", default="runs/bench")
    add_grid_arguments(p)


def run_bench(args: argparse.Namespace) -> int:
    """Run ``sqdf-bbo bench`` (:func:`benchmarks.runner.bench_cli`)."""
    if getattr(args, "dask", None) and find_spec("distributed") is None:
        raise CLIError('--dask needs the optional dependency dask: pip install -e ".[dask]"')
    return runner.bench_cli(args)  # looked up when called (tests patch runner.bench_cli)


def run_demo(args: argparse.Namespace) -> int:
    """Run ``sqdf-bbo demo`` (:func:`benchmarks.demo.demo_cli`)."""
    return demo.demo_cli(args)


bench_command = Command(EXPECTED["bench"], add_bench_arguments, run_bench)
demo_command = Command(EXPECTED["demo"], demo.add_demo_arguments, run_demo)
