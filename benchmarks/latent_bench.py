"""SQDF on the shipped class-conditional latent prior (``digits-latent``): does it raise the
reward while the samples keep their class and stay natural? (docs/latent.md)

Usage::

    python -m benchmarks.latent_bench                    # the declared grid, into docs/results/latent/
    python -m benchmarks.latent_bench --seeds 0 --quick  # a smoke run into a temporary folder

The task: every batch asks for the classes of :attr:`LatentGrid.classes` in turn (one
condition per design, equal shares), the oracle is the digits-ink oracle (stroke thickness,
``oracles.digits.DigitsInkOracle``, noisy, classifier-free) on the decoded 8×8 images. The
prior's row is the conditional prior sampled with the same conditions (it does not learn).
Each round's batch is judged per class by measures no method optimizes: the true ink
(noiseless), the shipped classifier's accuracy for the class asked for, and the natural share
(the digits tasks' PCA + GMM density, :mod:`benchmarks.latent_evidence`).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from benchmarks.latent_evidence import class_scores
from benchmarks.plotting import pyplot
from oracles.digits import DigitsInkOracle
from sqdf_bbo.diffusion.prior import DiffusionPrior
from sqdf_bbo.diffusion.priors import load_prior
from sqdf_bbo.optimizers.sqdf import SQDF

__all__ = ["LatentGrid", "GRID", "run", "summary", "main"]

OUT = Path(__file__).resolve().parents[1] / "docs" / "results" / "latent"


@dataclass(frozen=True)
class LatentGrid:
    """The declared grid (docs/latent.md): the quick suite's SQDF settings.

    Attributes:
        seeds: run seeds.
        classes: the conditions every batch asks for, in equal shares.
        budgets: designs per round.
        finetune_steps, transitions_per_step, rollouts_per_step: SQDF per round.
        surrogate_steps: training steps of the ensemble surrogate per fit.
    """

    seeds: tuple[int, ...] = (0, 1, 2)
    classes: tuple[int, ...] = (0, 1, 2)
    budgets: tuple[int, ...] = (48, 48, 96)
    finetune_steps: int = 40
    transitions_per_step: int = 32
    rollouts_per_step: int = 4
    surrogate_steps: int = 200


GRID = LatentGrid()


def _conditions(grid: LatentGrid, n: int) -> list[int]:
    return [grid.classes[i % len(grid.classes)] for i in range(n)]


def _score(
    x: torch.Tensor, conds: list[int], oracle: DigitsInkOracle, grid: LatentGrid
) -> list[dict]:
    rows = []
    labels = torch.tensor(conds)
    for c in grid.classes:
        xc = x[labels == c]
        with torch.no_grad():
            ink = float(oracle.evaluate_true(xc).double().mean())
        rows.append({"class": c, "ink": ink, **class_scores(xc, c)})
    return rows


def run(
    method: str, seed: int, grid: LatentGrid, prior: DiffusionPrior, out: Path | None = None
) -> list[dict]:
    """One run: per round and class, the batch's true ink, accuracy and natural share (the
    last batch's images saved under ``out`` when given)."""
    oracle = DigitsInkOracle(seed=seed)
    opt = None
    if method == "sqdf":
        config = {
            "finetune": {
                "steps": grid.finetune_steps,
                "transitions_per_step": grid.transitions_per_step,
                "rollouts_per_step": grid.rollouts_per_step,
            },
            "surrogate_options": {"steps": grid.surrogate_steps},
            "progress": False,
        }
        opt = SQDF(prior, batch_size=grid.budgets[0], seed=seed, config=config)
    gen = torch.Generator().manual_seed(seed)
    rows: list[dict] = []
    for r, n in enumerate(grid.budgets):
        t0 = time.perf_counter()
        conds = _conditions(grid, n)
        if opt is not None:
            batch = opt.ask(n, conditions=conds)
            x = batch.x
            opt.tell(batch.ids, oracle(x))
        else:
            with torch.no_grad():
                sampled = prior.sample(n, gen, cond=prior.encode_conditions(conds))
                x = prior.to_design(sampled.x)
        for row in _score(x.cpu(), conds, oracle, grid):
            rows.append({"method": method, "seed": seed, "round": r, "n": n, **row,
                         "time_s": time.perf_counter() - t0})  # fmt: skip
        if r == len(grid.budgets) - 1 and out is not None:
            save_file({"x": x.detach().cpu().contiguous()}, str(_samples_file(out, method, seed)))
    return rows


def _samples_file(out: Path, method: str, seed: int) -> Path:
    return out / f"final_{method}_seed{seed}.safetensors"


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """Final-round mean ± std over seeds per method and class, and the accuracy ratio to the
    prior's."""
    last = df[df["round"] == df["round"].max()]
    agg = last.groupby(["class", "method"])[["ink", "accuracy", "natural_frac", "vendi"]].agg(
        ["mean", "std"]
    )
    agg.columns = [f"{a}_{b}" for a, b in agg.columns]
    agg = agg.reset_index()
    prior_acc = agg[agg["method"] == "prior"].set_index("class")["accuracy_mean"]
    agg["accuracy_vs_prior"] = agg["accuracy_mean"] / agg["class"].map(prior_acc)
    return agg


def picture(out: Path, grid: LatentGrid, seed: int, per_class: int = 8) -> Path:
    """Final batches of the prior and SQDF (seed ``seed``): one row per class and method."""
    plt = pyplot()
    methods = ("prior", "sqdf")
    fig, axes = plt.subplots(
        len(grid.classes) * 2, per_class, figsize=(per_class * 0.7, len(grid.classes) * 2 * 0.75)
    )
    for m_i, method in enumerate(methods):
        x = load_file(str(_samples_file(out, method, seed)))["x"]
        labels = torch.tensor(_conditions(grid, x.shape[0]))
        for c_i, c in enumerate(grid.classes):
            row = c_i * 2 + m_i
            xc = x[labels == c]
            for j in range(per_class):
                ax = axes[row, j]
                if j < xc.shape[0]:
                    ax.imshow(xc[j, 0].numpy(), cmap="gray_r", vmin=-1, vmax=1)
                ax.set_xticks([])
                ax.set_yticks([])
                if j == 0:
                    ax.set_ylabel(f"{c} {method}", rotation=0, labelpad=22, fontsize=7)
    fig.suptitle(f"digits-latent, last round, seed {seed}: prior vs SQDF", fontsize=8)
    fig.tight_layout()
    path = out / "final_batches.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--seeds", type=int, nargs="+", default=None)
    p.add_argument("--quick", action="store_true", help="tiny budgets, into a temporary folder")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    grid = GRID
    if args.seeds:
        grid = replace(grid, seeds=tuple(args.seeds))
    if args.quick:
        grid = replace(grid, budgets=(12, 12), finetune_steps=2, surrogate_steps=10)
    out = args.out or (Path(tempfile.mkdtemp()) if args.quick else OUT)
    out.mkdir(parents=True, exist_ok=True)
    prior = load_prior("digits-latent")
    rows: list[dict] = []
    for seed in grid.seeds:
        for method in ("prior", "sqdf"):
            rows += run(method, seed, grid, prior, out)
            pd.DataFrame(rows).to_csv(out / "rounds.csv", index=False)
            print(f"done: {method} seed {seed}", flush=True)
    df = pd.DataFrame(rows)
    table = summary(df)
    table.to_csv(out / "summary.csv", index=False)
    picture(out, grid, grid.seeds[0])
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
