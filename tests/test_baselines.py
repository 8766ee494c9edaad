"""Baselines: the optimizer contract, and what makes SEIKO and GP-BO what they are."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sqdf_bbo.diffusion.prior import DiffusionPrior
from sqdf_bbo.finetuning.seiko import SEIKOTrainConfig, SEIKOTrainer, keep_probability
from sqdf_bbo.migration import migrate
from sqdf_bbo.optimizers import GPBO, SEIKO, GPBOConfig, PriorSampler, SEIKOConfig
from sqdf_bbo.optimizers.base import Optimizer
from sqdf_bbo.optimizers.gp_bo import select_training_set
from tests.conftest import mlp_prior
from tests.test_optimizer_contract import OptimizerContract


def _flat_prior() -> DiffusionPrior:
    return mlp_prior(steps=4)


_TINY_SURROGATE = {"hidden": 8, "depth": 1, "steps": 20, "batch_size": 32}


class TestPriorSamplerContract(OptimizerContract):
    def make_optimizer(self, study: Path | None = None) -> Optimizer:
        return PriorSampler(_flat_prior(), batch_size=self.batch_size, seed=0, study=study)


class TestSEIKOUCBContract(OptimizerContract):
    def make_optimizer(self, study: Path | None = None) -> Optimizer:
        cfg = SEIKOConfig(
            surrogate="ucb",
            surrogate_options=_TINY_SURROGATE,
            finetune={"steps": 2, "chains_per_step": 4},
        )
        return SEIKO(_flat_prior(), batch_size=self.batch_size, seed=0, config=cfg, study=study)


class TestSEIKOBootstrapContract(OptimizerContract):
    def make_optimizer(self, study: Path | None = None) -> Optimizer:
        cfg = SEIKOConfig(
            surrogate="ensemble",
            surrogate_options={**_TINY_SURROGATE, "n_heads": 2},
            finetune={"steps": 2, "chains_per_step": 4},
        )
        return SEIKO(_flat_prior(), batch_size=self.batch_size, seed=0, config=cfg, study=study)


class TestGPBOContract(OptimizerContract):
    def make_optimizer(self, study: Path | None = None) -> Optimizer:
        cfg = GPBOConfig(max_train=16, raw_samples=8, maxiter=5, mc_samples=8, fit_maxiter=10)
        return GPBO(
            (2,), box=(-1.0, 1.0), batch_size=self.batch_size, seed=0, config=cfg, study=study
        )


def test_prior_sampler_matches_prior_samples() -> None:
    prior = _flat_prior()
    opt = PriorSampler(prior, batch_size=5, seed=3)
    expected = prior.sample(5, torch.Generator().manual_seed(3)).x
    assert torch.allclose(opt.ask().x, expected)
    assert opt.metrics()["kl_to_prior"] == 0.0


def _spy_states(trainer: SEIKOTrainer) -> list[torch.Tensor]:
    """Record the policy's input state of every step (with its gradient retained)."""
    states: list[torch.Tensor] = []
    orig = trainer.policy.step_mean

    def spy(x, i, denoiser=None, eta=None, eps=None):
        if denoiser is None:
            if x.requires_grad:
                x.retain_grad()
            states.append(x)
        return orig(x, i, denoiser=denoiser, eta=eta, eps=eps)

    trainer.policy.step_mean = spy  # type: ignore[method-assign]
    return states


def test_seiko_last_k_truncation_flows_only_through_the_last_steps() -> None:
    """v0.1 truncation ("last-k"): with bp_min = bp_max = 1, x_0's gradient reaches the
    states through the last step only; with bp = K it reaches every state."""
    prior = _flat_prior()
    K = prior.num_inference_steps
    seen: dict[str, list[torch.Tensor]] = {}
    for bp in (1, K):
        cfg = SEIKOTrainConfig(kl_weight=0.0, truncation="last-k", bp_min=bp, bp_max=bp)
        trainer = SEIKOTrainer(prior, cfg, seed=0)
        states = _spy_states(trainer)
        out = trainer._loss(lambda x0: x0.sum(1))
        out["loss"].backward()
        seen[str(bp)] = states
    # bp = 1: only the last state x_{K-1} carries a gradient from the reward.
    one = seen["1"]
    assert one[-1].grad is not None
    assert all(s.grad is None for s in one[:-1])
    # bp = K: every state after x_T does (x_T itself is a leaf without requires_grad).
    full = seen[str(K)]
    assert all(s.grad is not None for s in full[1:])


def test_seiko_official_truncation_keeps_step_i_with_probability_i_plus_1_over_k_plus_1() -> None:
    """Official SEIKO: each step keeps its ε gradient with probability (i+1)/(K+1),
    independently; the states are never detached (every state gets a reward gradient)."""
    from scipy import stats

    prior = _flat_prior()
    K = prior.num_inference_steps
    trainer = SEIKOTrainer(prior, SEIKOTrainConfig(kl_weight=0.0), seed=0)
    assert trainer.config.truncation == "official"
    n = 4000
    kept = np.zeros(K)
    for _ in range(n):
        for i in range(K):
            kept[i] += trainer._keep(i, K, 0)
    for i in range(K):
        p = keep_probability(i, K)
        assert p == (i + 1) / (K + 1)
        assert stats.binomtest(int(kept[i]), n, p).pvalue > 1e-4, (i, kept[i] / n, p)
    # gradients: every state after the first kept step gets a reward gradient (states are
    # never detached; before the first kept step nothing depends on the parameters)
    decisions: list[bool] = []
    draw = trainer._keep

    def record(i: int, K: int, k_bp: int) -> bool:
        decisions.append(draw(i, K, k_bp))
        return decisions[-1]

    trainer._keep = record  # type: ignore[method-assign]
    states = _spy_states(trainer)
    out = trainer._loss(lambda x0: x0.sum(1))
    out["loss"].backward()
    first = decisions.index(True)
    assert all(s.grad is not None for s in states[first + 1 :])
    assert all(s.grad is None for s in states[: first + 1])
    assert out["kept"] == sum(decisions)
    params = [p for p in trainer.policy.denoiser.parameters()]
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in params)


