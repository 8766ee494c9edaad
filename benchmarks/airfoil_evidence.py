"""Evidence that the shipped ``airfoil`` prior samples real-looking airfoils.

``python -m benchmarks.airfoil_evidence --out docs/airfoil/`` compares, on the same
measures, the 435 held-out real airfoils (never seen in training), as many samples of the
prior, and three references (held-out + N(0, 0.05²) noise on every Kulfan number, uniform
draws in the task's box [-3, 3]^18 of standardized coordinates, and the training airfoils):

* NeuralFoil ``analysis_confidence`` at α = 5°, Re = 1e6 (xlarge and xxxlarge): median and
  share above 0.9;
* geometry: median t_max, share with t_max ≥ 0.12, share self-intersecting;
* L/D (xlarge) of the non-self-intersecting shapes: median and 95th percentile;
* the ``airfoil-ld`` task's naturalness (PCA×GMM log q: mean, share above the held-out
  5th percentile) and Vendi diversity;
* memorization: median distance (standardized coordinates) from each design to its nearest
  training airfoil (prior samples copying the training set would sit near 0).

Writes ``evidence.csv``, ``evidence.md``, ``histograms.png`` (confidence, t_max, L/D:
held-out vs prior) and ``shapes.png`` (12 held-out airfoils next to 12 prior samples).
Needs the ``airfoil`` extra; about a minute on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from benchmarks.plotting import pyplot
from benchmarks.tasks import get_task
from oracles.airfoil import geometry_failures, kulfan_coordinates, kulfan_thickness, neuralfoil_aero
from sqdf_bbo.data import airfoil_split
from sqdf_bbo.diffusion.priors import load_standardization

__all__ = ["evidence_sets", "evidence_table", "plot_histograms", "plot_shapes", "main"]

SEED = 0


def evidence_sets(seed: int = SEED) -> dict[str, np.ndarray]:
    """Standardized designs ``(n, 18)`` (float64) of each compared set."""
    task = get_task("airfoil-ld")
    st = load_standardization("airfoil")
    split = airfoil_split()
    held = split.kulfan_heldout
    n = held.shape[0]
    rng = np.random.default_rng(seed)
    prior = task.prior()
    z_prior = prior.sample(n, torch.Generator().manual_seed(seed)).x.double().numpy()
    low, high = task.box
    return {
        "held-out real": st.from_kulfan(held),
        "prior samples": z_prior,
        "train real": st.from_kulfan(split.kulfan_train),
        "held-out + N(0, 0.05^2) on Kulfan": st.from_kulfan(held + rng.normal(0, 0.05, held.shape)),
        "uniform in box [-3, 3]^18": rng.uniform(low, high, (n, held.shape[1])),
    }


def _measures(z: np.ndarray, train_z: np.ndarray) -> dict[str, np.ndarray]:
    """Per-design measures of standardized designs ``z (n, 18)``."""
    k = load_standardization("airfoil").to_kulfan(z)
    big = neuralfoil_aero(k, model_size="xxxlarge")
    mid = neuralfoil_aero(k, model_size="xlarge")
    bad = geometry_failures(k, min_thickness=None)
    crossing = np.array([i in bad for i in range(len(k))])
    ld = np.where(crossing, np.nan, mid["LD"])
    d = np.sqrt(((z[:, None, :] - train_z[None]) ** 2).sum(-1))  # (n, m)
    return {
        "conf_xlarge": mid["confidence"],
        "conf_xxxlarge": big["confidence"],
        "t_max": kulfan_thickness(k).max(1),
        "self_intersecting": crossing,
        "ld_xlarge": ld,
        "nn_train": d.min(1),
    }


def evidence_table(sets: dict[str, np.ndarray]) -> tuple[pd.DataFrame, dict[str, dict]]:
    """One row of summary numbers per set; also the per-design measures of each set."""
    task = get_task("airfoil-ld")
    train_z = sets["train real"]
    rows, per = [], {}
    for name, z in sets.items():
        m = _measures(z, train_z)
        if name == "train real":
            m["nn_train"] = np.full(len(z), np.nan)  # distance to itself
        per[name] = m
        scores = task.score_designs(torch.as_tensor(z, dtype=torch.float32))
        ld = m["ld_xlarge"][np.isfinite(m["ld_xlarge"])]
        rows.append(
            {
                "set": name,
                "n": len(z),
                "conf_xlarge_median": float(np.median(m["conf_xlarge"])),
                "conf_xlarge_gt_0.9": float(np.mean(m["conf_xlarge"] > 0.9)),
                "conf_xxxlarge_median": float(np.median(m["conf_xxxlarge"])),
                "conf_xxxlarge_gt_0.9": float(np.mean(m["conf_xxxlarge"] > 0.9)),
                "t_max_median": float(np.median(m["t_max"])),
                "t_max_ge_0.12": float(np.mean(m["t_max"] >= 0.12)),
                "self_intersecting": float(np.mean(m["self_intersecting"])),
                "ld_median": float(np.median(ld)) if ld.size else np.nan,
                "ld_p95": float(np.percentile(ld, 95)) if ld.size else np.nan,
                "naturalness": scores["naturalness"],
                "natural_frac": scores["natural_frac"],
                "vendi": scores["vendi"],
                "nn_train_median": float(np.nanmedian(m["nn_train"]))
                if name != "train real"
                else np.nan,
            }
        )
    return pd.DataFrame(rows), per


def plot_histograms(per: dict[str, dict], path: Path) -> Path:
    """Confidence, t_max and L/D histograms: held-out real vs prior samples."""
    plt = pyplot()

    panels = [
        ("conf_xlarge", "NeuralFoil confidence (xlarge)", np.linspace(0, 1, 26)),
        ("t_max", "max thickness t_max / c", np.linspace(0, 0.3, 31)),
        ("ld_xlarge", "L/D (xlarge, α 5°, Re 1e6)", np.linspace(-50, 250, 31)),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    for ax, (key, label, bins) in zip(axes, panels):
        for name, color in (("held-out real", "0.4"), ("prior samples", "tab:blue")):
            v = per[name][key]
            v = v[np.isfinite(v)]
            ax.hist(
                np.clip(v, bins[0], bins[-1]),
                bins=bins,
                density=True,
                histtype="step",
                lw=1.8,
                color=color,
                label=f"{name} ({len(v)})",
            )
        if key == "t_max":
            ax.axvline(0.12, color="tab:red", ls="--", lw=1, label="task bound 0.12")
        ax.set_title(label, fontsize=10)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_shapes(sets: dict[str, np.ndarray], path: Path, n: int = 12) -> Path:
    """``n`` held-out real airfoils (top rows) next to ``n`` prior samples (bottom rows)."""
    plt = pyplot()

    st = load_standardization("airfoil")
    cols = 6
    rows_per = (n + cols - 1) // cols
    fig, axes = plt.subplots(2 * rows_per, cols, figsize=(2.2 * cols, 0.7 * 2 * rows_per + 0.6))
    for block, (name, color) in enumerate(
        (("held-out real", "0.25"), ("prior samples", "tab:blue"))
    ):
        xy = kulfan_coordinates(st.to_kulfan(sets[name][:n]))
        for i in range(n):
            ax = axes[block * rows_per + i // cols, i % cols]
            ax.fill(xy[i, :, 0], xy[i, :, 1], color=color, alpha=0.35, lw=0)
            ax.plot(xy[i, :, 0], xy[i, :, 1], color=color, lw=1)
            ax.set_xlim(-0.02, 1.02)
            ax.set_ylim(-0.17, 0.23)
            ax.set_aspect("equal")
            ax.axis("off")
            if i % cols == 0:
                ax.text(-0.05, 0.03, name.split()[0], ha="right", fontsize=8, color=color)
    fig.suptitle("held-out real airfoils (grey) vs airfoil prior samples (blue)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _markdown(table: pd.DataFrame) -> str:
    cols = [
        ("n", "n", "{:d}"),
        ("conf_xlarge_median", "conf. median (xl)", "{:.2f}"),
        ("conf_xlarge_gt_0.9", "conf > 0.9 (xl)", "{:.2f}"),
        ("conf_xxxlarge_gt_0.9", "conf > 0.9 (xxxl)", "{:.2f}"),
        ("t_max_median", "t_max median", "{:.3f}"),
        ("t_max_ge_0.12", "t_max >= 0.12", "{:.2f}"),
        ("self_intersecting", "self-intersecting", "{:.2f}"),
        ("ld_median", "L/D median", "{:.1f}"),
        ("ld_p95", "L/D p95", "{:.1f}"),
        ("naturalness", "log q", "{:.1f}"),
        ("natural_frac", "natural frac", "{:.2f}"),
        ("vendi", "Vendi", "{:.1f}"),
        ("nn_train_median", "NN dist. to train", "{:.2f}"),
    ]
    lines = ["| set | " + " | ".join(c[1] for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for _, r in table.iterrows():
        cells = []
        for key, _, fmt in cols:
            v = r[key]
            cells.append("–" if pd.isna(v) else fmt.format(int(v) if fmt == "{:d}" else float(v)))
        lines.append(f"| {r['set']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.airfoil_evidence")
    p.add_argument("--out", type=Path, default=Path("docs/airfoil"))
    p.add_argument("--seed", type=int, default=SEED)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    sets = evidence_sets(args.seed)
    table, per = evidence_table(sets)
    table.to_csv(args.out / "evidence.csv", index=False)
    md = _markdown(table)
    (args.out / "evidence.md").write_text(md)
    plot_histograms(per, args.out / "histograms.png")
    plot_shapes(sets, args.out / "shapes.png")
    print(md)
    print(f"written to {args.out} in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
