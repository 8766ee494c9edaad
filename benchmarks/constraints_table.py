"""Issue 18's table: every constraint mechanism on the airfoil tasks, judged by XFoil.

``python -m benchmarks.constraints_table --runs runs/airfoil-constraints
runs/airfoil-constraints-es[:seq16] runs/airfoil-constraints-discounted[:gamma-h] --out
docs/results/airfoil/constraints`` reads every finished run of the ``airfoil-constraints``
suites (a ``PATH:label`` suffix labels the methods of that folder, e.g. CMA-ES run in
populations of 16) and writes, per task (its own condition: α 5°, Re 1e6 for ``airfoil-ld``,
α 2°, Re 5e5 for ``airfoil-ld-a2``) and method, mean ± SE over seeds and every seed's value:

=======================  ===================================================================
``XFoil best``           best XFoil L/D among the run's 10 best designs by its own values,
                         at the task's condition (:mod:`benchmarks.xfoil_judge`)
``NF − XFoil``           mean NeuralFoil − XFoil L/D of those 10 (> 0: NeuralFoil was fooled)
``valid (last)``         share of the last batch with valid geometry
``failed (all)``         share of all 2,000 asks that failed
``policy valid (last)``  with known constraints: the share of the sampler's own draws that met
                         them at the last ask (``constraint_acceptance``; the asks are 100 %)
``natural (last)``       last batch's natural fraction (PCA×GMM density of training airfoils)
=======================  ===================================================================

plus the best database airfoil by XFoil at the condition (:func:`database_best`). Files:
``constraints_table.md`` and ``constraints_runs.csv`` (one row per run).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.xfoil_database import database_best

__all__ = ["per_run", "markdown", "main"]

CONDITION = {"airfoil-ld": "a5", "airfoil-ld-a2": "a2"}
_COLUMNS = [  # (key, label, digits)
    ("xfoil_best", "XFoil best", 1),
    ("nf_gap", "NF − XFoil", 1),
    ("valid_last", "valid (last)", 2),
    ("failed_all", "failed (all)", 2),
    ("policy_valid", "policy valid (last)", 2),
    ("natural_last", "natural (last)", 2),
]


def per_run(folders: list[tuple[Path, str]]) -> pd.DataFrame:
    """One row per finished run: task, method (with its folder's label), seed and columns."""
    rows = []
    for root, label in folders:
        for f in sorted((root / "runs").glob("*/*/seed*/rounds.csv")):
            if not (f.parent / "done.json").is_file():
                continue
            r = pd.read_csv(f).sort_values("round")
            last = r.iloc[-1]
            task = str(last["task"])
            c = CONDITION.get(task)
            if c is None:
                continue
            acc = last.get("constraint_acceptance", np.nan)
            rows.append(
                {
                    "task": task,
                    "method": str(last["method"]) + (f" ({label})" if label else ""),
                    "seed": int(last["seed"]),
                    "queries": int(last["queries"]),
                    "xfoil_best": float(last.get(f"xfoil_best_{c}", np.nan)),
                    "nf_gap": float(last.get(f"nf_gap_{c}", np.nan)),
                    "valid_last": float(last["valid_frac"]),
                    "failed_all": float(r["n_failed"].sum() / r["batch_size"].sum()),
                    "policy_valid": float(acc) if pd.notna(acc) else np.nan,
                    "natural_last": float(last["natural_frac"]),
                }
            )
    if not rows:
        raise FileNotFoundError(f"no finished airfoil runs under {[str(f) for f, _ in folders]}")
    return pd.DataFrame(rows)


def _cell(values: pd.Series, digits: int, seeds: bool) -> str:
    v = values.dropna()
    if v.empty:
        return "–"
    se = v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else 0.0
    text = f"{v.mean():.{digits}f} ± {se:.{digits}f}"
    if seeds:
        text += " (" + ", ".join(f"{x:.{digits}f}" for x in v) + ")"
    return text


def markdown(runs: pd.DataFrame, reference: pd.DataFrame) -> str:
    """One table per task; the first column lists every seed, the others mean ± SE."""
    out = []
    for task, c in CONDITION.items():
        sub = runs[runs["task"] == task]
        if sub.empty:
            continue
        ref = reference[reference["condition"] == c]
        out.append(f"### {task} (judged at its own condition, `{c}`)\n")
        head = ["method", "seeds", "queries"] + [label for _, label, _ in _COLUMNS]
        out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for method, m in sub.groupby("method", sort=False):
            m = m.sort_values("seed")
            cells = [method, str(m["seed"].nunique()), str(int(m["queries"].min()))]
            for i, (key, _, d) in enumerate(_COLUMNS):
                cells.append(_cell(m[key], d, seeds=i == 0))
            out.append("| " + " | ".join(cells) + " |")
        if not ref.empty:
            r = ref.iloc[0]
            cells = [f"best database airfoil ({r['name']})", "–", "–", f"{r['xfoil_ld']:.1f}"]
            out.append("| " + " | ".join(cells + ["–"] * (len(head) - len(cells))) + " |")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.constraints_table")
    p.add_argument("--runs", nargs="+", default=["runs/airfoil-constraints"])
    p.add_argument("--out", type=Path, default=Path("docs/results/airfoil/constraints"))
    args = p.parse_args(argv)
    folders = []
    for spec in args.runs:
        path, _, label = spec.partition(":")
        folders.append((Path(path), label))
    runs = per_run(folders)
    order = {m: i for i, m in enumerate(dict.fromkeys(runs["method"]))}
    runs = runs.sort_values(
        ["task", "method"], key=lambda s: s.map(order) if s.name == "method" else s
    )
    args.out.mkdir(parents=True, exist_ok=True)
    runs.to_csv(args.out / "constraints_runs.csv", index=False)
    md = markdown(runs, database_best())
    (args.out / "constraints_table.md").write_text(md)
    print(md)
    print(json.dumps({"runs": len(runs), "out": str(args.out)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