def test_seiko_dropped_steps_give_the_network_no_gradient() -> None:
    """A step whose ε is dropped contributes no parameter gradient: with every step dropped
    (keep never true) the policy network gets no gradient at all, while x_0 still depends
    on every state through the DDIM formula."""
    prior = _flat_prior()
    trainer = SEIKOTrainer(prior, SEIKOTrainConfig(kl_weight=0.0), seed=0)
    trainer._keep = lambda i, K, k_bp: False  # type: ignore[method-assign]
    out = trainer._loss(lambda x0: x0.sum(1))
    assert out["kept"] == 0
    assert not out["loss"].requires_grad or all(
        g is None
        for g in torch.autograd.grad(
            out["loss"], list(trainer.policy.denoiser.parameters()), allow_unused=True
        )
    )


def test_seiko_moves_samples_toward_linear_reward_and_kl_to_previous() -> None:
    prior = _flat_prior()
    trainer = SEIKOTrainer(
        prior, SEIKOTrainConfig(kl_weight=1.0, steps=30, chains_per_step=32, lr=1e-2), seed=0
    )
    g = torch.Generator().manual_seed(0)
    before = prior.sample(400, g).x[:, 0].mean()
    log = trainer.train(lambda x: x[:, 0])
    after = trainer.policy.sample(400, g).x[:, 0].mean()
    assert after > before + 0.5
    assert log[0]["kl"] == pytest.approx(0.0, abs=1e-10)  # policy == previous at the start
    assert log[-1]["kl"] > 0
    # A new round re-anchors the KL to the current policy.
    trainer.start_round()
    assert trainer._loss(lambda x: x[:, 0])["kl"] == pytest.approx(0.0, abs=1e-10)


def test_seiko_config_validation() -> None:
    with pytest.raises(ValueError, match="accepted values"):
        SEIKOConfig(surrogate="bootstrap")
    with pytest.raises(ValueError, match="bp_min"):
        SEIKOConfig(finetune={"bp_min": 3, "bp_max": 2})
    # official kl_weight / loss_coeff = 1 on a dimension-mean KL with the ½: α = 1/D
    assert SEIKOConfig().finetune.alpha_for(64) == 1 / 64
    assert SEIKOTrainConfig() == SEIKOConfig().finetune  # one default, trainer and optimizer
    finetune = SEIKOConfig().finetune
    assert finetune.steps == 10 and finetune.truncation == "official" and finetune.lr == 1e-4
    with pytest.raises(ValueError, match="truncation"):
        SEIKOConfig(finetune={"truncation": "first-k"})
    # SEIKO accepts α = 0 (reward back-propagation only); SQDF does not
    assert SEIKOConfig(finetune={"kl_weight": 0.0}).finetune.alpha_for(64) == 0.0
    with pytest.raises(ValueError, match=r"kl_weight must be in \[0, "):
        SEIKOTrainConfig(kl_weight=-1.0)
    # a v0.1 flat dict migrates (with warnings)
    old = {"surrogate": "ensemble", "steps_per_round": 2, "finetune_batch_size": 4, "lr": 1e-3}
    with pytest.deprecated_call(match="'finetune.chains_per_step'"):
        cfg = SEIKOConfig.from_dict(migrate(SEIKOConfig, old))
    assert (cfg.finetune.steps, cfg.finetune.chains_per_step, cfg.finetune.lr) == (2, 4, 1e-3)
    assert cfg.finetune.kl_weight == 1.0 and SEIKOConfig.from_dict(cfg.to_dict()) == cfg


def test_gp_bo_first_round_uniform_in_box_then_in_box() -> None:
    cfg = GPBOConfig(max_train=16, raw_samples=8, maxiter=5, mc_samples=8, fit_maxiter=10)
    opt = GPBO((1, 2, 2), box=(-4.0, 4.0), batch_size=6, seed=0, config=cfg)
    b = opt.ask()
    assert b.x.min() >= -4 and b.x.max() <= 4 and b.x.std() > 1.0
    opt.tell(b.ids, -(b.x.flatten(1) ** 2).sum(1))
    b2 = opt.ask()
    assert b2.x.shape == (6, 1, 2, 2)
    assert b2.x.min() >= -4 and b2.x.max() <= 4


def test_gp_training_set_cap_keeps_the_best() -> None:
    y = torch.arange(100.0)
    idx = select_training_set(y, 20, torch.Generator().manual_seed(0))
    assert len(idx) == 20 and len(set(idx.tolist())) == 20
    assert set(range(90, 100)) <= set(idx.tolist())
    assert len(select_training_set(y[:5], 20, torch.Generator())) == 5
