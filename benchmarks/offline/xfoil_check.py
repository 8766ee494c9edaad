"""The offline airfoil batches judged by XFoil (docs/offline.md).

``python -m benchmarks.offline.xfoil_check docs/results/offline-xfoil`` reads the batches
``designs/airfoil-ld-<seed>-<method>.npy`` that ``benchmarks.offline.run --save-designs``
wrote, takes each batch's :data:`~benchmarks.xfoil_judge.TOP` (10) best distinct designs by
the task's oracle (NeuralFoil xlarge, α 5°, Re 1e6; failed designs are never judged), runs
XFoil on them at that condition (:func:`benchmarks.xfoil_judge.judge_designs`) and writes
``xfoil.csv`` (one row per method and seed: XFoil best and mean L/D of the 10, converged
share, NeuralFoil − XFoil gap) and prints a table against the archive's best by XFoil
(visible part and full data, from the shipped :data:`benchmarks.xfoil_database.DATABASE_CSV`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from benchmarks.offline.archives import build_archive, evaluate
from benchmarks.offline.methods import OFFLINE_METHODS
from benchmarks.xfoil_database import DATABASE_CSV
from benchmarks.xfoil_judge import CONDITIONS, judge_designs, judge_summary
from sqdf_bbo.data import airfoil_split
from sqdf_bbo.diffusion.priors import load_standardization

__all__ = ["archive_xfoil_best", "judge_batches", "main"]

_TASK = "airfoil-ld"


def archive_xfoil_best() -> dict[str, float]:
    """Best XFoil L/D at α 5° of the archive's valid airfoils (t_max ≥ 0.12, no
    self-intersection, converged): ``visible`` (the hidden best 10 % by NeuralFoil left
    out) and ``full``."""
    archive = build_archive(_TASK)
    names = np.array(airfoil_split().names_train)
    db = pd.read_csv(DATABASE_CSV, keep_default_na=False, na_values=[""]).set_index("name")
    ld = db.loc[names, "xfoil_ld_a5"].to_numpy(dtype=np.float64)
    valid = np.isfinite(archive.y) & np.isfinite(ld)
    return {
        "visible": float(np.max(ld[valid & archive.visible])),
        "full": float(np.max(ld[valid])),
    }


def judge_batches(folder: Path, workers: int = 1) -> pd.DataFrame:
    """One row per saved airfoil batch: method, seed and the XFoil summary at α 5°."""
    std = load_standardization("airfoil")
    rows = []
    for path in sorted((folder / "designs").glob(f"{_TASK}-*.npy")):
        seed, method = path.stem[len(_TASK) + 1 :].split("-", 1)
        x = torch.as_tensor(np.load(path))
        y, _ = evaluate(_TASK, x)
        judged = judge_designs(
            x, y, standardization=std, conditions=CONDITIONS[:1], workers=workers
        )
        summary = judge_summary(judged, CONDITIONS[:1])
        rows.append({"method": method, "seed": int(seed), "judged": len(judged), **summary})
        print(f"{method} seed {seed}: {summary}", flush=True)
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", nargs="?", default="docs/results/offline-xfoil")
    p.add_argument("--workers", type=int, default=1)
    args = p.parse_args(argv)
    folder = Path(args.folder)
    table = judge_batches(folder, args.workers)
    table.to_csv(folder / "xfoil.csv", index=False)
    ref = archive_xfoil_best()
    print(f"archive best XFoil L/D at a5: visible {ref['visible']:.1f}, full {ref['full']:.1f}")
    order = [m for m in OFFLINE_METHODS if m in set(table["method"])]
    stats = table.groupby("method")[["xfoil_best_a5", "xfoil_mean_a5", "xfoil_conv_a5"]]
    print(stats.agg(["mean", "std"]).loc[order].round(2).to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
