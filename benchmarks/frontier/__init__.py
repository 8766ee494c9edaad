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

from benchmarks.frontier.grid import (
    FRONTIER_SUITES,
    FULL_ALPHAS,
    QUICK_ALPHAS,
    FrontierSuite,
    get_frontier_suite,
    is_regularized,
)
from benchmarks.frontier.report import frontier_markdown, plot_frontier, rings_kl_targets
from benchmarks.frontier.run import main, run_frontier
from benchmarks.frontier.summary import (
    FRONTIER_COLUMNS,
    FRONTIER_METRICS,
    NATURAL_RATIO,
    VENDI_REFERENCE,
    collect_frontier,
    constrained_reward,
    dominated_area,
    frontier_means,
    summarize_frontier,
)

__all__ = [
    "FRONTIER_COLUMNS",
    "FRONTIER_METRICS",
    "FULL_ALPHAS",
    "QUICK_ALPHAS",
    "NATURAL_RATIO",
    "VENDI_REFERENCE",
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
