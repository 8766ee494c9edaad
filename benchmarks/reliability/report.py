"""Running every category, and the report: per-category table, JSON document, loud failures."""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from benchmarks.reliability.common import DEFAULT, Probe, Sizes
from benchmarks.reliability.concurrency import concurrency_probes
from benchmarks.reliability.corruption import corruption_probes
from benchmarks.reliability.hangs import hang_probes
from benchmarks.reliability.hostile import hostile_probes
from benchmarks.reliability.kills import sigkill_probes
from benchmarks.reliability.oracle_batches import oracle_batch_probes
from benchmarks.reliability.settings import settings_probes
from benchmarks.reliability.tampering import tampering_probes

CATEGORIES: dict[str, Callable[[Path, Sizes, int, Callable[[str], None]], list[Probe]]] = {
    "sigkill": sigkill_probes,
    "concurrency": concurrency_probes,
    "corruption": corruption_probes,
    "tampering": tampering_probes,
    "oracle batches": oracle_batch_probes,
    "stuck workers": hang_probes,
    "absurd settings": settings_probes,
    "hostile input": hostile_probes,
}


def run_all(
    work: Path, sizes: Sizes = DEFAULT, seed: int = 0, log: Callable[[str], None] = print
) -> list[Probe]:
    """Run every category in ``work`` (a folder that may be deleted afterwards)."""
    probes: list[Probe] = []
    for name, run in CATEGORIES.items():
        t = time.monotonic()
        log(f"{name} ...")
        folder = work / name.replace(" ", "-")
        folder.mkdir(parents=True, exist_ok=True)
        probes += run(folder, sizes, seed, log)
        log(f"  done in {time.monotonic() - t:.0f}s")
    return probes


def summarize(probes: Iterable[Probe]) -> dict[str, dict[str, Any]]:
    """Per category: probes, told values checked, lost, unexpected outcomes, outcome counts."""
    out: dict[str, dict[str, Any]] = {}
    for p in probes:
        row = out.setdefault(
            p.category,
            {"probes": 0, "checked": 0, "lost": 0, "unexpected": 0, "outcomes": Counter()},
        )
        row["probes"] += 1
        row["checked"] += p.checked
        row["lost"] += p.lost
        row["unexpected"] += not p.ok
        row["outcomes"][p.outcome] += 1
    for row in out.values():
        row["outcomes"] = dict(row["outcomes"].most_common())
    return out


def render_table(summary: Mapping[str, Mapping[str, Any]]) -> str:
    """The per-category table (Markdown)."""
    lines = [
        "| category | probes | told values checked | lost | unexpected | outcomes |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name, row in summary.items():
        outcomes = ", ".join(f"{k} {v}" for k, v in row["outcomes"].items())
        lines.append(
            f"| {name} | {row['probes']} | {row['checked']} | {row['lost']} | "
            f"{row['unexpected']} | {outcomes} |"
        )
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    """Where the probes ran."""
    return {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "sqlite": sqlite3.sqlite_version,
    }


def without_paths(probes: Iterable[Probe], places: Mapping[str, Path | None]) -> list[Probe]:
    """The probes with each folder of ``places`` written as ``<name>`` in their details."""
    out = []
    for p in probes:
        detail = p.detail
        for name, folder in places.items():
            if folder is not None:
                detail = detail.replace(str(folder), f"<{name}>")
        out.append(Probe(p.category, p.name, p.outcome, p.checked, p.lost, p.ok, detail))
    return out


def report(probes: list[Probe], args: argparse.Namespace, seconds: float) -> dict[str, Any]:
    """The JSON document of one run."""
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "args": {"kills": args.kills, "seed": args.seed, "disk_full": args.disk_full is not None},
        "seconds": round(seconds, 1),
        "summary": summarize(probes),
        "probes": [asdict(p) for p in probes],
    }


def shout(probes: Sequence[Probe]) -> int:
    """Print every lost value and unexpected outcome loudly; the exit code (0 or 1)."""
    bad = [p for p in probes if p.lost or not p.ok]
    if not bad:
        return 0
    lost = sum(p.lost for p in probes)
    print("\n" + "!" * 78, file=sys.stderr)
    print(
        f"!!! RELIABILITY FAILURE: {lost} told value(s) lost, {len(bad)} probe(s) failed",
        file=sys.stderr,
    )
    for p in bad:
        print(
            f"!!! [{p.category}] {p.name}: {p.outcome} (lost {p.lost}) {p.detail}", file=sys.stderr
        )
    print("!" * 78, file=sys.stderr)
    return 1
