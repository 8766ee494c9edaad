"""Commands that other packages add to ``sqdf-bbo``: the ``sqdf_bbo.commands`` entry points.

A package declares, in its ``pyproject.toml``::

    [project.entry-points."sqdf_bbo.commands"]
    bench = "benchmarks.cli:bench_command"

and the named object is a :class:`Command`: its help line, a function adding its options to
its subparser, and the function running it. This repository's ``benchmarks`` package adds
``bench`` and ``demo`` this way (:mod:`benchmarks.cli`); the library never imports it.

``bench`` and ``demo`` (``EXPECTED``) are listed even where no package provides them (the
library installed without this repository's ``benchmarks``): calling one then exits with one
line saying so. A command whose entry point fails to load says why when it is called; the
other commands work as usual.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

from sqdf_bbo.cli.errors import CLIError

__all__ = ["GROUP", "EXPECTED", "Command", "discover", "unavailable"]

GROUP = "sqdf_bbo.commands"

#: Commands this repository's ``benchmarks`` package provides, with their help lines.
EXPECTED = {
    "bench": "run a benchmark suite (benchmarks.runner)",
    "demo": "the digits demo (benchmarks.demo)",
}


@dataclass(frozen=True)
class Command:
    """One command added through the ``sqdf_bbo.commands`` entry points.

    Attributes:
        help: the line shown by ``sqdf-bbo --help``.
        add_arguments: adds the command's options to its subparser.
        run: runs it with the parsed options; returns the exit code (``None``: 0).
    """

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int | None]


def _entry_points() -> Iterable[EntryPoint]:
    return entry_points(group=GROUP)


def unavailable(name: str, why: str) -> Command:
    """A stand-in for a command that cannot run here: any options (``main`` lets its unknown
    options through), then one error line."""

    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.set_defaults(accepts_any_options=True)

    def run(args: argparse.Namespace) -> int:
        raise CLIError(f"'{name}' {why}")

    return Command(EXPECTED.get(name, f"unavailable ({why})"), add_arguments, run)


def _load(ep: EntryPoint) -> Command:
    """The entry point's :class:`Command`, or a stand-in saying why it cannot be loaded."""
    module = ep.value.partition(":")[0].strip()
    try:
        found = ep.load()
    except ModuleNotFoundError as err:
        if err.name and (module == err.name or module.startswith(err.name + ".")):
            return unavailable(
                ep.name,
                f"needs {module} ({module.replace('.', '/')}.py), which is not available in "
                "this installation",
            )
        return unavailable(ep.name, f"could not be loaded from {ep.value}: {err}")
    except (ImportError, AttributeError) as err:
        return unavailable(ep.name, f"could not be loaded from {ep.value}: {err}")
    if not isinstance(found, Command):
        return unavailable(ep.name, f"needs {ep.value} to be a sqdf_bbo.cli.plugins.Command")
    return found


def discover(reserved: Iterable[str] = ()) -> dict[str, Command]:
    """Every command of the entry points (the first of a name; ``reserved`` names skipped),
    after stand-ins for the ``EXPECTED`` ones that no package provides, in that order."""
    found: dict[str, EntryPoint] = {}
    for ep in _entry_points():
        if ep.name not in found and ep.name not in set(reserved):
            found[ep.name] = ep  # an editable install may list its entry points twice
    missing = (
        "needs the benchmarks package (the sqdf_bbo.commands entry points of this repository), "
        "which is not available in this installation (pip install -e . in the repository "
        "declares them)"
    )
    out = {
        name: _load(found[name]) if name in found else unavailable(name, missing)
        for name in EXPECTED
    }
    out.update({name: _load(ep) for name, ep in sorted(found.items()) if name not in out})
    return out
