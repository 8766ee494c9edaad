"""The frontier's tables and summary numbers: the final round of every run
(:func:`collect_frontier`), means over seeds (:func:`frontier_means`), the constrained reward
(:func:`constrained_reward`) and the diversity front area (:func:`dominated_area`) per task and
method (:func:`summarize_frontier`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.layout import Cell, run_dir

__all__ = [
    "NATURAL_RATIO",
    "VENDI_REFERENCE",
    "FRONTIER_METRICS",
    "FRONTIER_COLUMNS",
    "collect_frontier",
    "frontier_means",
    "constrained_reward",
    "dominated_area",
    "summarize_frontier",
    "finite_or_none",
]

NATURAL_RATIO = 0.95  # constraint: mean natural_frac >= 0.95 x the prior's
VENDI_REFERENCE = 1.0  # Vendi of a collapsed batch: the front's reference y
FRONTIER_METRICS = (
    "reward_mean",
    "best_so_far",
    "natural_frac",
    "naturalness",
    "vendi",
    "kl_to_prior",
    "optimism_gap",
    "pred_gap",
)
FRONTIER_COLUMNS = ["task", "method", "alpha_official", "seed", "queries", *FRONTIER_METRICS]


def collect_frontier(cells: Sequence[Cell], out: str | Path) -> pd.DataFrame:
    """One row per finished cell (FRONTIER_COLUMNS): its final round's metrics."""
    rows = []
    for task, method, seed, alpha in cells:
        rounds = pd.read_csv(run_dir(Path(out), task, method, seed, alpha) / "rounds.csv")
        last = rounds.iloc[-1]
        row = {"task": task, "method": method, "seed": int(seed)}
        row["alpha_official"] = math.nan if alpha is None else float(alpha)
        row["queries"] = int(last["queries"])
        # Run folders written before a metric existed lack its column: NaN.
        row.update({m: float(last.get(m, math.nan)) for m in FRONTIER_METRICS})
        rows.append(row)
    return pd.DataFrame(rows, columns=FRONTIER_COLUMNS)


def frontier_means(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean and SE over seeds per task × method × α (``<metric>_mean``, ``<metric>_se``).

    ``frame``: :func:`collect_frontier`'s rows. SE = sample std / √seeds (NaN for one seed);
    α-free methods keep one row with NaN α. Columns: task, method, alpha_official, n_seeds,
    queries, then the metric columns.
    """
    keys = ["task", "method", "alpha_official"]
    g = frame.groupby(keys, sort=False, dropna=False)
    out = g[["queries"]].mean()
    out.insert(0, "n_seeds", g["seed"].nunique())
    for m in FRONTIER_METRICS:
        out[f"{m}_mean"] = g[m].mean()
        out[f"{m}_se"] = g[m].std(ddof=1) / np.sqrt(g[m].count().clip(lower=1))
    return out.reset_index()


def constrained_reward(
    points: pd.DataFrame, prior_natural_frac: float, ratio: float = NATURAL_RATIO
) -> tuple[float, float | None] | None:
    """Best mean reward of one method among its α values that keep the data's naturalness.

    Args:
        points: one row per α of one method, columns ``alpha_official`` (NaN for an α-free
            method), ``reward`` and ``natural_frac`` (means over seeds).
        prior_natural_frac: the prior's mean natural_frac on the same task.
        ratio: an α qualifies when its natural_frac ≥ ``ratio`` × ``prior_natural_frac``.

    Returns:
        ``(reward, alpha)`` of the best qualifying α (alpha ``None`` when NaN), or ``None``
        when no α qualifies (or the prior's natural_frac is unknown).
    """
    if not math.isfinite(prior_natural_frac):
        return None
    ok = points[
        (points["natural_frac"] >= ratio * prior_natural_frac) & np.isfinite(points["reward"])
    ]
    if ok.empty:
        return None
    best = ok.loc[ok["reward"].idxmax()]
    alpha = float(best["alpha_official"])
    return float(best["reward"]), (alpha if math.isfinite(alpha) else None)


def dominated_area(
    points: np.ndarray | Sequence[Sequence[float]], ref: tuple[float, float] = (0.0, 1.0)
) -> float:
    """2-D hypervolume: the area dominated by ``points`` (both coordinates maximized) above ``ref``.

    ``points``: ``(n, 2)`` rows (x, y). Points are clipped to x ≥ ref_x, y ≥ ref_y (a point
    below the reference on either axis adds nothing; non-finite rows are dropped). E.g.
    (2, 3) → 2·2 = 4; (1, 5) and (3, 2) → 1·4 + 2·1 = 6.
    """
    p = np.asarray(points, dtype=float).reshape(-1, 2)
    p = p[np.isfinite(p).all(1)] - np.asarray(ref, dtype=float)
    p = p[(p[:, 0] > 0) & (p[:, 1] > 0)]
    if p.size == 0:
        return 0.0
    # 1. Sweep x from the right; 2. each strip [x_next, x] is covered up to the max y so far.
    p = p[np.argsort(-p[:, 0])]
    xs = np.append(p[:, 0], 0.0)
    heights = np.maximum.accumulate(p[:, 1])
    return float(np.sum((xs[:-1] - xs[1:]) * heights))


def _method_points(means: pd.DataFrame, task: str, method: str) -> pd.DataFrame:
    """α-mean points of one method on one task: alpha_official, reward, natural_frac, vendi."""
    sub = means[(means["task"] == task) & (means["method"] == method)]
    return pd.DataFrame(
        {
            "alpha_official": sub["alpha_official"].to_numpy(dtype=float),
            "reward": sub["reward_mean_mean"].to_numpy(dtype=float),
            "natural_frac": sub["natural_frac_mean"].to_numpy(dtype=float),
            "vendi": sub["vendi_mean"].to_numpy(dtype=float),
        }
    )


def finite_or_none(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def summarize_frontier(means: pd.DataFrame) -> dict[str, dict[str, dict[str, float | None]]]:
    """``{task: {method: {constrained_reward, constrained_alpha, diversity_front}}}``.

    ``means``: :func:`frontier_means`. The references are the task's ``prior`` row (mean
    final reward and natural_frac); without a prior row every value is ``None``. The
    diversity front is :func:`dominated_area` of (reward − prior reward, Vendi) from (0, 1).
    """
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for task in dict.fromkeys(means["task"]):
        prior = _method_points(means, task, "prior")
        has_prior = not prior.empty
        prior_reward = float(prior["reward"].iloc[0]) if has_prior else math.nan
        prior_nat = float(prior["natural_frac"].iloc[0]) if has_prior else math.nan
        out[task] = {}
        for method in dict.fromkeys(means.loc[means["task"] == task, "method"]):
            pts = _method_points(means, task, method)
            best = constrained_reward(pts, prior_nat)
            gain = np.stack([pts["reward"] - prior_reward, pts["vendi"]], 1)
            out[task][method] = {
                "constrained_reward": None if best is None else best[0],
                "constrained_alpha": None if best is None else best[1],
                "diversity_front": dominated_area(gain, (0.0, VENDI_REFERENCE))
                if has_prior
                else None,
            }
    return out
