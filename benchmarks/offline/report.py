"""Tables of the offline benchmark (docs/offline.md, README): ``python -m
benchmarks.offline.report docs/results/offline`` prints them as Markdown and writes
``summary.md`` beside the CSVs."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pandas as pd

from benchmarks.offline.methods import OFFLINE_METHODS

__all__ = ["offline_table", "per_seed_table", "queries_to_reach", "online_table", "main"]


def _cell(values: pd.Series, digits: int = 2) -> str:
    v = values.dropna().to_numpy(dtype=float)
    if not len(v):
        return "–"
    if len(v) == 1:
        return f"{v[0]:.{digits}f}"
    return f"{v.mean():.{digits}f} ± {v.std(ddof=0):.{digits}f}"


def offline_table(
    frame: pd.DataFrame, columns: tuple[str, ...] = ("p100", "p50", "natural_frac", "vendi")
) -> str:
    """One row per method, for each task the mean ± std over seeds of ``columns``."""
    tasks = list(dict.fromkeys(frame["task"]))
    cols = list(columns)
    head = ["method"] + [f"{t} {c}" for t in tasks for c in cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method in [m for m in OFFLINE_METHODS if m in set(frame["method"])]:
        cells = [method]
        for t in tasks:
            sub = frame[(frame["task"] == t) & (frame["method"] == method)]
            cells += [_cell(sub[c]) for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def per_seed_table(frame: pd.DataFrame) -> str:
    """Every seed: one row per task and seed, ``p100 / p50`` of every method."""
    methods = [m for m in OFFLINE_METHODS if m in set(frame["method"])]
    lines = ["| task | seed | " + " | ".join(methods) + " |", "|" + "---|" * (len(methods) + 2)]
    for (task, seed), sub in frame.groupby(["task", "seed"], sort=False):
        by = sub.set_index("method")
        cells = [f"{by.loc[m, 'p100']:.2f} / {by.loc[m, 'p50']:.2f}" for m in methods]
        lines.append(f"| {task} | {int(seed)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def queries_to_reach(online: pd.DataFrame, task: str, seed: int, archive_best: float):
    """(queries the warm study needs to reach the cold study's final best, that best): the
    smallest q ∈ {0, 128, …} with the warm best (the visible archive's best,
    ``archive_best``, included: q = 0 when it is already as good) ≥ the cold best after its
    last round; NaN when never reached. All values normalized."""
    sub = online[(online["task"] == task) & (online["seed"] == seed)]
    cold = sub[sub["start"] == "cold"].sort_values("round")
    warm = sub[sub["start"] == "warm"].sort_values("round")
    target = float(cold["best"].iloc[-1])
    if archive_best >= target:
        return 0.0, target
    for q, best in zip(warm["queries"], warm["with_archive"]):
        if best >= target:
            return float(q), target
    return math.nan, target


def online_table(online: pd.DataFrame, offline: pd.DataFrame) -> str:
    """Per task and seed: the cold final best, the warm best after its first batch and at
    the end, and the queries the warm study needed to reach the cold final best."""
    lines = [
        "| task | seed | archive best (visible) | cold best (512 q.) | warm best (128 q.) | "
        "warm best (512 q.) | queries to reach cold's final best |",
        "|---|---|---|---|---|---|---|",
    ]
    for (task, seed), sub in online.groupby(["task", "seed"], sort=False):
        seen = offline[(offline["task"] == task) & (offline["seed"] == seed)]["best_visible"]
        q, target = queries_to_reach(online, task, int(seed), float(seen.iloc[0]))
        warm = sub[sub["start"] == "warm"].sort_values("round")
        reach = "not reached" if math.isnan(q) else f"{int(q)}"
        lines.append(
            f"| {task} | {int(seed)} | {float(seen.iloc[0]):.3f} | {target:.3f} | {warm['with_archive'].iloc[0]:.3f} | "
            f"{warm['with_archive'].iloc[-1]:.3f} | {reach} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", nargs="?", default="docs/results/offline")
    args = p.parse_args(argv)
    folder = Path(args.folder)
    frame = pd.read_csv(folder / "offline.csv")
    parts = [
        "## Offline batch: normalized percentiles, natural share, Vendi",
        offline_table(frame),
        "\n## Valid share of the batch",
        offline_table(frame, ("valid_frac",)),
        "\n## Every seed: p100 / p50",
        per_seed_table(frame),
    ]
    if (folder / "online.csv").exists():
        parts += [
            "\n## Online continuation",
            online_table(pd.read_csv(folder / "online.csv"), frame),
        ]
    text = "\n\n".join(parts) + "\n"
    (folder / "summary.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
