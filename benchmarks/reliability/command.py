"""The command line ``python -m benchmarks.reliability`` (and its ``--child ROLE`` form)."""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from benchmarks.reliability.common import KILLS, Sizes
from benchmarks.reliability.disk_full import check_disk_full_dir, disk_full_probes
from benchmarks.reliability.report import (
    machine,
    render_table,
    report,
    run_all,
    shout,
    without_paths,
)
from benchmarks.reliability.roles import run_child

DESCRIPTION = (
    "Reliability probes of study folders (issue 8): run them, count them, and check that "
    "nothing told is lost."
)


# ---------------------------------------------------------------------------- entry point
def build_parser() -> argparse.ArgumentParser:
    """Command line of ``python -m benchmarks.reliability``."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.reliability", description=DESCRIPTION)
    p.add_argument("--kills", type=int, default=KILLS, help=f"SIGKILL points (default {KILLS})")
    p.add_argument("--seed", type=int, default=0, help="seed of kill points and values")
    p.add_argument("--out", type=Path, default=None, help="write the JSON report here")
    p.add_argument("--workdir", type=Path, default=None, help="keep the probe folders here")
    p.add_argument(
        "--disk-full",
        type=Path,
        default=None,
        metavar="DIR",
        help="also run the disk-full probes in DIR, an empty folder on a small filesystem "
        "(e.g. mount -t tmpfs -o size=2m tmpfs DIR); they fill it",
    )
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("child_args", nargs="*", help=argparse.SUPPRESS)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the probes, print the table, write the JSON; exit 1 if anything was lost."""
    args = build_parser().parse_args(argv)
    if args.child is not None:
        return run_child(args.child, args.child_args)
    torch.set_num_threads(1)
    if args.disk_full is not None:
        check_disk_full_dir(args.disk_full)  # before the long part, not after it
    sizes = Sizes(kills=args.kills)
    t = time.monotonic()
    with contextlib.ExitStack() as stack:
        work = args.workdir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="sqdf-reliability-"))
        )
        work.mkdir(parents=True, exist_ok=True)
        work = work.absolute()  # the store writes absolute paths into its messages
        probes = without_paths(run_all(work, sizes, args.seed), {"work": work})
    if args.disk_full is not None:
        print("disk full ...")
        probes += without_paths(disk_full_probes(args.disk_full), {"disk-full": args.disk_full})
    doc = report(probes, args, time.monotonic() - t)
    print()
    print(render_table(doc["summary"]))
    print(f"\n{len(probes)} probes in {doc['seconds']:.0f}s on {machine()['cpus']} CPUs")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {args.out}")
    return shout(probes)
