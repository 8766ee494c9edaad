"""Running a frontier: the grid's runs, then the tables and the report
(:func:`run_frontier`); the command line ``python -m benchmarks.frontier`` (:func:`main`)."""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import Executor
from pathlib import Path

import torch

from benchmarks.frontier.grid import FRONTIER_SUITES, FrontierSuite, get_frontier_suite
from benchmarks.frontier.report import frontier_markdown, plot_frontier, rings_kl_targets
from benchmarks.frontier.summary import (
    collect_frontier,
    finite_or_none,
    frontier_means,
    summarize_frontier,
)
from benchmarks.options import add_grid_arguments, split_list
from benchmarks.runner import grid_executor, run_cells
from benchmarks.tasks import get_task
from oracles.cluster import parse_dask_spec

__all__ = ["DESCRIPTION", "run_frontier", "main"]

DESCRIPTION = (
    "Frontier benchmark: sweep each regularized method's KL weight α_official at a fixed budget."
)


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
    targets = rings_kl_targets(fs.alphas_for("rings")) if "rings" in fs.tasks else None
    (out / "frontier.md").write_text(frontier_markdown(fs, means, summary, targets))
    for task in fs.tasks:
        plot_frontier(
            means, task, out / f"frontier_{task}.png", targets if task == "rings" else None
        )
    meta = {
        "frontier": fs.name,
        "budgets": list(fs.suite.budgets),
        "num_inference_steps": fs.suite.num_inference_steps,
        "runs": len(cells),
        "runs_done_in_this_invocation": n_run,
        "this_invocation_s": elapsed,
        "workers": int(workers),
    }
    (out / "frontier.json").write_text(json.dumps(meta, indent=2))
    return summary


def _json_safe(obj):
    """Replace non-finite floats by ``None`` so the JSON line is standard JSON."""
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    return finite_or_none(obj) if isinstance(obj, float) else obj


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.frontier --suite quick --out DIR``; the summary JSON is printed last."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.frontier", description=DESCRIPTION)
    p.add_argument("--suite", choices=sorted(FRONTIER_SUITES), default="quick")
    p.add_argument("--out", default="runs/frontier")
    p.add_argument("--alphas", default=None, help="alpha_official values, e.g. 0.25,1,4")
    add_grid_arguments(p)
    args = p.parse_args(argv)
    seeds, alphas = split_list(args.seeds), split_list(args.alphas)
    fs = get_frontier_suite(args.suite).restricted(
        tasks=split_list(args.tasks),
        methods=split_list(args.methods),
        seeds=[int(s) for s in seeds] if seeds else None,
        alphas=[float(a) for a in alphas] if alphas else None,
        num_inference_steps=args.steps,
    )
    for t in fs.tasks:
        get_task(t)  # unknown names fail here, before any run starts
    workers = int(args.workers or min(2, os.cpu_count() or 1))
    if args.dask:
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
