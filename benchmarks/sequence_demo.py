"""Sequence demo: one method on an Ehrlich task, then the best sequences with their motifs marked.

``python -m benchmarks.sequence_demo`` runs SQDF on ``ehrlich-v32-l32-c4-k4-q4`` for 6 rounds of
128 queries (about a minute or two on 2 CPU cores) and prints, per round, the best value, the
share of feasible asks and the batch's diversity, then the best 5 sequences found: each token
of a motif element in place (at each motif's best offset) is shown in brackets, followed by
the motifs and their spacings. ``--method ga|lambo2|prior|seiko-bootstrap``, ``--task``,
``--rounds``, ``--batch``, ``--seed`` change the run.
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch

from benchmarks.runner import ask_tell_round
from benchmarks.suites import SEQUENCE_METHODS, get_suite, make_optimizer
from benchmarks.tasks import get_task
from sqdf_bbo.sequences import format_sequence

__all__ = ["run_sequence_demo", "main"]


def run_sequence_demo(
    task_name: str = "ehrlich-v32-l32-c4-k4-q4",
    method: str = "sqdf",
    rounds: int = 6,
    batch: int = 128,
    seed: int = 0,
    top: int = 5,
) -> list[tuple[float, list[int]]]:
    """Run and print (module docstring); returns the ``top`` (value, tokens) found."""
    task = get_task(task_name)
    oracle = task.oracle(seed)
    suite = get_suite("ehrlich").restricted(tasks=[task_name], methods=[method], seeds=[seed])
    opt = make_optimizer(method, task, seed, suite)
    seen: dict[tuple[int, ...], float] = {}
    print(f"{method} on {task_name}: {rounds} rounds x {batch} queries")
    print(
        f"{'round':>5} {'queries':>8} {'best':>7} {'batch mean':>11} {'feasible':>9} {'hamming':>8}"
    )
    for r in range(rounds):
        b, y, *_ = ask_tell_round(opt, oracle, batch)
        tok = oracle.tokens(b.x)
        for t, v in zip(tok.tolist(), y.tolist()):
            if math.isfinite(v):
                seen[tuple(t)] = max(v, seen.get(tuple(t), -math.inf))
        extra = task.extra_scores(b.x)
        yy = np.asarray(y, dtype=float)
        best = max(seen.values()) if seen else float("nan")
        mean = float(np.nanmean(yy)) if np.isfinite(yy).any() else float("nan")
        print(
            f"{r:>5} {(r + 1) * batch:>8} {best:>7.3f} {mean:>11.3f} "
            f"{extra['feasible_frac']:>9.2f} {extra['hamming']:>8.1f}"
        )
    ranked = sorted(seen.items(), key=lambda kv: -kv[1])[:top]
    print(f"\nbest {len(ranked)} sequences ([x] = a motif element in place):")
    for t, v in ranked:
        marks = oracle.motif_positions(torch.tensor([t]))[0]
        print(f"{v:.3f}  {format_sequence(t, marks)}")
    for i, (m, s) in enumerate(zip(oracle.motifs.tolist(), oracle.spacings.tolist())):
        print(f"motif {i}: {m}  spacing {s}")
    return [(v, list(t)) for t, v in ranked]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.sequence_demo", description=__doc__.split("\n")[0]
    )
    p.add_argument("--task", default="ehrlich-v32-l32-c4-k4-q4")
    p.add_argument("--method", default="sqdf", choices=SEQUENCE_METHODS)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    run_sequence_demo(args.task, args.method, args.rounds, args.batch, args.seed)


if __name__ == "__main__":
    main()
