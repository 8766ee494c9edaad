"""The SQDF ask/tell optimizer: contract, round mechanics, and the 2-D toy task."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers import DDIMScheduler

from sqdf_bbo.diffusion.networks import MLPDenoiser
from sqdf_bbo.diffusion.prior import DiffusionPrior
from sqdf_bbo.optimizers.base import Optimizer
from sqdf_bbo.optimizers.sqdf import SQDF, SQDFOptimizerConfig
from tests.test_optimizer_contract import OptimizerContract

FAST = SQDFOptimizerConfig(
    finetune={"steps": 3, "transitions_per_step": 8, "rollouts_per_step": 2},
    progress=False,
    surrogate_options={"steps": 20, "n_heads": 2},
)


def tiny_prior(shape: tuple[int, ...] = (2,)) -> DiffusionPrior:
    torch.manual_seed(0)
    dim = int(torch.tensor(shape).prod())
    return DiffusionPrior(
        MLPDenoiser(dim, hidden=16, depth=2),
        DDIMScheduler(clip_sample=False),
        shape=shape,
        num_inference_steps=4,
        value_range=None,
        name="tiny",
    )


class TestSQDFContract(OptimizerContract):
    def make_optimizer(self, study: Path | None = None) -> Optimizer:
        return SQDF(tiny_prior(), batch_size=self.batch_size, seed=0, config=FAST, study=study)


def test_alpha_conversion_and_x0_default() -> None:
    opt = SQDF(tiny_prior(), batch_size=2, config=FAST)
    resolved = opt.trainer.config
    assert opt.trainer.alpha == pytest.approx(2.0)  # kl_weight · 2 / D, 2 · 2 / 2
    assert resolved.x0_method == "tweedie"  # no consistency model on this prior
    assert resolved.gamma == 0.9 and resolved.buffer_method == "reward+gamma"
    assert resolved.eta == 1.0 and resolved.lr == 1e-4
    # one KL weight, the same in the optimizer's config and the trainer's
    assert opt.config.finetune.kl_weight == resolved.kl_weight == 2.0
    cfg = SQDFOptimizerConfig(finetune={"kl_weight": 1.0})
    assert cfg.finetune.alpha_for(64) == pytest.approx(1 / 32)
    assert cfg.finetune.eta == 1.0 and cfg.finetune.x0_method == "auto"  # other defaults kept
    with pytest.raises(ValueError, match="surrogate 'nope' is unknown"):
        SQDFOptimizerConfig(surrogate="nope")
    with pytest.raises(TypeError, match="DiffusionPrior"):
        SQDF("digits")  # type: ignore[arg-type]


def test_round_fills_buffer_with_queried_trajectories_only() -> None:
    opt = SQDF(tiny_prior(), batch_size=6, seed=1, config=FAST)
    assert opt.metrics()["kl_to_prior"] == 0.0, "before any fit the sampler is the prior"
    b = opt.ask()
    opt.tell(b.ids, [1.0, 2.0, float("nan"), 3.0, 0.5, 0.0])
    opt.tell_external(torch.randn(4, 2, generator=torch.Generator().manual_seed(0)), [9.0] * 4)
    opt.ask()
    assert opt.round == 1
    sources = opt.trainer.buffer.sources
    # 5 complete asked points (the failed one and the external ones have no trajectory there)
    assert sources.count("queried") == 5
    assert sources.count("rollout") == FAST.finetune.steps * FAST.finetune.rollouts_per_step
    assert opt.surrogate.n_train == 9, "the surrogate sees asked and external observations"
    assert opt.metrics()["kl_to_prior"] > 0.0


def test_designs_are_clamped_to_value_range() -> None:
    prior = tiny_prior((4,))
    prior.value_range = (-0.1, 0.1)
    opt = SQDF(prior, batch_size=16, config=FAST)
    x = opt.ask().x
    assert x.abs().max() <= 0.1 + 1e-7


def test_rings_toy_reward_rises_and_stays_natural() -> None:
    """Linear reward r(x) = aᵀx on the 8-Gaussian ring: its maximum lies off the data manifold.

    SQDF should move probability to the high-reward Gaussians (reward up) while its samples
    keep a high exact log-density; a naive maximizer reaching the same reward by gradient
    ascent on r from prior samples leaves the manifold.
    """
    from oracles.toy import LinearOracle
    from sqdf_bbo.data import RingsDistribution
    from sqdf_bbo.diffusion.priors import load_prior

    prior = load_prior("rings")
    data = RingsDistribution()
    a = torch.tensor([1.0, 0.5]) / torch.tensor([1.0, 0.5]).norm()
    reward = LinearOracle(direction=a)  # r(x) = aᵀx, |a| = 1, float64 values

    cfg = SQDFOptimizerConfig(finetune={"gamma": 1.0, "kl_weight": 0.5}, progress=False)
    opt = SQDF(prior, batch_size=64, seed=0, config=cfg)
    first = opt.ask()
    opt.tell(first.ids, reward(first.x))
    for _ in range(3):
        b = opt.ask()
        opt.tell(b.ids, reward(b.x))
    final = opt.ask(128)
    assert opt.round == 4
    r_prior = float(reward(first.x).mean())
    r_sqdf = float(reward(final.x).mean())
    lp_prior = float(data.log_prob(first.x).mean())
    lp_sqdf = float(data.log_prob(final.x).mean())
    # Naive maximizer: gradient ascent on r (∇r = a, |a| = 1) from prior samples until it
    # matches SQDF's mean reward.
    naive = first.x + (r_sqdf - r_prior) * a
    lp_naive = float(data.log_prob(naive).mean())
    msg = (
        f"mean reward prior {r_prior:.3f} -> SQDF {r_sqdf:.3f}; mean exact log-density "
        f"prior {lp_prior:.2f}, SQDF {lp_sqdf:.2f}, naive ascent {lp_naive:.2f}"
    )
    print(msg)
    assert r_sqdf > r_prior + 0.6, msg
    assert lp_sqdf > lp_prior - 1.5, msg
    assert lp_sqdf > lp_naive + 5.0, msg


def test_a_surrogate_and_a_trainer_can_be_handed_in(tmp_path) -> None:
    """Issue 17: instances instead of names (as BoTorch takes a model). The optimizer uses
    them, its config describes them, a study records their classes and restores their state
    into new ones passed to load."""
    from sqdf_bbo.finetuning.sqdf import SQDFTrainer
    from sqdf_bbo.study.errors import StudyError
    from sqdf_bbo.surrogates import UCBSurrogate

    prior = tiny_prior()
    trainer = SQDFTrainer(prior, FAST.finetune.__class__(steps=2, transitions_per_step=8), seed=5)
    surrogate = UCBSurrogate(seed=1, hidden=8, steps=10)
    opt = SQDF(prior, batch_size=4, config=FAST, surrogate=surrogate, trainer=trainer,
               study=tmp_path / "s")  # fmt: skip
    assert opt.trainer is trainer and opt.surrogate is surrogate
    assert opt.config.finetune == trainer.config and opt.config.surrogate == "ucb"
    assert opt.config.surrogate_options == {"hidden": 8, "steps": 10}
    b = opt.ask()
    opt.tell(b.ids, (-(b.x**2).sum(1)).tolist())
    opt.ask()
    assert surrogate.fitted and trainer.round >= 1  # the round used the instances
    opt.close()
    with pytest.raises(StudyError, match="surrogate instance handed in"):
        SQDF.load(tmp_path / "s", attach=False, trainer=SQDFTrainer(prior, trainer.config))
    back = SQDF.load(
        tmp_path / "s",
        attach=False,
        surrogate=UCBSurrogate(seed=1, hidden=8, steps=10),
        trainer=SQDFTrainer(prior, trainer.config, seed=5),
    )
    assert back.surrogate.fitted
    x = torch.randn(3, 2, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(back.surrogate.mean(x), surrogate.mean(x))
    with pytest.raises(TypeError, match="Surrogate"):
        SQDF(prior, surrogate="ucb")  # type: ignore[arg-type]
