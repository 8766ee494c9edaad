"""The airfoil results table: raw vs validated L/D per method, from an ``airfoil`` suite run.

``python -m benchmarks.airfoil_table --runs runs/airfoil runs/airfoil-es --out
docs/results/airfoil`` reads ``<runs>/runs/airfoil-ld/<method>/seed<k>/rounds.csv`` of every
finished run (methods of the ``airfoil-es`` suite are labelled ``cma-es (airfoil-es)``) and
writes, per method (mean ± SE over seeds, after the same number of queries):

==========================  ============================================================
``best L/D``                best oracle value so far (xlarge L/D of a valid design)
``batch L/D``               last batch's mean xlarge L/D over its valid designs
``best validated``          best validated L/D so far: max over rounds of the batch
                            maximum of the xxxlarge L/D where its confidence > 0.9 and the
                            geometry is valid (0 elsewhere)
``batch validated``         last batch's mean validated L/D (invalid / unconfident = 0)
``conf > 0.9``              last batch's share with xxxlarge confidence > 0.9
``valid``                   last batch's share of valid geometry (t_max ≥ 0.12, no crossing)
``natural``                 last batch's share above the held-out 5th percentile of the
                            PCA×GMM density of the training Kulfan vectors
``Vendi``                   last batch's Vendi score (RBF, fixed held-out bandwidth)
==========================  ============================================================

Judged by XFoil (runs made since the airfoil tasks judge their 10 best designs,
:mod:`benchmarks.xfoil_judge`), per condition (α 5°, Re 1e6 and α 2°, Re 5e5):

==========================  ============================================================
``XFoil best``              best XFoil L/D among the run's 10 best designs by its own values
``XFoil mean``              mean XFoil L/D of those 10 (those XFoil converged on)
``XFoil conv``              share of the 10 that XFoil converged on
``NeuralFoil best``         best NeuralFoil (xlarge) L/D of the same 10
``NF − XFoil``              mean NeuralFoil − XFoil L/D over the converged
==========================  ============================================================

with the best database airfoil by XFoil at each condition as the reference row
(:func:`benchmarks.xfoil_database.database_best`).

Files: ``airfoil_table.md``, ``airfoil_table.csv`` (per method) and
``airfoil_runs.csv`` (per run), ``airfoil_curves.png`` (best raw and best validated L/D
and the confident share vs queries), and with XFoil columns ``xfoil_table.md``.
``--task airfoil-ld-a2`` (or ``airfoil-xfoil``) tabulates that task instead.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.plotting import pyplot
from benchmarks.suites import method_names
from benchmarks.xfoil_database import database_best
from benchmarks.xfoil_judge import CONDITIONS

__all__ = ["per_run", "per_method", "markdown", "markdown_xfoil", "plot_curves", "main"]

TASK = "airfoil-ld"
REFERENCE_LD = 189.7  # best database airfoil with t_max >= 0.12 and confidence > 0.9 (fx76mp120)

_COLUMNS = [
    ("best_ld", "best L/D", 1),
    ("batch_ld", "batch L/D", 1),
    ("best_validated", "best validated", 1),
    ("batch_validated", "batch validated", 1),
    ("conf_frac", "conf > 0.9", 2),
    ("valid_frac", "valid", 2),
    ("natural_frac", "natural", 2),
    ("vendi", "Vendi", 2),
    ("wall_s", "optimizer s", 0),
]
_XFOIL_COLUMNS = [
    (f"{key}_{c.label}", f"{label} ({c.describe()})", digits)
    for c in CONDITIONS
    for key, label, digits in (
        ("nf_best", "NeuralFoil best", 1),
        ("xfoil_best", "XFoil best", 1),
        ("xfoil_mean", "XFoil mean", 1),
        ("xfoil_conv", "XFoil conv", 2),
        ("nf_gap", "NF − XFoil", 1),
    )
]


def _rounds(runs: list[Path], task: str = TASK) -> pd.DataFrame:
    """All finished runs' rows; a run of another suite than ``airfoil`` is labelled
    ``<method> (<suite>)`` (e.g. ``cma-es (airfoil-es)``)."""
    frames = []
    for root in runs:
        for f in sorted((root / "runs" / task).glob("*/seed*/rounds.csv")):
            done = f.parent / "done.json"
            if not done.is_file():
                continue
            suite = json.loads(done.read_text()).get("suite", "airfoil")
            df = pd.read_csv(f)
            if suite != "airfoil":
                df["method"] = df["method"] + f" ({suite})"
            frames.append(df)
    if not frames:
        raise FileNotFoundError(f"no finished {task} runs under {[str(r) for r in runs]}")
    return pd.concat(frames, ignore_index=True)


def per_run(rounds: pd.DataFrame) -> pd.DataFrame:
    """One row per (method, seed): the table's numbers after its last round."""
    rows = []
    for (method, seed), r in rounds.groupby(["method", "seed"], sort=False):
        r = r.sort_values("round")
        last = r.iloc[-1]
        rows.append(
            {
                "method": method,
                "seed": int(seed),
                "queries": int(last["queries"]),
                "best_ld": float(last["best_so_far"]),
                "batch_ld": float(last["reward_mean"]),
                "best_validated": float(r["validated_ld_max"].max()),
                "batch_validated": float(last["validated_ld_mean"]),
                "conf_frac": float(last["conf_frac"]),
                "valid_frac": float(last["valid_frac"]),
                "natural_frac": float(last["natural_frac"]),
                "vendi": float(last["vendi"]),
                "wall_s": float(last["wall_s"]),
                **{key: float(last[key]) for key, _, _ in _XFOIL_COLUMNS if key in last.index},
            }
        )
    return pd.DataFrame(rows)


