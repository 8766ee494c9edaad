"""SQDF fine-tuner: analytic tilt, exact KL, gradient isolation, estimators, LoRA, persistence."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from diffusers import DDIMScheduler, UNet2DModel
from safetensors.torch import load_file, save_file
from torch import nn

from sqdf_bbo.diffusion.consistency import ConsistencyModel
from sqdf_bbo.diffusion.networks import GaussianDenoiser, MLPDenoiser
from sqdf_bbo.diffusion.prior import DiffusionPrior
from sqdf_bbo.finetuning.buffer import ReplayBuffer
from sqdf_bbo.finetuning.sqdf import (
    SQDFConfig,
    SQDFTrainer,
    finetune,
    gaussian_step_kl,
    official_alpha_to_ours,
    ours_alpha_to_official,
)

# Anisotropic data covariance and a reward direction along no axis.
MEAN = torch.tensor([0.5, -0.3])
COV = torch.tensor([[1.0, 0.6], [0.6, 0.5]])
A = torch.tensor([0.8, -0.4])


def gaussian_prior(K: int = 10) -> DiffusionPrior:
    sched = DDIMScheduler(clip_sample=False)
    net = GaussianDenoiser(MEAN, COV, sched.alphas_cumprod)
    return DiffusionPrior(net, sched, shape=(2,), num_inference_steps=K, value_range=None)


def linear_reward(x: torch.Tensor) -> torch.Tensor:
    return x @ A.to(x.dtype)


def tilt_config(**kw) -> SQDFConfig:
    base = dict(
        kl_weight=1.0,  # α = kl_weight · 2 / D = 1 on this 2-D prior
        gamma=1.0,
        x0_method="tweedie",
        steps=60,
        transitions_per_step=128,
        lr=0.05,
        grad_clip=None,
        rollouts_per_step=4,
        onpolicy_fraction=0.25,
        buffer_method="random",
    )
    base.update(kw)
    return SQDFConfig(**base)


@pytest.fixture(scope="module")
def tilt_runs() -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Mean shift and covariances (policy vs reference sampler) for three settings."""
    prior = gaussian_prior()
    n = 100_000
    ref = prior.sample(n, torch.Generator().manual_seed(11)).x.double()
    cov_ref = torch.cov(ref.T)
    out = {}
    for name, kw in {
        "base": {},
        "alpha3": {"kl_weight": 3.0},
        "gamma07": {"gamma": 0.7},
    }.items():
        tuned = finetune(prior, linear_reward, tilt_config(**kw), progress=False)
        pol = tuned.sample(n, torch.Generator().manual_seed(11)).x.double()
        out[name] = (pol.mean(0) - ref.mean(0), torch.cov(pol.T), cov_ref)
    return out


# --------------------------------------------------------------------------- config
def test_alpha_conversion() -> None:
    assert official_alpha_to_ours(1.0, 64) == pytest.approx(2 / 64)
    assert ours_alpha_to_official(official_alpha_to_ours(0.37, 10), 10) == pytest.approx(0.37)
    assert ours_alpha_to_official(0.5, 2) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        official_alpha_to_ours(1.0, 0)
    # SEIKO's official KL keeps the ½: α = a / D, by the same function
    assert official_alpha_to_ours(1.0, 64, "seiko") == 1.0 / 64
    assert ours_alpha_to_official(1.0 / 64, 64, "seiko") == pytest.approx(1.0)
    with pytest.raises(ValueError, match="convention"):
        official_alpha_to_ours(1.0, 64, "draft")


