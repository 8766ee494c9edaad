"""Benchmark runner end to end on tiny tasks: files, columns, resume, summary statistics."""

from __future__ import annotations

import argparse
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from diffusers import DDIMScheduler

from benchmarks.layout import ROUND_COLUMNS, is_done, run_dir
from benchmarks.naturalness import ExactLogDensity
from benchmarks.report import summarize
from benchmarks.runner import bench_cli, run_suite
from benchmarks.suites import MAIN_METHODS, SUITES, get_suite
from benchmarks.tasks import Task, available_tasks, register_task
from sqdf_bbo.diffusion.networks import MLPDenoiser
from sqdf_bbo.diffusion.prior import DiffusionPrior
from tests.conftest import tiny_unet


def _std_normal_log_prob(x: torch.Tensor) -> torch.Tensor:
    x = x.reshape(x.shape[0], -1).double()
    return -0.5 * (x**2).sum(1) - 0.5 * x.shape[1] * math.log(2 * math.pi)


def _tiny_flat_task() -> Task:
    def prior() -> DiffusionPrior:
        torch.manual_seed(0)
        return DiffusionPrior(
            MLPDenoiser(2, hidden=8, depth=1),
            DDIMScheduler(clip_sample=False),
            shape=(2,),
            num_inference_steps=3,
            value_range=None,
        )

    return Task(
        name="tiny-flat",
        description="random-weight 2-D prior, reward -|x - 1|^2",
        make_prior=prior,
        make_oracle=lambda seed: lambda x: -((x.double() - 1.0) ** 2).sum(1),
        make_naturalness=lambda: ExactLogDensity(_std_normal_log_prob),
        make_heldout=lambda: torch.randn(200, 2, generator=torch.Generator().manual_seed(0)),
        feature_fn=lambda x: x.reshape(x.shape[0], -1),
        box=(-3.0, 3.0),
    )


def _tiny_image_task() -> Task:
    def prior() -> DiffusionPrior:
        return DiffusionPrior(
            tiny_unet(), DDIMScheduler(clip_sample=False), shape=(1, 8, 8), num_inference_steps=2
        )

    return Task(
        name="tiny-image",
        description="random-weight 8x8 prior, reward = mean pixel",
        make_prior=prior,
        make_oracle=lambda seed: lambda x: x.double().flatten(1).mean(1),
        make_naturalness=lambda: ExactLogDensity(_std_normal_log_prob),
        make_heldout=lambda: torch.randn(100, 1, 8, 8, generator=torch.Generator().manual_seed(0)),
        feature_fn=lambda x: x.reshape(x.shape[0], -1),
        box=(-1.0, 1.0),
        is_image=True,
    )


register_task("tiny-flat", _tiny_flat_task)
register_task("tiny-image", _tiny_image_task)


def _tiny_suite():
    return replace(SUITES["smoke"], tasks=("tiny-flat", "tiny-image"), seeds=(0, 1), budgets=(4, 6))


