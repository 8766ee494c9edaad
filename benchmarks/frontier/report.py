"""The frontier's report: ``frontier.md`` (:func:`frontier_markdown`), the plots
``frontier_<task>.png`` (:func:`plot_frontier`) and, on ``rings``, the KL-optimal targets they
show (:func:`rings_kl_targets`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from benchmarks.frontier.grid import FrontierSuite
from benchmarks.frontier.summary import NATURAL_RATIO, VENDI_REFERENCE
from benchmarks.plotting import pyplot
from benchmarks.rings_diagnosis import tilted_target
from benchmarks.tasks import get_task
from sqdf_bbo.finetuning.sqdf import official_alpha_to_ours

__all__ = ["rings_kl_targets", "frontier_markdown", "plot_frontier"]


# ---------------------------------------------------------------------------- rings target
def rings_kl_targets(alphas: Sequence[float], n: int = 20000, seed: int = 1) -> pd.DataFrame:
    """The KL-regularized optimum p* ∝ p · exp(r̃ / α) on ``rings`` for each α_official.

    Exact for the empirical prior of ``n`` prior samples (importance weights, as in
    :func:`benchmarks.rings_diagnosis.tilted_target`, undiscounted: the γ = 1 objective);
    α = α_official · 2 / D with D = 2. Columns: alpha_official, reward (expected true
    reward), kl (KL(p*‖p), nats), natural_frac (p*'s mass above the naturalness threshold),
    near_mode. About a second on one thread.
    """
    task = get_task("rings")
    prior = task.prior()
    with torch.no_grad():
        x = prior.sample(n, torch.Generator(device=prior.device).manual_seed(seed)).x
    x = x.detach().cpu()
    r = task.oracle(0).evaluate_true(x).double()
    natural = np.nan_to_num(task.naturalness.log_density(x), nan=-np.inf)
    natural = torch.from_numpy(natural > task.naturalness.threshold).double()
    rows = []
    for a in alphas:
        alpha = official_alpha_to_ours(a, 2)
        t = tilted_target(x, r, alpha)
        # p*'s weights, as tilted_target forms them, for its natural fraction.
        w = torch.softmax((r - r.mean()) / r.std(unbiased=False) / alpha, 0)
        rows.append(
            {
                "alpha_official": float(a),
                "reward": t["reward"],
                "kl": t["kl"],
                "natural_frac": float((w * natural).sum()),
                "near_mode": t["near_mode"],
            }
        )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------- report
def _fmt(mean: float, se: float, digits: int) -> str:
    if not math.isfinite(mean):
        return "–"
    return f"{mean:.{digits}f}" + (f" ± {se:.{digits}f}" if math.isfinite(se) else "")


def _alpha_text(alpha: float | None) -> str:
    return "–" if alpha is None or not math.isfinite(alpha) else f"{alpha:g}"


_MD_COLUMNS = (
    ("reward_mean", "reward (batch mean)", 3),
    ("best_so_far", "best so far", 3),
    ("natural_frac", "natural frac", 2),
    ("vendi", "Vendi", 2),
    ("kl_to_prior", "KL to prior", 1),
    ("optimism_gap", "optimism gap", 2),
)


def _means_table(sub: pd.DataFrame) -> list[str]:
    """Markdown rows: one per method × α of one task (mean ± SE over seeds)."""
    header = ["method", "α_official", *(label for _, label, _ in _MD_COLUMNS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, row in sub.iterrows():
        cells = [str(row["method"]), _alpha_text(row["alpha_official"])]
        cells += [_fmt(row[f"{k}_mean"], row[f"{k}_se"], d) for k, _, d in _MD_COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _summary_table(summary: dict[str, dict[str, float | None]]) -> list[str]:
    """Markdown rows: constrained reward (its α) and diversity front area per method."""
    lines = [
        f"| method | constrained reward (natural frac ≥ {NATURAL_RATIO} × prior's) | at α_official "
        "| diversity front area |",
        "|---|---|---|---|",
    ]
    for method, s in summary.items():
        r, a, area = s["constrained_reward"], s["constrained_alpha"], s["diversity_front"]
        cells = [
            method,
            "none qualifies" if r is None else f"{r:.3f}",
            _alpha_text(a),
            "–" if area is None else f"{area:.3f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def frontier_markdown(
    fs: FrontierSuite,
    means: pd.DataFrame,
    summary: dict[str, dict[str, dict[str, float | None]]],
    targets: pd.DataFrame | None = None,
) -> str:
    """``frontier.md``: per task the α-mean table, the summary numbers, the rings targets."""
    lines = [
        f"# Frontier `{fs.name}`",
        "",
        f"{fs.description}. Budgets per round: {list(fs.suite.budgets)}; seeds: "
        f"{list(fs.seeds)}; α_official grid: {[float(a) for a in fs.alphas]}"
        + "".join(f"; {t}: {[float(a) for a in fs.alphas_for(t)]}" for t in fs.task_alphas)
        + (
            f"; sampler K = {fs.suite.num_inference_steps}."
            if fs.suite.num_inference_steps
            else "."
        ),
        "",
        "Constrained reward: the best mean final reward over a method's α values whose mean "
        f"natural frac is ≥ {NATURAL_RATIO} × the prior's. Diversity front area: the area "
        "dominated by the method's α-mean points (x = reward gain over the prior, y = Vendi) "
        f"above (0, {VENDI_REFERENCE:g}).",
        "",
    ]
    for task in dict.fromkeys(means["task"]):
        sub = means[means["task"] == task]
        q = int(sub["queries"].iloc[0])
        lines += [f"## {task} — after {q} queries (mean ± SE over seeds)", ""]
        lines += _summary_table(summary[task]) + [""]
        lines += _means_table(sub) + [""]
        if task == "rings" and targets is not None:
            lines += ["KL-optimal target p* ∝ p·exp(r̃/α) (γ = 1 objective, exact on the "]
            lines[-1] += "empirical prior):"
            lines += ["", "| α_official | reward | KL nats | natural frac |", "|---|---|---|---|"]
            for _, t in targets.iterrows():
                lines.append(
                    f"| {t['alpha_official']:g} | {t['reward']:.3f} | {t['kl']:.2f} | "
                    f"{t['natural_frac']:.2f} |"
                )
            lines.append("")
    return "\n".join(lines) + "\n"


def _errorbar_line(ax, pts: pd.DataFrame, xkey: str, method: str, annotate: bool) -> None:
    """One method on one panel: its α-mean points (sorted by α) with SE bars on both axes."""
    pts = pts.sort_values("alpha_official")
    x, y = pts[f"{xkey}_mean"].to_numpy(float), pts["reward_mean_mean"].to_numpy(float)
    xerr = np.nan_to_num(pts[f"{xkey}_se"].to_numpy(float))
    yerr = np.nan_to_num(pts["reward_mean_se"].to_numpy(float))
    single = {"prior": ("*", "black"), "gp-bo": ("s", "0.45")}
    marker, color = single.get(method, ("o", None))
    style = {"ls": "none"} if method in single else {"ls": "-"}
    ax.errorbar(
        x,
        y,
        xerr=xerr,
        yerr=yerr,
        marker=marker,
        ms=7 if marker == "*" else 4,
        color=color,
        capsize=2,
        lw=1,
        label=method,
        **style,
    )
    if annotate:
        for xi, yi, a in zip(x, y, pts["alpha_official"]):
            if math.isfinite(a):
                ax.annotate(
                    f"{a:g}", (xi, yi), xytext=(3, 3), textcoords="offset points", fontsize=6
                )


def plot_frontier(
    means: pd.DataFrame, task: str, path: Path, targets: pd.DataFrame | None = None
) -> Path:
    """Two panels for ``task``: final reward vs. natural_frac and vs. Vendi (α annotated)."""
    plt = pyplot()

    sub = means[means["task"] == task]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, xkey, label in zip(axes, ("natural_frac", "vendi"), ("natural frac", "Vendi score")):
        for method, pts in sub.groupby("method", sort=False):
            _errorbar_line(ax, pts, xkey, str(method), annotate=True)
        ax.set_xlabel(f"{label} (final batch)")
        ax.set_ylabel("final reward (batch mean)")
        ax.grid(alpha=0.3)
    prior = sub[sub["method"] == "prior"]
    if not prior.empty:
        limit = NATURAL_RATIO * float(prior["natural_frac_mean"].iloc[0])
        axes[0].axvline(limit, color="0.5", ls=":", lw=1, label=f"{NATURAL_RATIO} × prior")
    if targets is not None:
        axes[0].plot(
            targets["natural_frac"],
            targets["reward"],
            "x--",
            color="0.35",
            lw=1,
            ms=5,
            label="KL-optimal target (γ = 1)",
        )
        for _, t in targets.iterrows():
            axes[1].axhline(t["reward"], color="0.6", ls=":", lw=0.8)
            axes[1].annotate(
                f"target α={t['alpha_official']:g}",
                (1.0, t["reward"]),
                xycoords=("axes fraction", "data"),
                ha="right",
                va="bottom",
                fontsize=6,
                color="0.4",
            )
    axes[0].legend(fontsize=7)
    q = int(sub["queries"].iloc[0])
    fig.suptitle(f"{task}: reward / naturalness / diversity frontier after {q} queries")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
