"""The digits demo: SQDF on the ``digits-logit`` task with the embedded prior, 4 rounds.

``make demo`` → ``sqdf-bbo demo`` → :func:`demo_cli`. Round 0 samples the pretrained
prior; before each later round the optimizer fits its bootstrap-ensemble surrogate on all
values told so far and fine-tunes the sampler with SQDF (KL to the pretrained prior). The
oracle is the frozen digits classifier's logit of class ``DIGITS_TARGET``.

Prints a per-round table and writes to ``--out`` (default ``runs/demo``):

* ``rounds.csv`` — the benchmark runner's per-round metrics (``ROUND_COLUMNS``);
* ``curves.png`` — reward, naturalness, diversity and the surrogate's optimism gap vs.
  oracle queries;
* ``samples.png`` — 16 designs of every round, one row per round.

Designed to finish within 5 minutes on 2 CPU cores; the wall time is printed.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import torch

from benchmarks.plotting import pyplot
from benchmarks.report import image_grid
from benchmarks.runner import run_one
from benchmarks.suites import Suite
from benchmarks.tasks import DIGITS_TARGET

__all__ = ["DEMO_SUITE", "run_demo", "demo_cli", "main"]

DEMO_SUITE = Suite(
    name="demo",
    tasks=("digits-logit",),
    methods=("sqdf",),
    seeds=(0,),
    budgets=(64, 128, 256, 512),
    finetune_steps=40,
    transitions_per_step=64,
    chains_per_step=64,
    surrogate_steps=300,
    rollouts_per_step=8,
    description="SQDF on digits-logit, 4 rounds of 64/128/256/512 queries (1:2:4:8 as in the paper)",
)

_COLS = [
    ("round", "round", "{:d}"),
    ("queries", "queries", "{:d}"),
    ("reward_mean", "reward mean", "{:.3f}"),
    ("reward_top10", "top-10%", "{:.3f}"),
    ("best_so_far", "best", "{:.3f}"),
    ("naturalness", "log q", "{:.1f}"),
    ("natural_frac", "natural", "{:.2f}"),
    ("vendi", "Vendi", "{:.2f}"),
    ("kl_to_prior", "KL", "{:.1f}"),
    ("optimism_gap", "opt. gap", "{:.2f}"),
    ("wall_s", "time s", "{:.0f}"),
]


def _header() -> str:
    return "  ".join(f"{label:>11}" for _, label, _ in _COLS)


def _line(row: dict) -> str:
    cells = []
    for key, _, fmt in _COLS:
        v = row[key]
        cells.append(f"{fmt.format(int(v) if 'd' in fmt else float(v)):>11}")
    return "  ".join(cells)


def _plot_curves(df: pd.DataFrame, path: Path) -> None:
    plt = pyplot()

    fig, axes = plt.subplots(1, 4, figsize=(16, 3.5))
    panels = [
        (["reward_mean", "reward_top10"], f"reward (class-{DIGITS_TARGET} logit)"),
        (["naturalness"], "naturalness (mean log q)"),
        (["vendi"], "diversity (Vendi score)"),
        (["optimism_gap", "pred_gap"], "surrogate minus oracle (target std)"),
    ]
    for ax, (keys, title) in zip(axes, panels):
        for k in keys:
            ax.plot(df["queries"], df[k], marker="o", label=k)
        ax.set_xlabel("oracle queries")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if len(keys) > 1:
            ax.legend(fontsize=8)
    fig.suptitle("SQDF on digits-logit")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_demo(out: str | Path = "runs/demo", seed: int = 0, progress: bool = True) -> pd.DataFrame:
    """Run the demo, print the table, write the files; returns the per-round rows."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    samples: list[torch.Tensor] = []
    print(
        f"SQDF demo: digits-logit (reward = classifier logit of digit {DIGITS_TARGET}), "
        f"{len(DEMO_SUITE.budgets)} rounds of {list(DEMO_SUITE.budgets)} queries, seed {seed}"
    )
    print("round 0 samples the pretrained prior; each later round fine-tunes on all values so far")
    print(_header())

    def on_round(row: dict, x: torch.Tensor) -> None:
        samples.append(x[:16])
        print(_line(row), flush=True)

    df = run_one("digits-logit", "sqdf", int(seed), DEMO_SUITE, None, progress, on_round)
    df.to_csv(out / "rounds.csv", index=False)
    _plot_curves(df, out / "curves.png")
    image_grid(
        samples,
        [f"round {r}" for r in range(len(samples))],
        out / "samples.png",
        title=f"SQDF on digits-logit (target digit {DIGITS_TARGET}): 16 designs per round",
    )
    elapsed = time.perf_counter() - t0
    first, last = df.iloc[0], df.iloc[-1]
    print(
        f"reward mean {first['reward_mean']:.3f} (prior) -> {last['reward_mean']:.3f} "
        f"(round {int(last['round'])}); naturalness {first['naturalness']:.1f} -> "
        f"{last['naturalness']:.1f}; Vendi {first['vendi']:.2f} -> {last['vendi']:.2f}"
    )
    print(f"wrote {out / 'rounds.csv'}, {out / 'curves.png'}, {out / 'samples.png'}")
    print(f"total wall time {elapsed:.0f} s ({torch.get_num_threads()} torch threads)")
    return df


def add_demo_arguments(p: argparse.ArgumentParser) -> None:
    """The demo's options (``python -m benchmarks.demo`` and ``sqdf-bbo demo``)."""
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--no-progress", dest="progress", action="store_false")


def demo_cli(args: argparse.Namespace) -> int:
    """Entry of ``sqdf-bbo demo`` (args: out, seed, progress, optional threads — torch threads,
    default 1: the models are tiny and oversubscribed threads on shared cores are very slow)."""
    torch.set_num_threads(int(getattr(args, "threads", None) or 1))
    run_demo(args.out, seed=int(getattr(args, "seed", 0)), progress=getattr(args, "progress", True))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.demo", description="the SQDF digits demo"
    )
    add_demo_arguments(p)
    return demo_cli(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