def test_suite_end_to_end_files_columns_and_resume(tmp_path: Path) -> None:
    suite = _tiny_suite()
    rounds = run_suite(suite, tmp_path, progress=False)
    # Every run: rounds.csv with the documented columns, a done marker, kept samples.
    for t in suite.tasks:
        for m in suite.methods:
            for s in suite.seeds:
                d = run_dir(tmp_path, t, m, s)
                assert is_done(d)
                df = pd.read_csv(d / "rounds.csv")
                assert list(df.columns) == ROUND_COLUMNS
                assert df["queries"].tolist() == [4, 10]
                assert (np.diff(df["best_so_far"]) >= 0).all()
                assert (df["wall_s"].diff().dropna() >= 0).all()
                assert (d / "samples.pt").is_file()
    assert len(rounds) == 2 * len(MAIN_METHODS) * 2 * 2
    assert rounds[["reward_mean", "naturalness", "vendi"]].notna().all().all()
    prior_rows = rounds[rounds["method"] == "prior"]
    assert (prior_rows["kl_to_prior"] == 0).all()
    sqdf_rows = rounds[(rounds["method"] == "sqdf") & (rounds["round"] == 1)]
    assert (sqdf_rows["kl_to_prior"] > 0).all(), "fine-tuned samplers have moved off the prior"
    assert rounds.loc[rounds["method"] == "gp-bo", "kl_to_prior"].isna().all()
    # Suite outputs.
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert {"reward_mean_mean", "reward_mean_se", "vendi_mean", "n_seeds"} <= set(summary.columns)
    assert len(summary) == 2 * len(MAIN_METHODS) * 2
    md = (tmp_path / "summary.md").read_text()
    assert "| method |" in md and "seiko-bootstrap" in md and "Naturalness calibration" in md
    for t in suite.tasks:
        assert (tmp_path / f"curves_{t}.png").stat().st_size > 1000
    assert (tmp_path / "samples_tiny-image.png").is_file()
    # 2-D flat tasks get a scatter of the last batch instead of an image grid
    assert (tmp_path / "samples_tiny-flat.png").stat().st_size > 1000
    # Resume: a finished run is not re-run (its rounds.csv is read back unchanged).
    f = run_dir(tmp_path, "tiny-flat", "sqdf", 0) / "rounds.csv"
    stamp = f.stat().st_mtime_ns
    again = run_suite(suite, tmp_path, progress=False, report=False)
    assert f.stat().st_mtime_ns == stamp
    pd.testing.assert_frame_equal(
        again.sort_values(["task", "method", "seed", "round"]).reset_index(drop=True),
        rounds.sort_values(["task", "method", "seed", "round"]).reset_index(drop=True),
    )


def test_unfinished_run_is_rerun(tmp_path: Path) -> None:
    suite = replace(_tiny_suite(), tasks=("tiny-flat",), methods=("prior",), seeds=(0,))
    d = run_dir(tmp_path, "tiny-flat", "prior", 0)
    d.mkdir(parents=True)
    (d / "rounds.csv").write_text("garbage\n")  # no done marker: a crashed run
    rounds = run_suite(suite, tmp_path, progress=False, report=False)
    assert list(pd.read_csv(d / "rounds.csv").columns) == ROUND_COLUMNS
    assert len(rounds) == 2


def test_summary_mean_and_standard_error() -> None:
    rows = []
    for seed, v in enumerate([1.0, 2.0, 3.0]):
        rows.append(
            {c: 0.0 for c in ROUND_COLUMNS}
            | {"task": "t", "method": "m", "seed": seed, "round": 0, "queries": 4, "reward_mean": v}
        )
    s = summarize(pd.DataFrame(rows))
    assert s["reward_mean_mean"].iloc[0] == pytest.approx(2.0)
    assert s["reward_mean_se"].iloc[0] == pytest.approx(1.0 / math.sqrt(3))
    assert s["n_seeds"].iloc[0] == 3


def test_bench_cli_filters_and_rejects_unknown_names(tmp_path: Path) -> None:
    args = argparse.Namespace(
        suite="smoke",
        out=str(tmp_path),
        seeds="3",
        tasks="tiny-flat",
        methods="prior",
        progress=False,
    )
    assert bench_cli(args) == 0
    assert is_done(run_dir(tmp_path, "tiny-flat", "prior", 3))
    with pytest.raises(ValueError, match="accepted values"):
        bench_cli(argparse.Namespace(**{**vars(args), "tasks": "nope"}))
    with pytest.raises(ValueError, match="accepted values"):
        bench_cli(argparse.Namespace(**{**vars(args), "methods": "adam"}))
    with pytest.raises(ValueError, match="accepted values"):
        get_suite("huge")


def test_builtin_tasks_registered() -> None:
    assert {"rings", "digits-logit"} <= set(available_tasks())


def test_smoke_suite_on_the_real_rings_task(tmp_path: Path) -> None:
    """The shipped smoke suite (rings prior + RingsOracle + exact density) end to end."""
    suite = replace(SUITES["smoke"], seeds=(0,))
    rounds = run_suite(suite, tmp_path, progress=False)
    assert set(rounds["method"]) == set(MAIN_METHODS)
    ref = pd.read_csv(tmp_path / "naturalness_reference_rings.csv")
    by_set = ref.set_index("set")["naturalness"]
    assert by_set["held-out real"] > by_set["uniform noise in box"] + 3
    assert by_set["prior samples"] > by_set["uniform noise in box"]
    assert by_set["held-out real"] > by_set["saturated (box corners)"] + 3