def test_config_validation() -> None:
    assert SQDFConfig(x0_method="ddim-m").x0_method == "ddim"
    prior = gaussian_prior(K=4)
    assert SQDFConfig().lr is None and SQDFConfig().resolve(prior).lr == 1e-4
    assert SQDFConfig(train="lora").resolve(prior).lr == 1e-3
    assert SQDFConfig(lr=3e-4, train="lora").resolve(prior).lr == 3e-4
    # the defaults (the optimizer's too): kl_weight 2 (official convention), eta 1, x0 auto
    default = SQDFConfig()
    assert (default.kl_weight, default.eta) == (2.0, 1.0)
    resolved = default.resolve(prior)
    assert resolved.kl_weight == 2.0 and resolved.x0_method == "tweedie"  # no consistency
    assert default.alpha_for(prior.dim) == official_alpha_to_ours(2.0, prior.dim)
    assert SQDFTrainer(prior, default).alpha == official_alpha_to_ours(2.0, prior.dim)
    assert SQDFConfig(kl_weight=0.3).alpha_for(64) == pytest.approx(0.3 * 2 / 64)
    cfg = SQDFConfig(lora_targets=["to_q"])
    assert cfg.lora_targets == ("to_q",)
    assert SQDFConfig(**cfg.to_dict()) == cfg == SQDFConfig.from_dict(cfg.to_dict())
    with pytest.raises(ValueError, match="'batch_size' was renamed to 'transitions_per_step'"):
        SQDFConfig.from_dict({"batch_size": 8})  # old name: only stored studies and --set
    with pytest.raises(ValueError, match="kl_weight"):
        SQDFConfig(kl_weight=0.0)
    with pytest.raises(ValueError, match="gamma"):
        SQDFConfig(gamma=1.5)
    with pytest.raises(ValueError, match="accepted values: tweedie"):
        SQDFConfig(x0_method="euler")
    with pytest.raises(ValueError, match="buffer_method"):
        SQDFConfig(buffer_method="fifo")
    with pytest.raises(ValueError, match="eta"):
        SQDFConfig(eta=0.0)
    with pytest.raises(ValueError, match="rollouts_per_step"):
        SQDFConfig(rollouts_per_step=0, onpolicy_fraction=0.5)
    # several problems are all reported
    with pytest.raises(ValueError, match="lr.*buffer_priority"):
        SQDFConfig(lr=-1.0, buffer_priority="seiko")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.kl_weight = 2.0  # type: ignore[misc]


def test_trainer_rejects_deterministic_sampler_and_missing_consistency() -> None:
    prior = gaussian_prior(K=4)
    with pytest.raises(ValueError, match="deterministic"):
        SQDFTrainer(prior.with_settings(eta=0.0), SQDFConfig(eta=None))  # keep the prior's
    with pytest.raises(ValueError, match="consistency"):
        SQDFTrainer(prior, SQDFConfig(x0_method="consistency"))


# --------------------------------------------------------------------------- analytic tilt
def test_analytic_tilt_matches_kl_optimum(tilt_runs) -> None:
    shift, cov_pol, cov_ref = tilt_runs["base"]
    target = cov_ref @ A.double() / 1.0  # Σ_ref a / α
    assert torch.linalg.norm(shift - target) <= 0.1 * torch.linalg.norm(target), (shift, target)
    # the tilt of a Gaussian by a linear reward keeps its covariance
    assert torch.allclose(cov_pol, cov_ref, rtol=0.1, atol=0.1 * float(cov_ref.abs().max()))
    # the sampler's covariance is not the data's (so Σ_ref must be measured)
    assert not torch.allclose(cov_ref, COV.double(), rtol=0.1)


def test_larger_alpha_and_discount_shrink_the_shift(tilt_runs) -> None:
    along = {k: float(v[0] @ A.double()) for k, v in tilt_runs.items()}
    assert along["base"] > 0
    assert along["alpha3"] < 0.5 * along["base"]
    assert along["alpha3"] == pytest.approx(along["base"] / 3, rel=0.1)
    assert along["gamma07"] < 0.8 * along["base"]


# --------------------------------------------------------------------------- the loss
def _perturbed_trainer(prior: DiffusionPrior, **kw) -> SQDFTrainer:
    trainer = SQDFTrainer(prior, SQDFConfig(rollouts_per_step=2, transitions_per_step=8, **kw))
    with torch.no_grad():
        for p in trainer.policy.denoiser.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(3)))
    return trainer


