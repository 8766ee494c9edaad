"""Run benchmark suites: one run = (task, method, seed), driven through ask/tell only.

Layout of ``OUT`` (:mod:`benchmarks.layout`; resumable: a run whose ``rounds.csv`` AND
``done.json`` exist is skipped)::

    OUT/runs/<task>/<method>/seed<k>/rounds.csv        per-round metrics (ROUND_COLUMNS)
    OUT/runs/<task>/<method>/seed<k>/samples.pt        up to 16 designs per round (tensors)
    OUT/runs/<task>/<method>/seed<k>/done.json         done marker: wall time, suite, settings
    OUT/summary.csv     mean ± standard error over seeds per task × method × round
    OUT/summary.md      markdown tables (final round per task) + naturalness references
    OUT/curves_<task>.png, OUT/samples_<task>.png (image tasks)

One round r of a run:

1. ``batch = opt.ask(budgets[r])`` — the optimizer fits/fine-tunes on everything told so far
   (round 0: nothing yet, so the generative methods sample the pretrained prior);
2. ``y = oracle(batch.x)`` (NaN = failed point);
3. ``opt.tell(batch.ids, y)``;
4. metrics of this batch: reward mean / top-10% mean / max, best-so-far, naturalness (mean
   log q and the share above the held-out 5th percentile), diversity (Vendi score with the
   task's fixed RBF bandwidth, mean pairwise distance), the optimizer's own estimated chain
   KL to the prior (``metrics()["kl_to_prior"]`` where it has one), its surrogate's
   ``optimism_gap`` / ``pred_gap`` on the batch just told (``metrics()`` keys of the same
   names, NaN where it has none) and wall times; then the task's own named numbers
   (:meth:`benchmarks.tasks.Task.extra_scores`, e.g. ``airfoil-ld``'s validated L/D) as
   extra columns after ``ROUND_COLUMNS``.

After the last round, the task's numbers for the whole run (:meth:`benchmarks.tasks.Task.final_scores`
of every told design and value, e.g. the airfoil tasks' XFoil judgement of the 10 best
designs) are added as more extra columns of the last round's row (NaN in the others).

A run with an explicit KL weight (``run_one(..., alpha_official=a)``, the frontier benchmark
:mod:`benchmarks.frontier`) lives in ``OUT/runs/<task>/<method>/a<a>/seed<k>/`` instead.

Command line: ``sqdf-bbo bench --suite quick --out runs/quick`` or
``python -m benchmarks.runner --suite smoke --out /tmp/smoke``. With ``--dask ADDRESS`` or
``--dask local:N`` every run is one job on a Dask cluster instead of the local process pool
(:func:`grid_executor`); ``OUT`` must then be a folder that the workers can write (shared
file system, or the same machine).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing as mp
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from benchmarks.layout import ROUND_COLUMNS, Cell, alpha_label, cell_label, is_done, run_dir
from benchmarks.metrics import reward_stats
from benchmarks.options import add_grid_arguments, split_list
from benchmarks.report import write_report
from benchmarks.suites import SUITES, Suite, get_suite, make_optimizer
from benchmarks.tasks import Task, get_task
from oracles.cluster import dask_client, dask_executor, parse_dask_spec
from sqdf_bbo.optimizers import Optimizer
from sqdf_bbo.optimizers.inputs import oracle_output
from sqdf_bbo.progress import progress_bar

__all__ = [
    "ROUND_COLUMNS",
    "Cell",
    "alpha_label",
    "cell_label",
    "run_dir",
    "is_done",
    "ask_tell_round",
    "batch_metrics",
    "kept_samples",
    "save_run",
    "run_one",
    "run_cells",
    "grid_executor",
    "run_suite",
    "bench_cli",
    "add_grid_arguments",
    "main",
]

_N_SAMPLES_KEPT = 16  # designs kept per round (all of them when a design has <= 16 numbers)
_SMALL_DESIGN = 16


def ask_tell_round(
    opt: Optimizer, oracle: Callable[[torch.Tensor], torch.Tensor], budget: int
) -> tuple[Any, torch.Tensor, float, float, float]:
    """Steps 1.-3. of a round: ask (fit + fine-tune happen here), oracle, tell.

    Returns the batch (:class:`~sqdf_bbo.optimizers.base.Batch`), the oracle's values and
    the seconds of the ask, the oracle and the tell.
    """
    t0 = time.perf_counter()
    batch = opt.ask(int(budget))
    t1 = time.perf_counter()
    y = oracle(batch.x)
    t2 = time.perf_counter()
    # the oracle's failure reasons and transient flags are told with the values, as run() does
    values, reasons, transient = oracle_output(oracle, y, batch.ids, opt.dtype)
    opt.tell(batch.ids, values, reasons=reasons, transient=transient)
    t3 = time.perf_counter()
    return batch, y, t1 - t0, t2 - t1, t3 - t2


def batch_metrics(
    task: Task, opt: Optimizer, batch: Any, y: np.ndarray, told: list[float]
) -> tuple[dict[str, float], dict[str, float]]:
    """Step 4. of a round (not timed): the batch's metric columns of ``ROUND_COLUMNS`` (reward,
    best so far over ``told``, every value told so far; the task's naturalness and diversity
    scores; the optimizer's diagnostics), and the task's own extra numbers."""
    stats = reward_stats(y)
    finite = np.asarray(told)[np.isfinite(told)]
    scores = task.score_designs(batch.x)
    extra = task.extra_scores(batch.x)
    diag = opt.metrics()
    metrics = {
        "reward_mean": stats.mean,
        "reward_top10": stats.top10_mean,
        "reward_max": stats.max,
        "best_so_far": float(finite.max()) if finite.size else math.nan,
        "n_failed": stats.n_failed,
        **scores,
        "kl_to_prior": float(diag.get("kl_to_prior", math.nan)),
        "optimism_gap": float(diag.get("optimism_gap", math.nan)),
        "pred_gap": float(diag.get("pred_gap", math.nan)),
    }
    if "constraint_acceptance" in diag:  # known constraints: share of draws that met them
        metrics["constraint_acceptance"] = float(diag["constraint_acceptance"])
    return metrics, extra


def kept_samples(x: torch.Tensor) -> torch.Tensor:
    """The designs of a round kept in ``samples.pt``: all of small designs, else the first 16."""
    keep = x if x[0].numel() <= _SMALL_DESIGN else x[:_N_SAMPLES_KEPT]
    return keep.detach().cpu().clone()


def save_run(folder: Path, rounds: pd.DataFrame, samples: dict[str, torch.Tensor]) -> None:
    """Write ``samples.pt`` and ``rounds.csv`` (atomically) of a run (``done.json`` comes last,
    :func:`mark_done`)."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(samples, folder / "samples.pt")
    tmp = folder / "rounds.csv.tmp"
    rounds.to_csv(tmp, index=False)
    os.replace(tmp, folder / "rounds.csv")