def test_demo_writes_table_and_files(tmp_path: Path, monkeypatch, capsys) -> None:
    import benchmarks.demo as demo

    tiny = replace(
        demo.DEMO_SUITE,
        budgets=(4, 4),
        finetune_steps=1,
        transitions_per_step=4,
        chains_per_step=4,
        surrogate_steps=5,
        rollouts_per_step=1,
    )
    monkeypatch.setattr(demo, "DEMO_SUITE", tiny)
    demo.demo_cli(argparse.Namespace(out=str(tmp_path), seed=0, progress=False))
    text = capsys.readouterr().out
    assert "reward mean" in text and "total wall time" in text
    df = pd.read_csv(tmp_path / "rounds.csv")
    assert list(df.columns) == ROUND_COLUMNS and df["round"].tolist() == [0, 1]
    assert (tmp_path / "curves.png").stat().st_size > 1000
    assert (tmp_path / "samples.png").stat().st_size > 1000


def test_every_method_variant_runs_on_rings(tmp_path: Path) -> None:
    from benchmarks.suites import METHODS, SEQUENCE_METHODS

    # ga and lambo2 need a sequence task (tests/test_sequence_methods.py runs them)
    variants = tuple(m for m in METHODS if m not in MAIN_METHODS + SEQUENCE_METHODS)
    assert {"sqdf-ucb", "sqdf-gp", "sqdf-tweedie", "sqdf-consistency"} <= set(variants)
    suite = replace(SUITES["smoke"], methods=variants, seeds=(0,))
    rounds = run_suite(suite, tmp_path, progress=False, report=False)
    assert set(rounds["method"]) == set(variants)
    assert rounds["reward_mean"].notna().all()


def test_an_optimizer_registered_once_runs_through_bench_and_init(tmp_path: Path) -> None:
    """Issue 17: a new optimizer written once (a subclass with a ``method``) is a method of
    ``sqdf-bbo bench`` and of ``sqdf-bbo init`` with no other change, and the registration
    ends with the block that made it."""
    from sqdf_bbo.cli import main
    from sqdf_bbo.optimizers.base import Optimizer, Proposal
    from sqdf_bbo.optimizers.registry import OPTIMIZERS

    with OPTIMIZERS.temporarily():

        class PriorTimesHalf(Optimizer):  # the whole of the new optimizer
            method = "half-prior"

            def __init__(self, prior, batch_size=64, seed=0, study=None, constraints=None):
                self.prior = prior
                super().__init__(
                    prior.shape,
                    batch_size=batch_size,
                    seed=seed,
                    study=study,
                    constraints=constraints,
                )

            def _propose(self, n: int) -> Proposal:
                return Proposal(0.5 * self.prior.sample(n, self.generator).x)

            def _spec(self) -> dict:
                return {"prior": self.prior}

        code = main(
            ["bench", "--suite", "smoke", "--methods", "half-prior,prior", "--tasks", "tiny-flat",
             "--out", str(tmp_path / "bench"), "--no-progress", "--workers", "1"]
        )  # fmt: skip
        assert code == 0
        rows = pd.read_csv(run_dir(tmp_path / "bench", "tiny-flat", "half-prior", 0) / "rounds.csv")
        prior_rows = pd.read_csv(
            run_dir(tmp_path / "bench", "tiny-flat", "prior", 0) / "rounds.csv"
        )
        assert rows["queries"].tolist() == [8, 16] and rows["reward_mean"].notna().all()
        # its designs are the prior's samples halved: a smaller spread than the prior's batch
        assert (rows["pairwise_dist"] < prior_rows["pairwise_dist"]).all()
        prior = get_suite("smoke").prior(_tiny_flat_task())
        prior.save(tmp_path / "prior")
        study = tmp_path / "study"
        argv = ["init", "--study", str(study), "--prior", str(tmp_path / "prior")]
        assert main([*argv, "--method", "half-prior", "--batch-size", "3"]) == 0
        assert type(Optimizer.load(study, attach=False)) is PriorTimesHalf
    assert "half-prior" not in OPTIMIZERS  # gone with the block
    with pytest.raises(ValueError, match="accepted values"):
        get_suite("smoke").restricted(methods=["half-prior"])