def test_kl_term_is_the_exact_gaussian_kl(flat_prior) -> None:
    trainer = _perturbed_trainer(flat_prior)
    K = flat_prior.num_inference_steps
    x_t = torch.randn(2 * K, 2, generator=torch.Generator().manual_seed(0))
    step = torch.arange(K).repeat(2)
    _, parts = trainer.loss(linear_reward, x_t, step)
    mu = trainer.policy.step_mean(x_t, step)
    mu_ref = trainer.reference.step_mean(x_t, step).mean
    sigma = mu.sigma.reshape(-1)
    pos = sigma > 0
    assert int(pos.sum()) >= K  # all but the last transition are stochastic
    expected = torch.distributions.kl_divergence(
        torch.distributions.Independent(
            torch.distributions.Normal(mu.mean[pos], sigma[pos, None].expand(-1, 2)), 1
        ),
        torch.distributions.Independent(
            torch.distributions.Normal(mu_ref[pos], sigma[pos, None].expand(-1, 2)), 1
        ),
    )
    assert torch.allclose(parts["kl"][pos], expected.detach(), rtol=1e-4, atol=1e-7)
    # σ = 0 (last step): finite, with the documented variance floor
    last = ~pos
    assert bool(last.any()) and torch.isfinite(parts["kl"]).all()
    floor = float((flat_prior.sigmas[flat_prior.sigmas > 0] ** 2).min())
    manual = ((mu.mean - mu_ref)[last] ** 2).sum(1) / (2 * floor)
    assert torch.allclose(parts["kl"][last], manual.detach(), rtol=1e-4)
    assert trainer.kl_var_floor == pytest.approx(floor)


def test_gaussian_step_kl_helper() -> None:
    m = torch.tensor([[1.0, 2.0]])
    assert float(gaussian_step_kl(m, torch.zeros(1, 2), torch.tensor([[0.5]]))) == pytest.approx(
        5.0
    )


def test_last_step_never_produces_nan(flat_prior) -> None:
    trainer = SQDFTrainer(
        flat_prior, SQDFConfig(rollouts_per_step=2, transitions_per_step=4, lr=0.05)
    )
    K = flat_prior.num_inference_steps
    assert float(flat_prior.sigmas[-1]) == 0.0
    for _ in range(5):
        loss, parts = trainer.loss(
            linear_reward, torch.randn(4, 2), torch.full((4,), K - 1, dtype=torch.long)
        )
        assert torch.isfinite(loss) and all(torch.isfinite(v).all() for v in parts.values())
    history = trainer.train(linear_reward, steps=5, progress=False)
    assert all(torch.isfinite(torch.tensor(list(h.values()))).all() for h in history)
    assert {"loss", "reward", "kl", "grad_norm"} <= set(history[0])


def test_loss_value_matches_formula(flat_prior) -> None:
    trainer = _perturbed_trainer(flat_prior, gamma=0.8, kl_weight=0.3)
    K = flat_prior.num_inference_steps
    x_t = torch.randn(K, 2, generator=torch.Generator().manual_seed(5))
    step = torch.arange(K)
    z = torch.randn(K, 2, generator=torch.Generator().manual_seed(6))
    loss, parts = trainer.loss(linear_reward, x_t, step, noise=z)
    with torch.no_grad():
        mu = trainer.policy.step_mean(x_t, step)
        x_prev = mu.mean + mu.sigma * z
        x0 = trainer.reference.tweedie(x_prev, step + 1)
        r = linear_reward(x0)
        assert torch.equal(x0[-1], x_prev[-1])  # identity on the last step
        q = 0.8 ** (K - 1 - step).float() * r
        expected = -(q - 0.3 * parts["kl"]).mean()
    assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-5)
    assert torch.allclose(parts["q"], q, rtol=1e-5)


