"""Suite reports: ``summary.csv``, ``summary.md``, ``curves_<task>.png``, ``samples_<task>.png``.

``summary.csv`` has one row per task × method × round with, for every metric, the mean and
the standard error over seeds (``<metric>_mean``, ``<metric>_se``; SE = sample std / √seeds,
NaN with one seed). ``summary.md`` shows, per task, the last round's values (mean ± SE) and
the naturalness calibration table of the task (:func:`benchmarks.tasks.naturalness_reference`).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from benchmarks.layout import run_dir
from benchmarks.plotting import pyplot
from benchmarks.tasks import get_task, naturalness_reference

__all__ = [
    "METRICS",
    "summarize",
    "markdown_summary",
    "plot_curves",
    "plot_samples",
    "image_grid",
    "write_report",
]

METRICS = [
    "reward_mean",
    "reward_top10",
    "reward_max",
    "best_so_far",
    "naturalness",
    "natural_frac",
    "vendi",
    "pairwise_dist",
    "kl_to_prior",
    "optimism_gap",
    "wall_s",
]

_TABLE_COLUMNS = [
    ("reward_mean", "reward (batch mean)", 3),
    ("reward_top10", "reward (top 10%)", 3),
    ("best_so_far", "best so far", 3),
    ("naturalness", "naturalness log q", 1),
    ("natural_frac", "natural frac", 2),
    ("vendi", "Vendi", 2),
    ("kl_to_prior", "KL to prior", 1),
    ("optimism_gap", "optimism gap (std)", 2),
    ("wall_s", "optimizer wall s", 1),
]


def summarize(rounds: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard error over seeds per task × method × round."""
    keys = ["task", "method", "round"]
    g = rounds.groupby(keys, sort=False)
    out = g[["queries"]].mean()
    out["n_seeds"] = g["seed"].nunique()
    for m in METRICS:
        mean = g[m].mean()
        std = g[m].std(ddof=1)
        out[f"{m}_mean"] = mean
        out[f"{m}_se"] = std / np.sqrt(g[m].count().clip(lower=1))
    return out.reset_index()


def _fmt(mean: float, se: float, digits: int) -> str:
    if mean is None or not math.isfinite(mean):
        return "–"
    s = f"{mean:.{digits}f}"
    if se is not None and math.isfinite(se):
        s += f" ± {se:.{digits}f}"
    return s


def markdown_summary(
    summary: pd.DataFrame, references: dict[str, pd.DataFrame] | None = None, title: str = ""
) -> str:
    """Markdown: per task, the final round of every method (mean ± SE over seeds)."""
    lines = [f"# {title}".rstrip(), ""] if title else []
    for task, sub in summary.groupby("task", sort=False):
        last = sub[sub["round"] == sub["round"].max()]
        q = int(last["queries"].iloc[0])
        seeds = int(last["n_seeds"].min())
        lines += [f"## {task} — after {q} queries (mean ± SE over {seeds} seeds)", ""]
        header = ["method"] + [label for _, label, _ in _TABLE_COLUMNS]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        for _, row in last.iterrows():
            cells = [str(row["method"])]
            for key, _, digits in _TABLE_COLUMNS:
                cells.append(_fmt(row[f"{key}_mean"], row[f"{key}_se"], digits))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        if references and task in references:
            ref = references[task]
            lines += [f"Naturalness calibration for {task} (reference sets):", ""]
            lines.append("| set | n | naturalness log q | natural frac | Vendi |")
            lines.append("|---|---|---|---|---|")
            for _, r in ref.iterrows():
                lines.append(
                    f"| {r['set']} | {int(r['n'])} | {r['naturalness']:.1f} | "
                    f"{r['natural_frac']:.2f} | {r['vendi']:.2f} |"
                )
            lines.append("")
    return "\n".join(lines) + "\n"