def per_method(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard error over seeds (``<col>_mean``, ``<col>_se``) per method."""
    g = runs.groupby("method", sort=False)
    out = g[["queries"]].min()
    out["n_seeds"] = g["seed"].nunique()
    for key, _, _ in _COLUMNS + _XFOIL_COLUMNS:
        if key not in runs:
            continue
        out[f"{key}_mean"] = g[key].mean()
        out[f"{key}_se"] = g[key].std(ddof=1) / np.sqrt(g[key].count())
    out = out.reset_index()
    return out.sort_values("method", key=lambda m: m.map(_order), kind="stable").reset_index(
        drop=True
    )


def _order(label: str) -> int:
    """Rank of a method label in the suites' method order (other suites' runs last)."""
    method, _, suite = label.partition(" (")
    order = method_names()
    return (order.index(method) if method in order else len(order)) + (100 if suite else 0)


def markdown(table: pd.DataFrame, columns: list[tuple[str, str, int]] = _COLUMNS) -> str:
    """The per-method table as markdown (mean ± SE) of ``columns`` (key, label, digits)."""
    head = ["method", "queries", "seeds"] + [label for _, label, _ in columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in table.iterrows():
        cells = [str(r["method"]), str(int(r["queries"])), str(int(r["n_seeds"]))]
        for key, _, d in columns:
            m, se = r[f"{key}_mean"], r[f"{key}_se"]
            cells.append(
                "–"
                if not np.isfinite(m)
                else f"{m:.{d}f}" + (f" ± {se:.{d}f}" if np.isfinite(se) else "")
            )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def markdown_xfoil(table: pd.DataFrame, reference: pd.DataFrame | None = None) -> str:
    """The XFoil judgement per method (mean ± SE), with the best database airfoil by XFoil
    at each condition as the last row (``reference``: :func:`database_best`'s table)."""
    md = markdown(table, _XFOIL_COLUMNS)
    if reference is None or reference.empty:
        return md
    cells = ["best database airfoil", "–", "–"]
    for key, _, d in _XFOIL_COLUMNS:
        kind, _, label = key.rpartition("_")
        row = reference[reference["condition"] == label]
        if row.empty or kind not in ("xfoil_best", "nf_best"):
            cells.append("–")
            continue
        r = row.iloc[0]
        value = r["xfoil_ld"] if kind == "xfoil_best" else r["nf_ld"]
        cells.append(f"{value:.{d}f}" + (f" ({r['name']})" if kind == "xfoil_best" else ""))
    return md + "| " + " | ".join(cells) + " |\n"


def plot_curves(rounds: pd.DataFrame, path: Path) -> Path:
    """Best raw L/D, best validated L/D and the confident share vs queries (mean over seeds)."""
    plt = pyplot()

    r = rounds.sort_values(["method", "seed", "round"]).copy()
    r["best_validated"] = r.groupby(["method", "seed"])["validated_ld_max"].cummax()
    panels = [
        ("best_so_far", "best L/D so far (xlarge, the oracle)"),
        ("best_validated", "best validated L/D so far (xxxlarge, conf > 0.9)"),
        ("conf_frac", "batch share with confidence > 0.9"),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    for ax, (key, label) in zip(axes, panels):
        for method, m in r.groupby("method", sort=False):
            g = m.groupby("round")
            q, mu = g["queries"].mean(), g[key].mean()
            se = (g[key].std(ddof=1) / np.sqrt(g[key].count())).fillna(0)
            (line,) = ax.plot(q, mu, marker="o", ms=3, label=method)
            ax.fill_between(q, mu - se, mu + se, color=line.get_color(), alpha=0.2)
        if key != "conf_frac":
            ax.axhline(REFERENCE_LD, color="k", ls="--", lw=0.8, label="fx76mp120 (189.7)")
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("oracle queries")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.airfoil_table")
    p.add_argument("--runs", type=Path, nargs="+", default=[Path("runs/airfoil")])
    p.add_argument("--out", type=Path, default=Path("docs/results/airfoil"))
    p.add_argument("--task", default=TASK, help="airfoil-ld, airfoil-ld-a2 or airfoil-xfoil")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rounds = _rounds(args.runs, args.task)
    runs = per_run(rounds)
    table = per_method(runs)
    runs.to_csv(args.out / "airfoil_runs.csv", index=False)
    table.to_csv(args.out / "airfoil_table.csv", index=False)
    md = markdown(table)
    (args.out / "airfoil_table.md").write_text(md)
    plot_curves(rounds, args.out / "airfoil_curves.png")
    print(md)
    if any(f"{key}_mean" in table for key, _, _ in _XFOIL_COLUMNS):
        xmd = markdown_xfoil(table, database_best())
        (args.out / "xfoil_table.md").write_text(xmd)
        print(xmd)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