# --------------------------------------------------------------------------- gradient isolation
def test_no_gradient_leaks_into_reference_estimator_or_reward_model() -> None:
    torch.manual_seed(0)
    sched = DDIMScheduler(clip_sample=False)
    cm = ConsistencyModel(MLPDenoiser(2, hidden=16, depth=2), sched.alphas_cumprod)
    prior = DiffusionPrior(
        MLPDenoiser(2, hidden=16, depth=2),
        sched,
        shape=(2,),
        num_inference_steps=5,
        value_range=None,
        consistency=cm,
    )
    reward_model = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1))

    def reward(x: torch.Tensor) -> torch.Tensor:
        return reward_model(x).squeeze(-1)

    snap = {
        "prior": {k: v.clone() for k, v in prior.denoiser.state_dict().items()},
        "cm": {k: v.clone() for k, v in cm.state_dict().items()},
        "reward": {k: v.clone() for k, v in reward_model.state_dict().items()},
    }
    cfg = SQDFConfig(x0_method="consistency", rollouts_per_step=2, transitions_per_step=8, lr=0.01)
    trainer = SQDFTrainer(prior, cfg)
    ref_snap = {k: v.clone() for k, v in trainer.reference.denoiser.state_dict().items()}
    trainer.train(reward, steps=3, progress=False)
    est = trainer.reference.consistency
    assert est is not None
    for module in (trainer.reference.denoiser, est, reward_model, prior.denoiser, cm):
        assert all(p.grad is None for p in module.parameters())
    for name, module in (("prior", prior.denoiser), ("cm", cm), ("reward", reward_model)):
        for k, v in module.state_dict().items():
            assert torch.equal(v, snap[name][k]), (name, k)
    for k, v in trainer.reference.denoiser.state_dict().items():
        assert torch.equal(v, ref_snap[k])
    # the user's networks keep their trainable flags; the policy did move
    assert all(p.requires_grad for p in reward_model.parameters())
    assert all(p.requires_grad for p in prior.denoiser.parameters())
    moved = any(
        not torch.equal(v, snap["prior"][k])
        for k, v in trainer.policy.denoiser.state_dict().items()
    )
    assert moved


# --------------------------------------------------------------------------- estimator choice
@pytest.mark.parametrize("method", ["tweedie", "consistency", "ddim"])
def test_estimator_choice_changes_only_the_x0_estimate(flat_prior, monkeypatch, method) -> None:
    flat_prior.consistency = ConsistencyModel(
        MLPDenoiser(2, hidden=8, depth=1), flat_prior.scheduler.alphas_cumprod
    )
    trainer = _perturbed_trainer(flat_prior, x0_method=method, ddim_m=2, gamma=0.9, kl_weight=1.0)
    K = flat_prior.num_inference_steps
    x_t = torch.randn(K, 2, generator=torch.Generator().manual_seed(1))
    step = torch.arange(K)
    z = torch.randn(K, 2, generator=torch.Generator().manual_seed(2))
    calls = []
    shift = torch.tensor([0.25, -1.0])

    def stub(x, j, method="tweedie", m=1):
        calls.append((method, m, torch.as_tensor(j).clone()))
        return x + shift

    monkeypatch.setattr(trainer.reference, "x0_estimate", stub)
    loss, parts = trainer.loss(linear_reward, x_t, step, noise=z)
    assert len(calls) == 1
    assert calls[0][0] == method and calls[0][1] == 2
    assert torch.equal(calls[0][2], step + 1)  # the estimator sees state i+1
    # with the stub, every method gives the same loss: f(x_prev) is the only thing that differs
    with torch.no_grad():
        mu = trainer.policy.step_mean(x_t, step)
        x_prev = mu.mean + mu.sigma * z
        q = 0.9 ** (K - 1 - step).float() * linear_reward(x_prev + shift)
    assert torch.allclose(parts["q"], q, rtol=1e-5)
    assert float(loss.detach()) == pytest.approx(float(-(q - parts["kl"]).mean()), rel=1e-5)


def test_estimators_differ_in_x0_only(flat_prior) -> None:
    """Real estimators: same μ_θ and KL, different rewards (consistency untrained)."""
    flat_prior.consistency = ConsistencyModel(
        MLPDenoiser(2, hidden=8, depth=1), flat_prior.scheduler.alphas_cumprod
    )
    K = flat_prior.num_inference_steps
    x_t = torch.randn(K, 2, generator=torch.Generator().manual_seed(1))
    step = torch.arange(K)
    z = torch.randn(K, 2, generator=torch.Generator().manual_seed(2))
    out = {}
    for method in ("tweedie", "consistency", "ddim"):
        trainer = _perturbed_trainer(flat_prior, x0_method=method, ddim_m=2)
        out[method] = trainer.loss(linear_reward, x_t, step, noise=z)[1]
    assert torch.equal(out["tweedie"]["kl"], out["consistency"]["kl"])
    assert torch.equal(out["tweedie"]["kl"], out["ddim"]["kl"])
    assert not torch.allclose(out["tweedie"]["reward"], out["consistency"]["reward"])
    # on the last step every estimator is the identity
    assert out["tweedie"]["reward"][-1] == out["consistency"]["reward"][-1]
    assert out["tweedie"]["reward"][-1] == out["ddim"]["reward"][-1]