def mark_done(folder: Path, marker: dict[str, Any]) -> None:
    """Write the run's ``done.json``: from now on :func:`is_done` skips it."""
    (folder / "done.json").write_text(json.dumps(marker, indent=2))


def done_marker(
    task_name: str,
    method: str,
    seed: int,
    alpha_official: float | None,
    suite: Suite,
    optimizer_wall_s: float,
    total_s: float,
) -> dict[str, Any]:
    """The content of ``done.json``: the run, its suite's settings and its times."""
    return {
        "task": task_name,
        "method": method,
        "seed": seed,
        "alpha_official": alpha_official,
        "suite": suite.name,
        "budgets": list(suite.budgets),
        "optimizer_wall_s": optimizer_wall_s,
        "total_s": total_s,
        "suite_settings": {
            k: v for k, v in asdict(suite).items() if k not in ("tasks", "methods", "seeds")
        },
    }


def run_one(
    task_name: str,
    method: str,
    seed: int,
    suite: Suite,
    out: Path | None = None,
    progress: bool = True,
    on_round: Callable[[dict, torch.Tensor], None] | None = None,
    *,
    alpha_official: float | None = None,
) -> pd.DataFrame:
    """Run one (task, method, seed) for ``len(suite.budgets)`` rounds; returns rounds.csv's rows.

    With ``out``, writes ``rounds.csv``, ``samples.pt`` and (last) ``done.json`` to the run
    folder; an already finished run is read back instead of re-run. ``on_round(row, x)`` is
    called after each round with its metrics row and the batch's designs ``(n, *shape)``.
    ``alpha_official`` sets the KL weight of a regularized method (see
    :func:`benchmarks.suites.make_optimizer`) and puts the run in its ``a<alpha>`` folder.
    """
    folder = None if out is None else run_dir(out, task_name, method, seed, alpha_official)
    if folder is not None and is_done(folder):
        return pd.read_csv(folder / "rounds.csv")
    task = get_task(task_name)
    oracle = task.oracle(seed)
    t_start = time.perf_counter()
    opt = make_optimizer(
        method, task, seed, suite, progress=progress, alpha_official=alpha_official
    )
    rows: list[dict] = []
    samples: dict[str, torch.Tensor] = {}
    told: list[float] = []
    told_x: list[torch.Tensor] = []  # every design, for the task's final_scores
    queries = 0
    wall = time.perf_counter() - t_start
    for r, budget in enumerate(suite.budgets):
        batch, y, ask_s, oracle_s, tell_s = ask_tell_round(opt, oracle, budget)
        wall += ask_s + tell_s
        y_np = torch.as_tensor(y).detach().cpu().double().numpy()
        told.extend(y_np.tolist())
        queries += len(batch.ids)
        metrics, extra = batch_metrics(task, opt, batch, y_np, told)
        rows.append(
            {
                "task": task_name,
                "method": method,
                "seed": seed,
                "round": r,
                "batch_size": len(batch.ids),
                "queries": queries,
                **metrics,
                "ask_s": ask_s,
                "oracle_s": oracle_s,
                "wall_s": wall,
                **{k: v for k, v in extra.items() if k not in ROUND_COLUMNS},
            }
        )
        samples[f"round{r}"] = kept_samples(batch.x)
        if task.final_metrics is not None:
            told_x.append(batch.x.detach().cpu())
        if on_round is not None:
            on_round(rows[-1], batch.x.detach().cpu())
    if rows and told_x:
        final = task.final_scores(torch.cat(told_x), np.asarray(told, dtype=np.float64))
        rows[-1].update({k: v for k, v in final.items() if k not in ROUND_COLUMNS})
    extra_columns = list(dict.fromkeys(k for row in rows for k in row if k not in ROUND_COLUMNS))
    df = pd.DataFrame(rows, columns=ROUND_COLUMNS + extra_columns)
    if folder is not None:
        save_run(folder, df, samples)
        total_s = time.perf_counter() - t_start
        mark_done(
            folder, done_marker(task_name, method, seed, alpha_official, suite, wall, total_s)
        )
    return df


