"""Run the offline grid and its online continuation (docs/offline.md declares the grid).

``nice -n 10 env OMP_NUM_THREADS=1 python -m benchmarks.offline.run --out docs/results/offline``

For each task and seed: build the archive (best 10 % hidden), let every method of
:data:`~benchmarks.offline.methods.OFFLINE_METHODS` propose 128 designs once, judge them
with the task's oracle and write one row per method to ``offline.csv``. Then the online
continuation: the warm ``sqdf`` study (the archive and its offline batch told) keeps going
for ``ROUNDS − 1`` more rounds of 128, and a cold SQDF study with the same settings and seed
runs ``ROUNDS`` rounds of 128 from the prior; one row per round and study in
``online.csv``. A (task, seed) block already in both files is skipped (resumable).
``--visible-prior`` retrains the generative methods' prior on the visible archive first
(airfoils; :mod:`.visible_prior`).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from benchmarks.offline.archives import ARCHIVE_TASKS, Archive, build_archive, evaluate
from benchmarks.offline.methods import BATCH, OFFLINE_METHODS, make_finetuned, propose
from benchmarks.offline.visible_prior import VISIBLE_PRIOR_TASKS, visible_prior
from benchmarks.tasks import get_task

__all__ = ["ROUNDS", "offline_row", "online_rows", "main"]

ROUNDS = 4  # queried batches of 128 in the online continuation (warm: the offline one first)


def offline_row(archive: Archive, method: str, seed: int, x: torch.Tensor, secs: float) -> dict:
    """One ``offline.csv`` row: normalized 100th / 50th percentile of the batch's values,
    its valid share, naturalness and diversity (the task's measures)."""
    y, _ = evaluate(archive.task, x)
    z = archive.normalized(y)
    scores = get_task(archive.task).score_designs(x)
    return {
        "task": archive.task,
        "seed": seed,
        "method": method,
        "p100": float(np.max(z)),
        "p50": float(np.median(z)),
        "valid_frac": float(np.isfinite(y).mean()),
        "best_visible": float(archive.normalized(np.nanmax(archive.seen()[1]))),
        **scores,
        "time_s": secs,
    }


def _tell_batch(opt, task_name: str, x: torch.Tensor, ids: list[int]) -> np.ndarray:
    y, reasons = evaluate(task_name, x)
    opt.tell(ids, y, reasons=reasons)
    return y


def online_rows(archive: Archive, seed: int, warm, warm_batch, prior=None) -> list[dict]:
    """The warm study (``warm``, its first batch ``warm_batch`` asked, not told) and a cold
    one, ``ROUNDS`` queried batches each; one row per study and round (best so far of the
    queried designs, normalized; ``with_archive``: the archive's visible best included)."""
    rows = []
    seen_best = float(np.nanmax(archive.seen()[1]))
    for start, opt, batch in (("warm", warm, warm_batch), ("cold", None, None)):
        t0 = time.perf_counter()
        if opt is None:
            opt = make_finetuned("sqdf", archive.task, seed, prior)
        best = -np.inf
        for r in range(1, ROUNDS + 1):
            if batch is None:
                batch = opt.ask(BATCH)
            y = _tell_batch(opt, archive.task, batch.x, batch.ids)
            batch = None
            if np.isfinite(y).any():
                best = max(best, float(np.nanmax(y)))
            with_archive = max(best, seen_best) if start == "warm" else best
            rows.append(
                {
                    "task": archive.task,
                    "seed": seed,
                    "start": start,
                    "round": r,
                    "queries": r * BATCH,
                    "best": float(archive.normalized(best)),
                    "with_archive": float(archive.normalized(with_archive)),
                    "time_s": time.perf_counter() - t0,
                }
            )
    return rows


class _Asked:
    """The offline batch of the warm study, asked but not yet told."""

    def __init__(self, ids: list[int], x: torch.Tensor) -> None:
        self.ids, self.x = ids, x


def run_block(
    task_name: str,
    seed: int,
    methods: tuple[str, ...],
    prior_folder: Path | None = None,
    designs: Path | None = None,
) -> tuple[list, list]:
    """Every offline method and the online continuation for one task and seed; with
    ``prior_folder``, the generative methods use a prior trained on the visible archive
    only (:func:`~benchmarks.offline.visible_prior.visible_prior`, saved there); with
    ``designs``, each offline batch is saved there as ``<task>-<seed>-<method>.npy``."""
    torch.manual_seed(seed)  # nothing should draw from it; a guard for third-party code
    archive = build_archive(task_name)
    prior = None if prior_folder is None else visible_prior(archive, prior_folder)
    rows, warm = [], None
    for method in tqdm(methods, desc=f"{task_name} seed {seed}", leave=False):
        t0 = time.perf_counter()
        x, opt = propose(method, archive, seed, prior)
        rows.append(offline_row(archive, method, seed, x, time.perf_counter() - t0))
        if designs is not None:
            designs.mkdir(parents=True, exist_ok=True)
            np.save(designs / f"{task_name}-{seed}-{method}.npy", x.detach().cpu().numpy())
        if method == "sqdf":
            ids = [int(i) for i in opt.pending]
            warm = (opt, _Asked(ids, x))
        print(f"  {task_name} seed {seed} {method}: {rows[-1]}", flush=True)
    online = online_rows(archive, seed, *warm, prior=prior) if warm is not None else []
    return rows, online


def _append(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    frame = pd.DataFrame(rows)
    frame.to_csv(path, mode="a", header=not path.exists(), index=False)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="docs/results/offline")
    p.add_argument("--tasks", default=",".join(ARCHIVE_TASKS))
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--methods", default=",".join(OFFLINE_METHODS))
    p.add_argument(
        "--visible-prior",
        action="store_true",
        help="the generative methods use a prior retrained on the visible archive only "
        f"(tasks {', '.join(VISIBLE_PRIOR_TASKS)}; saved in OUT/prior-TASK and reused)",
    )
    p.add_argument(
        "--save-designs", action="store_true", help="save every offline batch in OUT/designs"
    )
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    methods = tuple(m for m in args.methods.split(",") if m)
    unknown = [m for m in methods if m not in OFFLINE_METHODS]
    if unknown:
        raise SystemExit(f"unknown methods {unknown}; accepted: {', '.join(OFFLINE_METHODS)}")
    off_csv, on_csv = out / "offline.csv", out / "online.csv"
    done = set()
    if off_csv.exists():
        done = {(t, int(s)) for t, s in pd.read_csv(off_csv)[["task", "seed"]].itertuples(False)}
    for task_name in args.tasks.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            if (task_name, seed) in done:
                print(f"skip {task_name} seed {seed} (in {off_csv})", flush=True)
                continue
            t0 = time.perf_counter()
            folder = out / f"prior-{task_name}" if args.visible_prior else None
            keep = out / "designs" if args.save_designs else None
            rows, online = run_block(task_name, seed, methods, folder, keep)
            _append(on_csv, online)
            _append(off_csv, rows)  # last: a block counts as done once both are written
            print(f"{task_name} seed {seed}: {time.perf_counter() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