# --------------------------------------------------------------------------- LoRA
def test_lora_trains_only_adapters_on_the_tiny_unet(image_prior) -> None:
    base = {k: v.clone() for k, v in image_prior.denoiser.state_dict().items()}
    cfg = SQDFConfig(
        train="lora",
        lora_rank=2,
        rollouts_per_step=2,
        transitions_per_step=4,
        lr=0.05,
        grad_clip=None,
    )
    trainer = SQDFTrainer(image_prior, cfg)
    names = list(trainer.trainable_parameters)
    assert names and all("lora_" in n for n in names)
    before = {k: v.detach().clone() for k, v in trainer.policy.denoiser.state_dict().items()}

    def brightness(x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1).mean(1)

    history = trainer.train(brightness, steps=3, progress=False)
    assert all(h["grad_norm"] > 0 for h in history)
    after = trainer.policy.denoiser.state_dict()
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    assert changed and all("lora_" in k for k in changed)
    assert any("lora_B" in k for k in changed)
    for k, v in image_prior.denoiser.state_dict().items():
        assert torch.equal(v, base[k])
    # the state holds only adapter weights and restores them
    state = trainer.state_dict(include_buffer=False)
    policy_keys = [k for k in state if k.startswith("policy/")]
    assert policy_keys and all("lora_" in k for k in policy_keys)
    other = SQDFTrainer(image_prior, cfg)
    other.load_state_dict(state)
    for k, v in other.policy.denoiser.state_dict().items():
        assert torch.equal(v, after[k]), k
    # merged result: a plain UNet2DModel computing the adapted network
    tuned = trainer.finetuned_prior()
    assert type(tuned.denoiser) is UNet2DModel
    assert set(tuned.denoiser.state_dict()) == set(base)
    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([10, 400, 900])
    with torch.no_grad():
        y_adapted = trainer.policy.denoiser(x, t).sample
        y_merged = tuned.denoiser(x, t).sample
        y_base = image_prior.denoiser(x, t).sample
    assert torch.allclose(y_adapted, y_merged, atol=1e-4)
    assert not torch.allclose(y_merged, y_base, atol=1e-5)


def test_lora_rejects_networks_without_layers() -> None:
    with pytest.raises(ValueError, match="LoRA"):
        SQDFTrainer(gaussian_prior(K=4), SQDFConfig(train="lora"))


# --------------------------------------------------------------------------- rounds, buffer, persistence
def test_external_buffer_and_round_refill(flat_prior) -> None:
    buf = ReplayBuffer(capacity=64, seed=9)
    queried = flat_prior.sample(6, torch.Generator().manual_seed(0), return_trajectory=True)
    buf.add(queried.trajectory, torch.linspace(-2, 1, 6), "queried", round=0)
    cfg = SQDFConfig(rollouts_per_step=2, transitions_per_step=8, lr=0.05)
    trainer = SQDFTrainer(flat_prior, cfg, buffer=buf)
    assert trainer.buffer is buf
    trainer.train(linear_reward, steps=3, progress=False)
    assert len(buf) == 6 + 3 * 2 and buf.sources.count("rollout") == 6
    assert trainer.start_round() == {} and trainer.round == 1 and len(buf) == 12  # no chains
    trainer.train(linear_reward, steps=2, progress=False)
    assert set(buf.rounds.tolist()) == {0, 1}
    # the round's queried chains replace the buffer's content (clear_buffer_each_round)
    extra = trainer.start_round(5, queried.trajectory[:4], torch.zeros(4, dtype=torch.float64))
    assert extra == {"n_queried_in_buffer": 4.0} and trainer.round == 5
    assert len(buf) == 4 and set(buf.sources) == {"queried"} and set(buf.rounds.tolist()) == {5}
    keep = SQDFTrainer(flat_prior, SQDFConfig(clear_buffer_each_round=False, buffer_capacity=3))
    keep.start_round(1, queried.trajectory[:2], torch.zeros(2))
    assert keep.start_round(2, queried.trajectory, torch.zeros(6)) == {"n_queried_in_buffer": 3.0}
    assert len(keep.buffer) == 3  # the last `capacity` chains
    with pytest.raises(ValueError, match="one value per chain"):
        keep.start_round(3, queried.trajectory, None)


