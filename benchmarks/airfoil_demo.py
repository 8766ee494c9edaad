"""The airfoil demo: optimize NeuralFoil L/D from the airfoil prior and draw the best shapes.

``python -m benchmarks.airfoil_demo --out runs/airfoil-demo`` runs each of ``--methods``
(default ``sqdf``; e.g. ``--methods sqdf,cma-es``) on the ``airfoil-ld`` task for the
``airfoil`` suite's budgets (250/250/500/1000 queries; ``--budgets`` overrides them;
``method@suite``, e.g. ``cma-es@airfoil-es``, takes that suite's budgets and settings)
with one seed, through the benchmark runner's ask/tell loop, keeps every queried design,
and writes to ``--out``:

* ``rounds_<method>.csv`` — the runner's per-round metrics (with the task's extra columns);
* ``best_airfoils.png`` — per method, the ``--top`` designs of highest oracle L/D (xlarge,
  valid geometry), each labelled with its L/D, the xxxlarge model's L/D and confidence
  (the validation no method sees) and its t_max; NACA 2412 and fx76mp120 (the best
  database airfoil with t_max ≥ 0.12 and confidence > 0.9) as references;
* ``best_airfoils.csv`` — those designs' numbers and Kulfan vectors;
* ``best_airfoils_coordinates.csv`` — their outlines (method, rank, point, x, y; TE →
  upper → LE → lower → TE, cosine-spaced).

Needs the ``airfoil`` extra. One SQDF run of 2,000 queries takes minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from benchmarks.airfoil_tasks import AIRFOIL_CONFIDENCE, AIRFOIL_JUDGE_MODEL
from benchmarks.plotting import pyplot
from benchmarks.runner import run_one
from benchmarks.suites import SUITES
from benchmarks.tasks import get_task
from oracles.airfoil import kulfan_coordinates
from sqdf_bbo.data import KULFAN_NAMES, kulfan_from_database
from sqdf_bbo.diffusion.priors import load_standardization

__all__ = ["run_airfoil_demo", "describe_designs", "best_designs", "plot_best", "main"]

REFERENCES = ("naca2412", "fx76mp120")


def describe_designs(z: torch.Tensor) -> pd.DataFrame:
    """Oracle and validation numbers and Kulfan vectors of standardized designs ``z (n, 18)``."""
    oracle = get_task("airfoil-ld").oracle(0)
    res = oracle.analyze(z)
    big = oracle.analyze(z, model_size=AIRFOIL_JUDGE_MODEL)
    df = pd.DataFrame(
        {
            "ld_xlarge": res["LD"],
            "confidence_xlarge": res["confidence"],
            "ld_xxxlarge": big["LD"],
            "confidence_xxxlarge": big["confidence"],
            "t_max": res["t_max"],
            "failure": res["failure"],
        }
    )
    confident = df["confidence_xxxlarge"] > AIRFOIL_CONFIDENCE
    df["validated_ld"] = np.where(confident & (df["failure"] == ""), df["ld_xxxlarge"], 0.0)
    k = oracle.kulfan(z)
    for j, name in enumerate(KULFAN_NAMES):
        df[name] = k[:, j]
    return df


def best_designs(x: torch.Tensor, top: int) -> pd.DataFrame:
    """The ``top`` distinct valid designs of ``x (n, 18)`` by oracle (xlarge) L/D."""
    x = torch.unique(x.detach().cpu().double(), dim=0)
    df = describe_designs(x)
    df = df[(df["failure"] == "") & np.isfinite(df["ld_xlarge"])]
    df = df.sort_values("ld_xlarge", ascending=False).head(top).reset_index(drop=True)
    return df.assign(rank=np.arange(1, len(df) + 1))


def _reference_rows() -> pd.DataFrame:
    k = np.stack([kulfan_from_database(n) for n in REFERENCES])
    z = torch.as_tensor(load_standardization("airfoil").from_kulfan(k))
    return describe_designs(z).assign(label=list(REFERENCES))


def plot_best(best: dict[str, pd.DataFrame], refs: pd.DataFrame, path: Path) -> Path:
    """One row per method (plus a reference row) of airfoil outlines with their numbers."""
    plt = pyplot()

    rows = [("database", refs)] + list(best.items())
    cols = max(len(df) for _, df in rows)
    fig, axes = plt.subplots(
        len(rows), cols, figsize=(2.6 * cols, 1.35 * len(rows) + 0.5), squeeze=False
    )
    for r, (label, df) in enumerate(rows):
        xy = kulfan_coordinates(df[list(KULFAN_NAMES)].to_numpy()) if len(df) else []
        for c in range(cols):
            ax = axes[r, c]
            ax.axis("off")
            if c >= len(df):
                continue
            d = df.iloc[c]
            confident = d["confidence_xxxlarge"] > 0.9
            color = "0.3" if label == "database" else ("tab:blue" if confident else "tab:red")
            ax.fill(xy[c, :, 0], xy[c, :, 1], color=color, alpha=0.3, lw=0)
            ax.plot(xy[c, :, 0], xy[c, :, 1], color=color, lw=1)
            ax.set_xlim(-0.02, 1.02)
            ax.set_ylim(-0.14, 0.2)
            ax.set_aspect("equal")
            name = d["label"] if "label" in d else f"{label} #{int(d['rank'])}"
            ax.set_title(
                f"{name}\nL/D {d['ld_xlarge']:.0f} (xxxl {d['ld_xxxlarge']:.0f}) "
                f"conf {d['confidence_xxxlarge']:.2f} t {d['t_max']:.3f}",
                fontsize=7,
            )
    fig.suptitle(
        "best airfoils by NeuralFoil xlarge L/D (alpha 5, Re 1e6, t_max >= 0.12); "
        "blue: xxxlarge confidence > 0.9, red: not",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_airfoil_demo(
    out: Path,
    methods: list[str],
    seed: int = 0,
    budgets: tuple[int, ...] | None = None,
    top: int = 6,
) -> dict[str, pd.DataFrame]:
    """Run ``methods`` once each on ``airfoil-ld`` and write the demo files to ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    best: dict[str, pd.DataFrame] = {}
    for entry in methods:
        method, _, suite_name = entry.partition("@")
        suite = SUITES[suite_name or "airfoil"]
        if budgets and not suite_name:
            suite = replace(suite, budgets=tuple(int(b) for b in budgets))
        label = method if not suite_name else f"{method} ({suite_name})"
        seen: list[torch.Tensor] = []
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rounds = run_one(
                "airfoil-ld",
                method,
                seed,
                suite,
                None,
                progress=False,
                on_round=lambda row, x, seen=seen: seen.append(x),
            )
        rounds.to_csv(
            out / f"rounds_{method}{'_' + suite_name if suite_name else ''}.csv", index=False
        )
        best[label] = best_designs(torch.cat(seen), top)
        print(
            f"{label}: {int(rounds['queries'].iloc[-1])} queries in {time.perf_counter() - t0:.0f} s; "
            f"best L/D {rounds['best_so_far'].iloc[-1]:.1f}, best validated "
            f"{rounds['validated_ld_max'].max():.1f}"
        )
    refs = _reference_rows()
    plot_best(best, refs, out / "best_airfoils.png")
    table = pd.concat([df.assign(method=m) for m, df in best.items()], ignore_index=True)
    table.to_csv(out / "best_airfoils.csv", index=False)
    coords = []
    for m, df in best.items():
        xy = kulfan_coordinates(df[list(KULFAN_NAMES)].to_numpy())
        for i, rank in enumerate(df["rank"]):
            coords.append(
                pd.DataFrame(
                    {
                        "method": m,
                        "rank": int(rank),
                        "point": np.arange(xy.shape[1]),
                        "x": xy[i, :, 0],
                        "y": xy[i, :, 1],
                    }
                )
            )
    pd.concat(coords, ignore_index=True).to_csv(out / "best_airfoils_coordinates.csv", index=False)
    return best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.airfoil_demo", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--out", type=Path, default=Path("runs/airfoil-demo"))
    p.add_argument("--methods", default="sqdf", help="comma-separated benchmark methods")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--budgets", default=None, help="comma-separated queries per round")
    p.add_argument("--top", type=int, default=6, help="airfoils drawn per method")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    budgets = tuple(int(b) for b in args.budgets.split(",")) if args.budgets else None
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    t0 = time.perf_counter()
    best = run_airfoil_demo(args.out, methods, args.seed, budgets, args.top)
    cols = ["rank", "ld_xlarge", "ld_xxxlarge", "confidence_xxxlarge", "t_max", "validated_ld"]
    for m, df in best.items():
        print(
            f"\n{m}: best designs\n"
            + df[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}")
        )
    print(f"\nwritten to {args.out} ({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