def plot_curves(summary: pd.DataFrame, task: str, path: Path) -> Path:
    """Four panels vs. cumulative queries: reward (batch mean), naturalness, Vendi and the
    optimism gap (the surrogate's optimistic prediction of each batch minus what the oracle
    returned, in target std; fine-tuned methods only); shaded SE."""
    plt = pyplot()

    sub = summary[summary["task"] == task]
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.8))
    panels = [
        ("reward_mean", "reward (batch mean)"),
        ("naturalness", "naturalness (mean log q)"),
        ("vendi", "diversity (Vendi score)"),
        ("optimism_gap", "optimism gap (target std)"),
    ]
    for ax, (key, label) in zip(axes, panels):
        if f"{key}_mean" not in sub:
            ax.set_visible(False)
            continue
        for method, m in sub.groupby("method", sort=False):
            m = m.sort_values("queries")
            x = m["queries"].to_numpy()
            mu = m[f"{key}_mean"].to_numpy(dtype=float)
            se = np.nan_to_num(m[f"{key}_se"].to_numpy(dtype=float))
            (line,) = ax.plot(x, mu, marker="o", ms=3, label=method)
            ax.fill_between(x, mu - se, mu + se, color=line.get_color(), alpha=0.2)
        ax.set_xlabel("oracle queries")
        ax.set_title(label)
        ax.grid(alpha=0.3)
        if key == "naturalness":
            # Off-manifold designs sit hundreds of nats below real data: symlog keeps both visible.
            ax.set_yscale("symlog", linthresh=10.0)
    axes[0].legend(fontsize=8)
    fig.suptitle(task)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def image_grid(rows: list[torch.Tensor], labels: list[str], path: Path, title: str = "") -> Path:
    """One row of images per entry of ``rows`` (each ``(n, 1, H, W)`` in [-1, 1])."""
    plt = pyplot()

    n_cols = max(int(r.shape[0]) for r in rows)
    fig, axes = plt.subplots(
        len(rows), n_cols, figsize=(0.6 * n_cols + 1.6, 0.65 * len(rows) + 0.4), squeeze=False
    )
    for i, (imgs, label) in enumerate(zip(rows, labels)):
        for j in range(n_cols):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            if j < imgs.shape[0]:
                ax.imshow(imgs[j, 0].numpy(), cmap="gray_r", vmin=-1, vmax=1)
        axes[i, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_samples(out: Path, task: str, methods: list[str], seed: int, path: Path) -> Path | None:
    """Last-round designs of ``seed`` per method (one row per method), for image tasks."""
    rows, labels = [], []
    for m in methods:
        f = run_dir(out, task, m, seed) / "samples.pt"
        if not f.is_file():
            continue
        s = torch.load(f, weights_only=True)
        last = s[sorted(s, key=lambda k: int(k.removeprefix("round")))[-1]]
        rows.append(last.float())
        labels.append(m)
    if not rows:
        return None
    return image_grid(rows, labels, path, title=f"{task}: last-round designs (seed {seed})")


def scatter_samples(out: Path, task: str, methods: list[str], seed: int, path: Path) -> Path | None:
    """Last-round designs of ``seed`` per method as 2-D scatter panels (flat 2-D tasks).

    Each panel shows held-out real designs (grey), the method's last batch (blue) and the
    oracle's maximizer when it has one (red star).
    """
    plt = pyplot()

    t = get_task(task)
    real = t.heldout_designs.reshape(t.heldout_designs.shape[0], -1)[:1000].numpy()
    best = getattr(t.oracle(0), "optimizers", None)
    panels = []
    for m in methods:
        f = run_dir(out, task, m, seed) / "samples.pt"
        if not f.is_file():
            continue
        s = torch.load(f, weights_only=True)
        last = s[sorted(s, key=lambda k: int(k.removeprefix("round")))[-1]].float()
        panels.append((m, last.reshape(last.shape[0], -1).numpy()))
    if not panels:
        return None
    low, high = t.box
    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 2.8), squeeze=False)
    for ax, (m, x) in zip(axes[0], panels):
        ax.scatter(real[:, 0], real[:, 1], s=2, c="0.8", label="held-out real")
        ax.scatter(x[:, 0], x[:, 1], s=5, c="tab:blue", label=f"{m} ({x.shape[0]})")
        if best is not None:
            b = torch.as_tensor(best).reshape(-1, 2).numpy()
            ax.scatter(b[:, 0], b[:, 1], s=60, marker="*", c="tab:red", label="oracle max")
        ax.set_xlim(low, high)
        ax.set_ylim(low, high)
        ax.set_aspect("equal")
        ax.set_title(m, fontsize=9)
        ax.tick_params(labelsize=7)
    fig.suptitle(f"{task}: last-round designs (seed {seed}); grey = held-out real", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(rounds: pd.DataFrame, out: str | Path, suite=None) -> pd.DataFrame:
    """Write summary.csv, summary.md and the plots for ``rounds`` (all runs' rows) into ``out``."""
    out = Path(out)
    summary = summarize(rounds)
    summary.to_csv(out / "summary.csv", index=False)
    refs = {}
    for task in summary["task"].unique():
        refs[task] = naturalness_reference(task)
        refs[task].to_csv(out / f"naturalness_reference_{task}.csv", index=False)
    title = f"Benchmark suite `{suite.name}`" if suite is not None else "Benchmark summary"
    md = markdown_summary(summary, refs, title=title)
    if suite is not None:
        md = (
            md.split("\n", 2)[0]
            + f"\n\n{suite.description}. Budgets per round: {list(suite.budgets)}; "
            f"seeds: {list(suite.seeds)}; fine-tuning steps per round: {suite.finetune_steps}.\n\n"
            + md.split("\n", 2)[2]
        )
    (out / "summary.md").write_text(md)
    for task in summary["task"].unique():
        plot_curves(summary, task, out / f"curves_{task}.png")
        methods = list(dict.fromkeys(rounds.loc[rounds["task"] == task, "method"]))
        seed = int(rounds["seed"].min())
        t = get_task(task)
        if t.is_image:
            plot_samples(out, task, methods, seed, out / f"samples_{task}.png")
        elif int(t.heldout_designs[0].numel()) == 2:
            scatter_samples(out, task, methods, seed, out / f"samples_{task}.png")
    return summary