def test_buffer_with_other_step_count_is_rejected(flat_prior) -> None:
    buf = ReplayBuffer(capacity=8)
    buf.add(torch.zeros(2, 4, 2), torch.zeros(2), "queried")  # K = 3, prior has 6
    trainer = SQDFTrainer(flat_prior, SQDFConfig(onpolicy_fraction=0.0, rollouts_per_step=0), buf)
    with pytest.raises(ValueError, match="K=6"):
        trainer.train(linear_reward, steps=1, progress=False)


def test_reward_shape_is_checked(flat_prior) -> None:
    trainer = SQDFTrainer(flat_prior, SQDFConfig(rollouts_per_step=2, transitions_per_step=4))
    with pytest.raises(ValueError, match="reward_fn"):
        trainer.train(lambda x: x, steps=1, progress=False)


def test_state_dict_round_trip_through_safetensors(flat_prior, tmp_path) -> None:
    cfg = SQDFConfig(rollouts_per_step=2, transitions_per_step=8, lr=0.02)
    a = SQDFTrainer(flat_prior, cfg)
    a.train(linear_reward, steps=2, progress=False)
    a.start_round()
    a.train(linear_reward, steps=1, progress=False)
    path = tmp_path / "trainer.safetensors"
    save_file(a.state_dict(), str(path))
    b = SQDFTrainer(flat_prior, cfg)
    b.load_state_dict(load_file(str(path)))
    assert b.round == a.round and b.num_updates == a.num_updates and len(b.buffer) == len(a.buffer)
    ha = a.train(linear_reward, steps=2, progress=False)
    hb = b.train(linear_reward, steps=2, progress=False)
    assert [h["loss"] for h in ha] == pytest.approx([h["loss"] for h in hb], rel=1e-6)
    for (k, va), vb in zip(
        a.policy.denoiser.state_dict().items(), b.policy.denoiser.state_dict().values()
    ):
        assert torch.allclose(va, vb, atol=1e-6), k


def test_finetune_leaves_the_prior_alone_and_calls_back(flat_prior) -> None:
    before = {k: v.clone() for k, v in flat_prior.denoiser.state_dict().items()}
    seen = []
    tuned = finetune(
        flat_prior,
        linear_reward,
        SQDFConfig(steps=4, rollouts_per_step=2, transitions_per_step=8, lr=0.05),
        callback=seen.append,
        progress=False,
    )
    assert len(seen) == 4 and tuned is not flat_prior
    for k, v in flat_prior.denoiser.state_dict().items():
        assert torch.equal(v, before[k])
    gen = torch.Generator().manual_seed(0)
    assert tuned.sample(3, gen).x.shape == (3, 2)
    # early stop: a callback returning True ends training
    trainer = SQDFTrainer(flat_prior, SQDFConfig(rollouts_per_step=1, transitions_per_step=2))
    assert len(trainer.train(linear_reward, steps=10, callback=lambda m: True, progress=False)) == 1


@pytest.mark.parametrize("method", ["random", "on-policy", "reward", "reward+gamma"])
def test_trains_from_queried_trajectories_only(flat_prior, method) -> None:
    """The ask/tell pattern: no rollouts, a buffer of queried trajectories with observed values."""
    buf = ReplayBuffer(capacity=32, seed=0)
    q = flat_prior.sample(8, torch.Generator().manual_seed(0), return_trajectory=True)
    buf.add(q.trajectory, torch.linspace(-3, -1, 8), "queried", round=0)
    cfg = SQDFConfig(
        rollouts_per_step=0,
        onpolicy_fraction=0.0,
        buffer_method=method,
        transitions_per_step=8,
        lr=0.05,
    )
    trainer = SQDFTrainer(flat_prior, cfg, buffer=buf)
    history = trainer.train(linear_reward, steps=3, progress=False)
    assert len(buf) == 8 and all(h["grad_norm"] > 0 for h in history)
    assert history[0]["kl"] == pytest.approx(0.0, abs=1e-10)  # policy starts at the prior
    assert history[-1]["kl"] > 0
