"""The ``sqdf-bbo`` argument parser: the study commands, then the commands of other packages
(:mod:`sqdf_bbo.cli.plugins`). A parse error is one line
(:class:`~sqdf_bbo.cli.errors.CLIError`)."""

from __future__ import annotations

import argparse

from sqdf_bbo.cli.commands import (
    cmd_add,
    cmd_ask,
    cmd_config,
    cmd_export,
    cmd_fail,
    cmd_init,
    cmd_status,
    cmd_tell,
)
from sqdf_bbo.cli.errors import CLIError
from sqdf_bbo.cli.plugins import Command, discover
from sqdf_bbo.optimizers import Optimizer

__all__ = ["build_parser"]

STUDY_COMMANDS = ("init", "ask", "tell", "add", "fail", "status", "export", "config")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        raise CLIError(f"{self.prog}: {message}")


def _seed(text: str) -> int:
    try:
        seed = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    try:
        return Optimizer.check_seed(seed)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _box(text: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH (e.g. -3,3), got {text!r}") from None
    return low, high


def _add_plugin(sub: argparse._SubParsersAction, name: str, command: Command) -> None:
    sp = sub.add_parser(name, help=command.help)
    command.add_arguments(sp)
    sp.set_defaults(func=command.run)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="sqdf-bbo",
        description="Online black-box optimization with SQDF-fine-tuned diffusion priors.",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def study_arg(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--study", required=True, metavar="DIR", help="study folder")

    sp = sub.add_parser("init", help="create a study folder")
    study_arg(sp)
    sp.add_argument(
        "--prior", required=True, help="embedded prior name (digits, rings) or a saved prior folder"
    )
    sp.add_argument("--batch-size", type=int, default=64)
    sp.add_argument("--seed", type=_seed, default=0, help="integer in [0, 2**62)")
    sp.add_argument("--method", default="sqdf", help="optimizer (default sqdf)")
    sp.add_argument("--device", default="cpu")
    sp.add_argument(
        "--box", type=_box, default=None, help="box of box methods (gp-bo), written --box=LOW,HIGH"
    )
    sp.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="a field of the method's config (SQDFOptimizerConfig for sqdf), parsed by its "
        "type: true/false, numbers, none, JSON for mappings; repeatable",
    )
    sp.set_defaults(func=cmd_init)

    sp = sub.add_parser("ask", help="propose designs; write CSV (+ .npy beside it)")
    study_arg(sp)
    sp.add_argument(
        "--n", type=int, default=None, help="number of designs (default: the study's batch size)"
    )
    sp.add_argument("--out", default="batch.csv", help="CSV file (default batch.csv)")
    sp.add_argument(
        "--conditions",
        default=None,
        help="a conditional prior's conditions, comma-separated and cycled over the batch: "
        "class labels (0,1,2) or prompts (a cat,a dog); written as a condition column",
    )
    sp.set_defaults(func=cmd_ask)

    sp = sub.add_parser("tell", help="report values from a CSV with columns id,value")
    study_arg(sp)
    sp.add_argument(
        "results",
        help="CSV with columns id,value (empty or nan = failed: a design failure); optional "
        "reason and transient (true: the failure says nothing about the design) columns for "
        "failed rows; optional study and x0.. columns (as asked) are checked against the study",
    )
    sp.set_defaults(func=cmd_tell)

    sp = sub.add_parser(
        "add", help="add external observations, e.g. an archive (CSV: x0..x{D-1},value)"
    )
    study_arg(sp)
    sp.add_argument(
        "data",
        help="CSV with columns x0..x{D-1} and value, as in an asked batch (empty or nan = "
        "failed: a design failure); optional reason and transient columns for failed rows; "
        "an optional study column is checked against the study; the next ask is fine-tuned "
        "against these points (docs/offline.md)",
    )
    sp.add_argument(
        "--from-export",
        action="store_true",
        help="DATA is sqdf-bbo export output of another study (warm start from it): its "
        "study column is not checked, pending rows are skipped, failed rows stay failed",
    )
    sp.set_defaults(func=cmd_add)

    sp = sub.add_parser("fail", help="mark pending or complete points failed")
    study_arg(sp)
    which = sp.add_mutually_exclusive_group(required=True)
    which.add_argument("--ids", help="comma-separated ids, e.g. 3,7,9")
    which.add_argument("--ids-file", metavar="CSV", help="CSV with an id column")
    sp.add_argument("--reason", default="", help="why (shown in history's reason column)")
    sp.add_argument(
        "--design-failure",
        action="store_true",
        help="the designs themselves failed (infeasible); default: a transient failure that "
        "says nothing about the design (a mistake, a lost sample, a bad assay)",
    )
    sp.set_defaults(func=cmd_fail)

    sp = sub.add_parser("status", help="rounds, counts and best value")
    study_arg(sp)
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_status)

    sp = sub.add_parser("export", help="write points (designs, values, states) to CSV")
    study_arg(sp)
    sp.add_argument("--out", required=True)
    sp.add_argument("--state", choices=("pending", "complete", "failed"), default=None)
    sp.set_defaults(func=cmd_export)

    sp = sub.add_parser("config", help="show a study's settings, or change them (--set)")
    study_arg(sp)
    sp.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="change a setting of the study's config (as for init; recorded in the study "
        "with the time and the old value); repeatable. Without --set: print the settings "
        "and every recorded change as JSON",
    )
    sp.set_defaults(func=cmd_config)

    for name, command in discover(reserved=STUDY_COMMANDS).items():
        _add_plugin(sub, name, command)
    return p
