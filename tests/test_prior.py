"""The prior layer: our DDIM step equals diffusers', estimators, trajectories, save/load, bad input."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler
from torch import nn

from sqdf_bbo.diffusion import io
from sqdf_bbo.diffusion.io import builtin_classes, load_module, register_network, save_module
from sqdf_bbo.diffusion.networks import MLPDenoiser
from sqdf_bbo.diffusion.prior import DiffusionPrior, call_denoiser

from .conftest import tiny_unet


@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("steps", [4, 10])
@pytest.mark.parametrize("ptype", ["epsilon", "v_prediction"])
def test_step_matches_diffusers_ddim(eta: float, steps: int, ptype: str) -> None:
    sched = DDIMScheduler(clip_sample=False, prediction_type=ptype)
    prior = DiffusionPrior(tiny_unet(), sched, shape=(1, 8, 8), eta=eta, num_inference_steps=steps)
    ref = DDIMScheduler.from_config(sched.config)
    ref.set_timesteps(steps)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3, 1, 8, 8, generator=gen)
    for i, t in enumerate(ref.timesteps):
        z = torch.randn(x.shape, generator=gen)
        with torch.no_grad():
            ours = prior.step(x, i, z)
            out = call_denoiser(prior.denoiser, x, t.expand(3))
            theirs = ref.step(out, t, x, eta=eta, variance_noise=z).prev_sample
        assert (ours - theirs).abs().max().item() < 1e-5
        x = theirs


def test_ddim_m_all_remaining_equals_deterministic_endpoint(flat_prior: DiffusionPrior) -> None:
    det = flat_prior.with_settings(eta=0.0)
    gen = torch.Generator().manual_seed(0)
    out = det.sample(5, gen, return_trajectory=True)
    K = flat_prior.num_inference_steps
    for j in (0, 2, K - 1):
        with torch.no_grad():
            est = flat_prior.ddim_x0(out.trajectory[:, j], j, m=K - j)
        assert torch.allclose(est, out.x, atol=1e-5)
    # mixed state indices in one batch, some already at x_0
    js = torch.tensor([0, 1, 3, K, K])
    x = out.trajectory[torch.arange(5), js]
    with torch.no_grad():
        est = flat_prior.ddim_x0(x, js, m=K)
    assert torch.allclose(est, out.x, atol=1e-5)


def test_ddim_m_is_differentiable(flat_prior: DiffusionPrior) -> None:
    x = torch.randn(4, 2, requires_grad=True)
    flat_prior.ddim_x0(x, 1, m=3).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_trajectory_shape_and_seed(image_prior: DiffusionPrior) -> None:
    K = image_prior.num_inference_steps
    out = image_prior.sample(4, torch.Generator().manual_seed(3), return_trajectory=True)
    assert out.trajectory.shape == (4, K + 1, 1, 8, 8)
    assert torch.equal(out.trajectory[:, -1], out.x)
    again = image_prior.sample(4, torch.Generator().manual_seed(3), return_trajectory=True)
    assert torch.equal(again.trajectory, out.trajectory)
    x_T = torch.randn(torch.Size([4, 1, 8, 8]), generator=torch.Generator().manual_seed(3))
    assert torch.equal(out.trajectory[:, 0], x_T)
    other = image_prior.sample(4, torch.Generator().manual_seed(4))
    assert not torch.equal(other.x, out.x)


def test_step_mean_formulas(flat_prior: DiffusionPrior) -> None:
    x = torch.randn(3, 2)
    i = 2
    out = flat_prior.step_mean(x, i)
    j_ab, p_ab = flat_prior.alpha_bars[i], flat_prior.alpha_bars[i + 1]
    eps = flat_prior.denoiser(x, flat_prior.timesteps[i].expand(3))
    x0 = (x - (1 - j_ab).sqrt() * eps) / j_ab.sqrt()
    var = (1 - p_ab) / (1 - j_ab) * (1 - j_ab / p_ab)
    mean = p_ab.sqrt() * x0 + (1 - p_ab - var).sqrt() * eps
    assert torch.allclose(out.mean, mean, atol=1e-6)
    assert torch.allclose(out.sigma.flatten(), var.sqrt().expand(3), atol=1e-7)
    # last step ends at ᾱ = 1: σ = 0 and μ = x̂0
    last = flat_prior.step_mean(x, flat_prior.num_inference_steps - 1)
    assert torch.all(last.sigma == 0)
    assert torch.allclose(last.mean, last.x0, atol=1e-6)


def test_step_mean_with_other_denoiser(flat_prior: DiffusionPrior) -> None:
    tuned = flat_prior.clone()
    with torch.no_grad():
        for p in tuned.denoiser.parameters():
            p.add_(0.1)
    x = torch.randn(3, 2)
    a = flat_prior.step_mean(x, 1, denoiser=tuned.denoiser).mean
    b = tuned.step_mean(x, 1).mean
    assert torch.allclose(a, b)
    assert not torch.allclose(a, flat_prior.step_mean(x, 1).mean)


def test_save_load_roundtrip(tmp_path, image_prior: DiffusionPrior, flat_prior) -> None:
    for prior in (image_prior, flat_prior):
        path = prior.save(tmp_path / prior.denoiser.__class__.__name__)
        loaded = DiffusionPrior.load(path)
        a = prior.sample(3, torch.Generator().manual_seed(0)).x
        b = loaded.sample(3, torch.Generator().manual_seed(0)).x
        assert torch.allclose(a, b, atol=1e-6)
        assert loaded.shape == prior.shape and loaded.value_range == prior.value_range


def test_save_load_foreign_module_needs_instance(tmp_path) -> None:
    class Foreign(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(2, 2)

        def forward(self, x, t):
            return self.lin(x)

    prior = DiffusionPrior(Foreign(), shape=(2,), num_inference_steps=3, value_range=None)
    prior.save(tmp_path / "p")
    with pytest.raises(ValueError, match="pass an instance"):
        DiffusionPrior.load(tmp_path / "p")
    loaded = DiffusionPrior.load(tmp_path / "p", denoiser=Foreign())
    assert torch.equal(loaded.denoiser.lin.weight, prior.denoiser.lin.weight)


def test_bad_input_errors() -> None:
    net = MLPDenoiser(2, hidden=8, depth=1)
    with pytest.raises(ValueError, match="prediction_type 'foo'.*epsilon"):
        DiffusionPrior(net, DDPMScheduler(prediction_type="foo"), shape=(2,))
    prior = DiffusionPrior(net, shape=(2,), num_inference_steps=3)
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        prior.step(torch.randn(3, 3), 0)

    class Bad(torch.nn.Module):
        def forward(self, x, t):
            return x[:, :1]

    bad = DiffusionPrior(Bad(), shape=(2,), num_inference_steps=3)
    with pytest.raises(ValueError, match="differs from its input shape"):
        bad.sample(2, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="unknown x0 method 'foo'.*tweedie"):
        prior.x0_estimate(torch.randn(2, 2), 0, method="foo")
    with pytest.raises(ValueError, match="no consistency model"):
        prior.x0_estimate(torch.randn(2, 2), 0, method="consistency")
    with pytest.raises(ValueError, match="eta"):
        DiffusionPrior(net, shape=(2,), eta=2.0)


def test_a_registered_network_without_config_saves_its_weights(tmp_path) -> None:
    class NoConfigNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(2, 2)

    with io.NETWORKS.temporarily():  # registered for this block only
        register_network(NoConfigNet)
        net = NoConfigNet()
        meta = save_module(net, tmp_path)
        assert meta["kind"] == "state_dict"  # nothing to rebuild it from: weights only
        with pytest.raises(ValueError, match="pass an instance"):
            load_module(meta, tmp_path)
        back = load_module(meta, tmp_path, instance=NoConfigNet())
        assert torch.equal(back.lin.weight, net.lin.weight)
    assert "NoConfigNet" not in builtin_classes()
