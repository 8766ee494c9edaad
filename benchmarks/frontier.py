"""Frontier benchmark: sweep each regularized method's KL weight α_official at a fixed budget.

One KL weight per method is not a fair comparison of regularized fine-tuners: a method that
moves further from the prior gains reward and loses naturalness and diversity, so the
comparison is between *frontiers*, traced by sweeping α_official over a declared grid at the
same query budget. ``sqdf``, ``seiko-ucb`` and ``seiko-bootstrap`` (and ``sqdf-gamma1`` on
``rings``, so that γ = 1 and γ = 0.9 are both on that frontier) are run at every α of the
grid; ``prior`` and ``gp-bo`` have no KL weight and are single points.

Command line::

    python -m benchmarks.frontier --suite quick --out runs/frontier --workers 2
    python -m benchmarks.frontier --suite smoke --out /tmp/frontier-smoke      # seconds
    python -m benchmarks.frontier --suite quick --out runs/frontier --dask local:4
    python -m benchmarks.frontier --suite full --out /shared/frontier --dask tcp://host:8786

``--tasks``, ``--methods``, ``--seeds``, ``--alphas`` (comma-separated) restrict the grid;
an explicit ``--methods`` runs the listed methods on every selected task. Runs are resumable
and run in parallel processes exactly like :func:`benchmarks.runner.run_suite`: a run lives in
``OUT/runs/<task>/<method>/a<alpha>/seed<k>/`` (``prior``, ``gp-bo``: no ``a<alpha>`` level)
and is skipped once its ``rounds.csv`` and ``done.json`` exist. ``--dask ADDRESS`` or
``--dask local:N`` submits each run as one job to a Dask cluster instead
(:func:`benchmarks.runner.grid_executor`; the workers write their runs into ``OUT``).

Outputs in ``OUT``:

* ``frontier.csv`` — one row per task × method × α × seed (α empty for ``prior``/``gp-bo``):
  the final round's ``reward_mean`` (batch mean), ``best_so_far``, ``natural_frac``,
  ``naturalness``, ``vendi``, ``kl_to_prior``, ``optimism_gap``, ``pred_gap``, ``queries``;
* ``frontier_<task>.png`` — final reward against natural_frac and against Vendi, one line per
  method through its α values (mean over seeds, error bars = SE over seeds on both axes);
  on ``rings`` also the KL-optimal target per α (:func:`rings_kl_targets`);
* ``frontier.md`` — the α-mean table, the constrained reward and the diversity front area
  per task and method;
* as the LAST line of stdout, a JSON object ``{task: {method: {"constrained_reward",
  "constrained_alpha", "diversity_front"}}}`` (:func:`constrained_reward`,
  :func:`dominated_area`).

Sizing of the ``quick`` grid (2 CPU cores, 2 worker processes × 1 torch thread, budgets
32/64/128 of the ``quick`` suite; measured 2026-11-27 on the working tree of that day, with
other jobs sharing the 2 cores at load average 3–4, so wall > CPU time):

====================================  ==============  ==============
one run, α_official = 1, seed 0       wall s          CPU s
====================================  ==============  ==============
digits-logit ``sqdf``                 31–36           25–30
digits-logit ``seiko-bootstrap``      20–41           20–27
digits-logit ``seiko-ucb``            27–33           21–22
digits-ink ``sqdf`` / ``seiko-b.``    32 / 30         21 / 23
digits ``prior``, ``gp-bo``           ≤ 2             ≤ 2
any ``rings`` run                     ≤ 2.6           ≤ 1.7
====================================  ==============  ==============

One α × seed slice of the grid (``--alphas 1 --seeds 0``: 16 runs, every task and method)
took 162 s wall (152 s of runs) and 188 s CPU with ``--workers 2``: ≈ 94 s per slice when the
2 cores are free (CPU / 2), ≈ 150 s at the load measured. The grid is seeds × A such slices
(A = number of α values; the α-free runs, ≈ 9 s CPU per slice, are over-counted):

* all 7 α, 3 seeds: 21 slices ≈ 33 min (free cores) to 53 min (loaded) — does not fit;
* A = 6 or 5: ≈ 28 / 24 min on free cores but 45 / 38 min loaded — fit only on free cores;
* A = 4, ``QUICK_ALPHAS`` = (0.25, 1, 4, 16) (×4 steps over the full range), 3 seeds:
  12 slices ≈ 19 min (free cores) to 30 min (loaded) — chosen: it fits at the measured load
  too, with margin for the per-run cost changing with the methods' settings.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from benchmarks.runner import Cell, add_grid_arguments, grid_executor, run_cells, run_dir
from benchmarks.suites import METHODS, SUITES, Suite
from sqdf_bbo.config import check_fields

__all__ = [
    "FRONTIER_COLUMNS",
    "FULL_ALPHAS",
    "FrontierSuite",
    "FRONTIER_SUITES",
    "get_frontier_suite",
    "is_regularized",
    "collect_frontier",
    "frontier_means",
    "constrained_reward",
    "dominated_area",
    "summarize_frontier",
    "rings_kl_targets",
    "frontier_markdown",
    "plot_frontier",
    "run_frontier",
    "main",
]

FULL_ALPHAS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
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


def is_regularized(method: str) -> bool:
    """True for methods with a KL weight α_official (``sqdf*``, ``seiko-*``)."""
    return method.startswith(("sqdf", "seiko-"))


@dataclass(frozen=True)
class FrontierSuite:
    """One frontier grid: every regularized method at every α, at one suite's budgets.

    Attributes:
        name: registry name.
        suite: the :class:`~benchmarks.suites.Suite` whose budgets and fine-tuning /
            surrogate settings every run uses (its own tasks/methods/seeds are ignored).
        tasks, methods, seeds: the grid; ``methods`` run on every task.
        alphas: the α_official values of the regularized methods (:func:`is_regularized`).
        task_methods: extra methods run on one task only (``{"rings": ("sqdf-gamma1",)}``).
        description: one line.
    """

    name: str
    suite: Suite
    tasks: tuple[str, ...]
    methods: tuple[str, ...]
    alphas: tuple[float, ...]
    seeds: tuple[int, ...]
    task_methods: dict[str, tuple[str, ...]] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        check_fields(self)
        extra = [m for ms in self.task_methods.values() for m in ms]
        unknown = [m for m in (*self.methods, *extra) if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown methods {unknown}; accepted values: {', '.join(METHODS)}")
        if not self.tasks or not self.methods or not self.seeds or not self.alphas:
            raise ValueError("a frontier suite needs at least one task, method, seed and alpha")
        if any(not (math.isfinite(a) and a > 0) for a in self.alphas):
            raise ValueError(f"alphas must be finite and > 0, got {self.alphas}")
        if len(set(self.alphas)) != len(self.alphas):
            raise ValueError(f"alphas must be distinct, got {self.alphas}")

    def methods_for(self, task: str) -> tuple[str, ...]:
        """The methods run on ``task``: ``methods`` then its ``task_methods``."""
        return tuple(dict.fromkeys((*self.methods, *self.task_methods.get(task, ()))))

    def cells(self) -> list[Cell]:
        """Every run ``(task, method, seed, alpha_official)``; α is ``None`` for α-free methods."""
        out: list[Cell] = []
        for task in self.tasks:
            for method in self.methods_for(task):
                alphas = self.alphas if is_regularized(method) else (None,)
                out += [(task, method, s, a) for a in alphas for s in self.seeds]
        return out

    def restricted(
        self,
        tasks: Sequence[str] | None = None,
        methods: Sequence[str] | None = None,
        seeds: Sequence[int] | None = None,
        alphas: Sequence[float] | None = None,
    ) -> FrontierSuite:
        """The same frontier on a sub-grid; explicit ``methods`` replace ``task_methods``."""
        return replace(
            self,
            tasks=tuple(tasks) if tasks else self.tasks,
            methods=tuple(methods) if methods else self.methods,
            seeds=tuple(int(s) for s in seeds) if seeds else self.seeds,
            alphas=tuple(float(a) for a in alphas) if alphas else self.alphas,
            task_methods={} if methods else self.task_methods,
        )


_FRONTIER_METHODS = ("prior", "sqdf", "seiko-ucb", "seiko-bootstrap", "gp-bo")
_RINGS_EXTRA = {"rings": ("sqdf-gamma1",)}
_ALL_TASKS = ("rings", "digits-logit", "digits-ink")
QUICK_ALPHAS = (0.25, 1.0, 4.0, 16.0)

FRONTIER_SUITES: dict[str, FrontierSuite] = {
    "smoke": FrontierSuite(
        name="smoke",
        suite=SUITES["smoke"],
        tasks=("rings",),
        methods=_FRONTIER_METHODS,
        alphas=(0.25, 4.0),
        seeds=(0,),
        task_methods=_RINGS_EXTRA,
        description="rings, 2 alphas, 1 seed, the smoke suite's tiny budgets (tests; seconds)",
    ),
    "quick": FrontierSuite(
        name="quick",
        suite=SUITES["quick"],
        tasks=_ALL_TASKS,
        methods=_FRONTIER_METHODS,
        alphas=QUICK_ALPHAS,
        seeds=(0, 1, 2),
        task_methods=_RINGS_EXTRA,
        description="3 tasks, 3 seeds, the quick suite's budgets 32/64/128 (<= 30 min, 2 cores)",
    ),
    "full": FrontierSuite(
        name="full",
        suite=SUITES["paper"],
        tasks=_ALL_TASKS,
        methods=_FRONTIER_METHODS,
        alphas=FULL_ALPHAS,
        seeds=(0, 1, 2),
        task_methods=_RINGS_EXTRA,
        description="3 tasks, all 7 alphas, 3 seeds, the paper suite's budgets 64..512",
    ),
    "airfoil": FrontierSuite(
        name="airfoil",
        suite=SUITES["airfoil"],
        tasks=("airfoil-ld",),
        methods=(*_FRONTIER_METHODS, "cma-es"),
        alphas=FULL_ALPHAS,
        seeds=(0, 1, 2),
        description="airfoil-ld (the airfoil extra), all 7 alphas, 3 seeds, 2,000 queries",
    ),
}


def get_frontier_suite(name: str) -> FrontierSuite:
    """The frontier suite ``name``."""
    if name not in FRONTIER_SUITES:
        raise ValueError(
            f"unknown frontier suite {name!r}; accepted values: {', '.join(FRONTIER_SUITES)}"
        )
    return FRONTIER_SUITES[name]


# ---------------------------------------------------------------------------- tables
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


def _finite_or_none(v: float | None) -> float | None:
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


# ---------------------------------------------------------------------------- rings target
def rings_kl_targets(alphas: Sequence[float], n: int = 20000, seed: int = 1) -> pd.DataFrame:
    """The KL-regularized optimum p* ∝ p · exp(r̃ / α) on ``rings`` for each α_official.

    Exact for the empirical prior of ``n`` prior samples (importance weights, as in
    :func:`benchmarks.rings_diagnosis.tilted_target`, undiscounted: the γ = 1 objective);
    α = α_official · 2 / D with D = 2. Columns: alpha_official, reward (expected true
    reward), kl (KL(p*‖p), nats), natural_frac (p*'s mass above the naturalness threshold),
    near_mode. About a second on one thread.
    """
    from benchmarks.rings_diagnosis import tilted_target
    from benchmarks.tasks import get_task
    from sqdf_bbo.finetuning.sqdf import official_alpha_to_ours

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
        f"{list(fs.seeds)}; α_official grid: {[float(a) for a in fs.alphas]}.",
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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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


# ---------------------------------------------------------------------------- driver
def run_frontier(
    fs: FrontierSuite,
    out: str | Path,
    workers: int = 1,
    threads: int | None = None,
    progress: bool = True,
    *,
    executor: Executor | None = None,
) -> dict[str, dict[str, dict[str, float | None]]]:
    """Run (or resume) every cell of ``fs`` into ``out``; write the outputs; return the summary.

    ``executor``: run each cell as one job on it (a Dask cluster) instead of ``workers``
    local processes.

    Steps: 1. run the unfinished cells (:func:`benchmarks.runner.run_cells`); 2. collect the
    final rounds into ``frontier.csv``; 3. average over seeds, compute the summary numbers;
    4. write ``frontier.md``, ``frontier_<task>.png`` and ``frontier.json`` (timings).
    """
    out = Path(out)
    cells = fs.cells()
    # 1. Runs.
    t0 = time.perf_counter()
    n_run = run_cells(
        cells, fs.suite, out, progress, workers, threads, f"frontier {fs.name}", executor=executor
    )
    elapsed = time.perf_counter() - t0
    # 2.-3. Tables and summary numbers.
    frame = collect_frontier(cells, out)
    frame.to_csv(out / "frontier.csv", index=False)
    means = frontier_means(frame)
    summary = summarize_frontier(means)
    # 4. Report files.
    targets = rings_kl_targets(fs.alphas) if "rings" in fs.tasks else None
    (out / "frontier.md").write_text(frontier_markdown(fs, means, summary, targets))
    for task in fs.tasks:
        plot_frontier(
            means, task, out / f"frontier_{task}.png", targets if task == "rings" else None
        )
    meta = {
        "frontier": fs.name,
        "budgets": list(fs.suite.budgets),
        "runs": len(cells),
        "runs_done_in_this_invocation": n_run,
        "this_invocation_s": elapsed,
        "workers": int(workers),
    }
    (out / "frontier.json").write_text(json.dumps(meta, indent=2))
    return summary


def _split(s: str | None) -> list[str] | None:
    items = [p.strip() for p in str(s).split(",") if p.strip()] if s else []
    return items or None


def _json_safe(obj):
    """Replace non-finite floats by ``None`` so the JSON line is standard JSON."""
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    return _finite_or_none(obj) if isinstance(obj, float) else obj


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.frontier --suite quick --out DIR``; the summary JSON is printed last."""
    from benchmarks.tasks import get_task

    p = argparse.ArgumentParser(
        prog="python -m benchmarks.frontier", description=__doc__.split("\n")[0]
    )
    p.add_argument("--suite", choices=sorted(FRONTIER_SUITES), default="quick")
    p.add_argument("--out", default="runs/frontier")
    p.add_argument("--alphas", default=None, help="alpha_official values, e.g. 0.25,1,4")
    add_grid_arguments(p)
    args = p.parse_args(argv)
    seeds, alphas = _split(args.seeds), _split(args.alphas)
    fs = get_frontier_suite(args.suite).restricted(
        tasks=_split(args.tasks),
        methods=_split(args.methods),
        seeds=[int(s) for s in seeds] if seeds else None,
        alphas=[float(a) for a in alphas] if alphas else None,
    )
    for t in fs.tasks:
        get_task(t)  # unknown names fail here, before any run starts
    workers = int(args.workers or min(2, os.cpu_count() or 1))
    if args.dask:
        from oracles.cluster import parse_dask_spec

        parse_dask_spec(args.dask)  # a malformed spec fails here, before a cluster starts
    torch.set_num_threads(int(args.threads))
    t0 = time.perf_counter()
    with grid_executor(args.dask) as executor:
        summary = run_frontier(
            fs, args.out, workers, args.threads, args.progress, executor=executor
        )
    print(f"frontier {fs.name}: results in {args.out} ({time.perf_counter() - t0:.0f} s)")
    print(json.dumps(_json_safe(summary)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