def _init_worker(threads: int) -> None:
    torch.set_num_threads(int(threads))


def _run_in_worker(cell: Cell, suite: Suite, out: str, threads: int | None = None) -> str:
    if threads:
        torch.set_num_threads(int(threads))
    task_name, method, seed, alpha = cell
    run_one(task_name, method, seed, suite, Path(out), progress=False, alpha_official=alpha)
    return cell_label(cell)


def run_cells(
    cells: list[Cell],
    suite: Suite,
    out: str | Path,
    progress: bool = True,
    workers: int = 1,
    threads: int | None = None,
    desc: str = "",
    *,
    executor: Executor | None = None,
) -> int:
    """Run every unfinished cell of ``cells`` into ``out``; returns how many were run.

    Finished runs (:func:`is_done`) are skipped. With ``executor`` (e.g. a Dask executor,
    :func:`grid_executor`) each run is one job submitted to it, with ``threads`` torch threads
    (default 1), and ``workers`` is ignored; otherwise ``workers > 1`` runs them in that many
    ``spawn`` processes with ``threads`` torch threads each (default 1), and ``workers = 1``
    in this process. ``desc`` labels the progress bar.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    todo = [c for c in cells if not is_done(run_dir(out, *c))]
    bar = progress_bar(total=len(cells), progress=progress, desc=desc or suite.name, unit="run")
    bar.update(len(cells) - len(todo))
    if executor is not None and todo:
        futures = [executor.submit(_run_in_worker, c, suite, str(out), threads or 1) for c in todo]
        for fut in as_completed(futures):
            bar.set_postfix_str(fut.result())
            bar.update(1)
    elif workers > 1 and len(todo) > 1:
        with ProcessPoolExecutor(
            max_workers=int(workers),
            mp_context=mp.get_context("spawn"),
            initializer=_init_worker,
            initargs=(threads or 1,),
        ) as pool:
            futures = [pool.submit(_run_in_worker, c, suite, str(out)) for c in todo]
            for fut in as_completed(futures):
                bar.set_postfix_str(fut.result())
                bar.update(1)
    else:
        for cell in todo:
            bar.set_postfix_str(cell_label(cell))
            task_name, method, seed, alpha = cell
            run_one(task_name, method, seed, suite, out, progress=False, alpha_official=alpha)
            bar.update(1)
    bar.close()
    return len(todo)


@contextlib.contextmanager
def grid_executor(dask: str | None) -> Iterator[Executor | None]:
    """The executor of a ``--dask`` option: ``None`` without one (the local process pool).

    ``dask``: ``"local:N"`` (a LocalCluster of N single-threaded worker processes, closed on
    exit) or a scheduler address (the client is closed on exit, the cluster is not). Needs
    ``pip install -e ".[dask]"``.
    """
    if not dask:
        yield None
        return
    with dask_client(dask) as client:
        yield dask_executor(client)


def run_suite(
    suite: Suite,
    out: str | Path,
    progress: bool = True,
    report: bool = True,
    workers: int = 1,
    threads: int | None = None,
    *,
    executor: Executor | None = None,
) -> pd.DataFrame:
    """Run (or resume) every run of ``suite`` into ``out``; write the summary and plots.

    Args:
        suite: the grid and budgets.
        out: output folder (finished runs in it are skipped).
        progress: tqdm bar over runs.
        report: write summary.csv / summary.md / plots at the end.
        workers: runs executed in parallel processes (``spawn``); 1 runs them in this
            process. Only tasks registered at import of :mod:`benchmarks.tasks` are
            available in worker processes.
        threads: torch threads per worker process (default 1: these models are tiny and
            oversubscribed OpenMP threads slow down by orders of magnitude on shared cores).
        executor: run each run as one job on this executor instead (a Dask cluster:
            :func:`grid_executor`); ``workers`` is then ignored.
    """
    out = Path(out)
    grid: list[Cell] = [
        (t, m, s, None) for t in suite.tasks for m in suite.methods for s in suite.seeds
    ]
    t0 = time.perf_counter()
    n_run = run_cells(
        grid, suite, out, progress, workers, threads, desc=f"suite {suite.name}", executor=executor
    )
    elapsed = time.perf_counter() - t0
    rounds = pd.concat(
        [pd.read_csv(run_dir(out, *g) / "rounds.csv") for g in grid], ignore_index=True
    )
    (out / "suite.json").write_text(
        json.dumps(
            {
                "suite": suite.name,
                "description": suite.description,
                "tasks": list(suite.tasks),
                "methods": list(suite.methods),
                "seeds": list(suite.seeds),
                "budgets": list(suite.budgets),
                "this_invocation_s": elapsed,
                "runs_done_in_this_invocation": n_run,
                "workers": int(workers),
                "sum_of_run_times_s": float(
                    sum(
                        json.loads((run_dir(out, *g) / "done.json").read_text())["total_s"]
                        for g in grid
                    )
                ),
            },
            indent=2,
        )
    )
    if report:
        write_report(rounds, out, suite)
    return rounds


def bench_cli(args: argparse.Namespace) -> int:
    """Entry of ``sqdf-bbo bench``.

    ``args``: ``suite``, ``out``, optional ``seeds`` / ``tasks`` / ``methods`` (comma-separated
    filters), ``progress``, ``workers`` (parallel runs, default min(2, CPU count)),
    ``threads`` (torch threads per process, default 1) and ``dask`` (a scheduler address or
    ``local:N``: runs go to that Dask cluster instead of local processes).
    """
    suite = get_suite(args.suite)
    seeds = split_list(getattr(args, "seeds", None))
    suite = suite.restricted(
        tasks=split_list(getattr(args, "tasks", None)),
        methods=split_list(getattr(args, "methods", None)),
        seeds=[int(s) for s in seeds] if seeds else None,
        num_inference_steps=getattr(args, "steps", None),
    )
    for t in suite.tasks:
        get_task(t)  # unknown names fail here, before any run starts
    threads = int(getattr(args, "threads", None) or 1)
    workers = int(getattr(args, "workers", None) or min(2, os.cpu_count() or 1))
    dask = getattr(args, "dask", None)
    if dask:
        parse_dask_spec(dask)  # a malformed spec fails here, before a cluster starts
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    with grid_executor(dask) as executor:
        run_suite(
            suite,
            args.out,
            progress=getattr(args, "progress", True),
            workers=workers,
            threads=threads,
            executor=executor,
        )
    where = f"Dask {dask}" if dask else f"{workers} worker(s)"
    print(
        f"suite {suite.name}: results in {args.out} ({time.perf_counter() - t0:.0f} s, "
        f"{where} x {threads} torch thread(s))"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.runner --suite quick --out runs/quick``."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.runner", description=__doc__.split("\n")[0]
    )
    p.add_argument("--suite", choices=sorted(SUITES), default="quick")
    p.add_argument("--out", default="runs/bench")
    add_grid_arguments(p)
    return bench_cli(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
