"""Metrics with known answers: Vendi, distances, best-so-far, chain KL, naturalness."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from benchmarks.metrics import (
    best_so_far,
    mean_pairwise_distance,
    median_pairwise_distance,
    reward_stats,
    top_fraction_mean,
    vendi_score,
)
from benchmarks.naturalness import ExactLogDensity, PCAGMMDensity
from sqdf_bbo.data import RingsDistribution
from sqdf_bbo.finetuning.kl import chain_kl


@pytest.mark.parametrize("kernel", ["rbf", "cosine"])
def test_vendi_identical_points_is_one(kernel: str) -> None:
    x = torch.tensor([[0.3, -1.2, 2.0]]).repeat(7, 1)
    assert vendi_score(x, kernel, bandwidth=1.0) == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("kernel", ["rbf", "cosine"])
def test_vendi_orthogonal_one_hot_is_n(kernel: str) -> None:
    n = 6
    # Cosine: one-hot vectors are orthogonal (similarity 0). RBF: distance √2 with a tiny
    # bandwidth makes similarities exp(-1/h²) ≈ 0.
    assert vendi_score(torch.eye(n), kernel, bandwidth=0.05) == pytest.approx(n, rel=1e-9)


def test_vendi_two_clusters_is_two() -> None:
    x = torch.cat([torch.zeros(5, 2), torch.full((5, 2), 100.0)])
    assert vendi_score(x, "rbf", bandwidth=1.0) == pytest.approx(2.0, rel=1e-9)


def test_vendi_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="bandwidth"):
        vendi_score(torch.eye(3), "rbf")
    with pytest.raises(ValueError, match="accepted values"):
        vendi_score(torch.eye(3), "linear", bandwidth=1.0)


def test_pairwise_distances_known_answer() -> None:
    x = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 0.0]])
    # Pairs: 5, 0, 5 → mean 10/3, median 5.
    assert mean_pairwise_distance(x) == pytest.approx(10.0 / 3.0)
    assert median_pairwise_distance(x) == pytest.approx(5.0)
    assert mean_pairwise_distance(x[:1]) == 0.0


def test_best_so_far_is_monotone_and_ignores_nan() -> None:
    rng = np.random.default_rng(0)
    v = rng.normal(size=50)
    v[[0, 7, 20]] = np.nan
    b = best_so_far(v)
    assert np.isnan(b[0])
    assert np.all(np.diff(b[1:]) >= 0)
    assert b[-1] == pytest.approx(np.nanmax(v))
    assert best_so_far([1.0, 3.0, 2.0]).tolist() == [1.0, 3.0, 3.0]


def test_reward_stats() -> None:
    y = np.array([float(i) for i in range(20)] + [np.nan])
    s = reward_stats(y)
    assert s.mean == pytest.approx(9.5)
    assert s.top10_mean == pytest.approx(18.5)  # best 2 of 20
    assert s.max == 19.0 and s.n_failed == 1
    assert top_fraction_mean([5.0], 0.1) == 5.0


def test_chain_kl_zero_for_same_network_and_closed_form(flat_prior) -> None:
    g = torch.Generator().manual_seed(0)
    traj = flat_prior.sample(8, g, return_trajectory=True).trajectory
    same = chain_kl(flat_prior.denoiser, flat_prior, traj)
    assert same.kl == pytest.approx(0.0, abs=1e-12)
    # A denoiser whose ε is shifted by c changes μ by −c·(√ᾱ_prev √(1−ᾱ_t)/√ᾱ_t − √(1−ᾱ_prev−σ²)),
    # independent of x: the chain KL is Σ_i D·(Δμ_i)²/(2σ_i²) exactly.
    c = 0.1

    class Shifted(torch.nn.Module):
        def __init__(self, base: torch.nn.Module) -> None:
            super().__init__()
            self.base = base

        def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return self.base(x, t) + c

    res = chain_kl(Shifted(flat_prior.denoiser), flat_prior, traj)
    ab = flat_prior.alpha_bars.double()
    expected = 0.0
    counted = 0
    for i in range(flat_prior.num_inference_steps):
        s = float(flat_prior.sigmas[i])
        if s <= 1e-6:
            continue
        counted += 1
        a_t, a_p = float(ab[i]), float(ab[i + 1])
        coef = math.sqrt(a_p) * math.sqrt(1 - a_t) / math.sqrt(a_t) - math.sqrt(
            max(1 - a_p - s**2, 0)
        )
        expected += 2 * (c * coef) ** 2 / (2 * s**2)
    assert res.steps_counted == counted == flat_prior.num_inference_steps - 1
    assert res.kl == pytest.approx(expected, rel=1e-4)


def test_exact_toy_log_density_matches_closed_form() -> None:
    dist = RingsDistribution()
    nat = ExactLogDensity(dist.log_prob)
    # At a component mean the other components are ≥ 2R sin(π/8)/s ≈ 10 std away: the density
    # is (1/C) · 1/(2π s²) up to a relative 1e-20.
    x = dist.means[:1].float()
    expected = -math.log(8) - math.log(2 * math.pi * 0.15**2)
    assert nat.log_density(x)[0] == pytest.approx(expected, rel=1e-6)
    # At the origin every component is at distance R: log p = −R²/(2s²) − log(2πs²).
    origin = torch.zeros(1, 2)
    assert nat.log_density(origin)[0] == pytest.approx(
        -(2.0**2) / (2 * 0.15**2) - math.log(2 * math.pi * 0.15**2), rel=1e-6
    )
    held = dist.sample(2000, torch.Generator().manual_seed(1))
    nat.calibrate(held)
    assert nat.fraction_natural(held) == pytest.approx(0.95, abs=0.01)
    assert nat.fraction_natural(torch.zeros(3, 2)) == 0.0


def test_pca_gmm_density_is_gaussian_for_gaussian_data() -> None:
    # For Gaussian data and a 1-component GMM the model is a proper Gaussian density:
    # its mean log-density on fresh data ≈ −½ Σ log(2π e λ) (up to the residual averaging).
    g = torch.Generator().manual_seed(0)
    scales = torch.tensor([3.0, 2.0, 0.5, 0.5, 0.5, 0.5])
    x = torch.randn(4000, 6, generator=g) * scales
    model = PCAGMMDensity(n_pca=2, n_components=1).fit(x)
    fresh = torch.randn(4000, 6, generator=g) * scales
    expected = -0.5 * float(torch.log(2 * math.pi * math.e * scales**2).sum())
    assert float(np.mean(model.log_density(fresh))) == pytest.approx(expected, abs=0.1)
    # Off-manifold points (large residual) are far less likely than data.
    assert model.log_density(torch.full((1, 6), 5.0))[0] < expected - 50
