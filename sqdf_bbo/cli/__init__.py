"""``sqdf-bbo``: run a study from the shell, one call per lab step (days may pass between calls).

    sqdf-bbo init   --study DIR --prior digits [--batch-size 64 --seed 0 --method sqdf --set k=v]
    sqdf-bbo ask    --study DIR [--n 96] --out batch.csv        # + batch.npy (n, *shape) beside it
    sqdf-bbo tell   --study DIR results.csv                     # id,value[,reason,transient]; empty/nan = failed
    sqdf-bbo add    --study DIR data.csv                        # external data: x0..x{D-1},value
    sqdf-bbo fail   --study DIR --ids 3,7 [--reason TEXT] [--design-failure]   # or --ids-file CSV
    sqdf-bbo status --study DIR [--json]
    sqdf-bbo export --study DIR --out history.csv [--state pending]
    sqdf-bbo config --study DIR [--set finetune.lr=1e-4]          # show / change the settings
    sqdf-bbo bench  --suite quick --out runs/bench               # benchmarks (entry point)
    sqdf-bbo demo   --out runs/demo                              # benchmarks (entry point)

Every call loads the study, acts, and commits before it exits (see :mod:`sqdf_bbo.study.store`).
Errors print one line to stderr and exit with code 2.

Asked (and exported) CSVs carry a ``study`` column, the study's uid: ``tell`` refuses a file
whose ``study`` column names another study, and when the file has design columns
``x0..x{D-1}`` they must equal the designs asked under those ids. ``--set KEY=VALUE`` values
are parsed by the type of the config field (:func:`sqdf_bbo.config.parse_field`).

``bench`` and ``demo`` come from this repository's ``benchmarks`` package through the
``sqdf_bbo.commands`` entry points (:mod:`sqdf_bbo.cli.plugins`); the library does not import it.

Modules: :mod:`~sqdf_bbo.cli.parser` (the parser), :mod:`~sqdf_bbo.cli.commands` (the study
commands), :mod:`~sqdf_bbo.cli.studies` (what they ask of the library),
:mod:`~sqdf_bbo.cli.csvio` (CSV files in and out), :mod:`~sqdf_bbo.cli.plugins` (commands of
other packages), :mod:`~sqdf_bbo.cli.errors` (:class:`CLIError`).
"""

from __future__ import annotations

import sqlite3
import sys
import warnings
from collections.abc import Sequence

from sqdf_bbo.cli.errors import CLIError
from sqdf_bbo.cli.parser import build_parser
from sqdf_bbo.study.errors import StudyError

__all__ = ["main", "build_parser", "CLIError"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sqdf-bbo`` console script; returns the exit code.

    The package's own deprecation warnings (an old setting name in ``--set`` or in a stored
    study) are shown on stderr; Python hides a ``DeprecationWarning`` by default."""
    warnings.filterwarnings(
        "default",
        message=".*deprecated and will be removed in sqdf-bbo",
        category=DeprecationWarning,
    )
    try:
        parser = build_parser()
        args, extra = parser.parse_known_args(list(sys.argv[1:] if argv is None else argv))
        if extra and not getattr(args, "accepts_any_options", False):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        result = args.func(args)
        return int(result) if isinstance(result, int) else 0
    except CLIError as err:
        msg = str(err) if str(err).startswith("sqdf-bbo") else f"sqdf-bbo: {err}"
    except StudyError as err:
        msg = f"sqdf-bbo: {err}"
    except KeyError as err:
        msg = f"sqdf-bbo: {err.args[0] if err.args else err}"
    except (ValueError, TypeError, OSError, sqlite3.Error) as err:
        msg = f"sqdf-bbo: {err}"
    except KeyboardInterrupt:
        msg = "sqdf-bbo: interrupted (everything told before is saved)"
    print(" ".join(msg.split()), file=sys.stderr)
    return 2
