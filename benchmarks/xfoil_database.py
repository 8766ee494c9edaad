"""The UIUC database judged by XFoil: the reference line of every airfoil result.

``nice -n 10 python -m benchmarks.xfoil_database --workers 2`` runs XFoil (6.99, default
settings of :class:`oracles.xfoil.XFoilConfig`: 160 panels, 100 iterations) and NeuralFoil
(``xlarge``) on the Kulfan vector of every one of the 2174 database airfoils
(:func:`sqdf_bbo.data.airfoil_split`, training and held-out) at each condition of
:data:`benchmarks.xfoil_judge.CONDITIONS`, and writes :data:`DATABASE_CSV`
(``benchmarks/data/xfoil_database.csv``), one row per airfoil:

======================  ==============================================================
``name``, ``split``     database name, ``train`` or ``heldout``
``t_max``               largest thickness (chord units)
``geometry``            ``""`` or why the shape is invalid ignoring thickness
                        (self-intersection, :func:`oracles.airfoil.geometry_failures`)
``xfoil_cl_<c>``        XFoil CL, CD and L/D at condition ``c`` (empty when XFoil failed)
``xfoil_cd_<c>``
``xfoil_ld_<c>``
``xfoil_failure_<c>``   ``""`` or why XFoil failed (e.g. not converged)
``nf_ld_<c>``           NeuralFoil xlarge L/D
======================  ==============================================================

The CSV is shipped, so nothing reruns XFoil on the database: :func:`database_best` reads it
and gives the best valid airfoil (t_max ≥ 0.12, no self-intersection, XFoil converged) per
condition, the reference line of the airfoil tables. The script prints XFoil's wall time per
run (median, 95th percentile) and those bests.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.xfoil_judge import CONDITIONS, NEURALFOIL_MODEL, Condition
from oracles.airfoil import geometry_failures, kulfan_thickness, neuralfoil_aero
from oracles.xfoil import find_xfoil, xfoil_aero
from sqdf_bbo.data import airfoil_split

__all__ = ["DATABASE_CSV", "database_table", "database_best", "main"]

DATABASE_CSV = Path(__file__).resolve().parent / "data" / "xfoil_database.csv"


def database_table(
    conditions: tuple[Condition, ...] = CONDITIONS, workers: int = 1
) -> tuple[pd.DataFrame, np.ndarray]:
    """XFoil and NeuralFoil on every database airfoil (the columns of the module docstring).

    Returns the table and the wall time of every XFoil run, ``(n_airfoils · n_conditions,)``.
    """
    split = airfoil_split()
    names = list(split.names_train) + list(split.names_heldout)
    k = np.concatenate([split.kulfan_train, split.kulfan_heldout])
    bad = geometry_failures(k, min_thickness=None)
    table: dict[str, object] = {
        "name": names,
        "split": ["train"] * len(split.names_train) + ["heldout"] * len(split.names_heldout),
        "t_max": kulfan_thickness(k).max(1),
        "geometry": [bad.get(i, "") for i in range(len(k))],
    }
    seconds = []
    for c in conditions:
        xf = xfoil_aero(k, c.xfoil(), workers=workers)
        seconds.append(xf["seconds"])
        for key in ("CL", "CD", "LD"):
            table[f"xfoil_{key.lower()}_{c.label}"] = xf[key]
        table[f"xfoil_failure_{c.label}"] = xf["failure"]
        nf = neuralfoil_aero(
            k, alpha=c.alpha, Re=c.Re, n_crit=c.n_crit, model_size=NEURALFOIL_MODEL
        )
        table[f"nf_ld_{c.label}"] = nf["LD"]
    df = pd.DataFrame(table).sort_values("name", kind="stable").reset_index(drop=True)
    return df, np.concatenate(seconds)


def database_best(
    conditions: tuple[Condition, ...] = CONDITIONS,
    min_thickness: float = 0.12,
    path: Path = DATABASE_CSV,
    top: int = 1,
) -> pd.DataFrame:
    """The ``top`` best valid database airfoils by XFoil L/D at each condition.

    Valid: t_max ≥ ``min_thickness``, no self-intersection, XFoil converged. Returns rows
    ``condition``, ``rank``, ``name``, ``xfoil_ld``, ``nf_ld``, ``t_max``, best first.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(
            f"{path} is missing; write it with: nice -n 10 python -m benchmarks.xfoil_database"
        )
    db = pd.read_csv(path, keep_default_na=False, na_values=[""])
    ok = (db["t_max"] >= min_thickness) & db["geometry"].isna()
    rows = []
    for c in conditions:
        valid = db[ok & db[f"xfoil_ld_{c.label}"].notna()]
        best = valid.sort_values(f"xfoil_ld_{c.label}", ascending=False).head(top)
        for rank, (_, r) in enumerate(best.iterrows(), start=1):
            rows.append(
                {
                    "condition": c.label,
                    "rank": rank,
                    "name": r["name"],
                    "xfoil_ld": float(r[f"xfoil_ld_{c.label}"]),
                    "nf_ld": float(r[f"nf_ld_{c.label}"]),
                    "t_max": float(r["t_max"]),
                }
            )
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.xfoil_database", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--out", type=Path, default=DATABASE_CSV)
    p.add_argument("--workers", type=int, default=1, help="XFoil processes at a time")
    args = p.parse_args(argv)
    find_xfoil()
    t0 = time.perf_counter()
    df, seconds = database_table(workers=args.workers)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out, index=False, float_format="%.6g")
    print(
        f"{len(df)} airfoils x {len(CONDITIONS)} conditions in {time.perf_counter() - t0:.0f} s "
        f"({args.workers} worker(s)); XFoil per run: median {np.median(seconds):.3f} s, "
        f"95th percentile {np.percentile(seconds, 95):.3f} s, max {seconds.max():.2f} s"
    )
    for c in CONDITIONS:
        failed = df[f"xfoil_failure_{c.label}"].astype(bool)
        print(
            f"{c.describe()}: XFoil failed on {int(failed.sum())} of {len(df)} "
            f"({failed.mean():.1%}), on {int(failed[df['t_max'] >= 0.12].sum())} of "
            f"{int((df['t_max'] >= 0.12).sum())} with t_max >= 0.12"
        )
    print(database_best(path=args.out, top=5).to_string(index=False))
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
