"""Digits split (fixed, disjoint, scaled) and the exact rings density."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal

from sqdf_bbo.data import (
    DIGITS_N_HELDOUT,
    DIGITS_N_TRAIN,
    RingsDistribution,
    digits_split,
)


def test_digits_split_sizes_disjoint_and_scaled() -> None:
    s = digits_split()
    assert s.x_train.shape == (DIGITS_N_TRAIN, 1, 8, 8) == (1437, 1, 8, 8)
    assert s.x_heldout.shape == (DIGITS_N_HELDOUT, 1, 8, 8) == (360, 1, 8, 8)
    assert s.x_train.dtype == torch.float32 and s.y_train.dtype == torch.long
    tr, ho = set(s.train_index.tolist()), set(s.heldout_index.tolist())
    assert not tr & ho and tr | ho == set(range(1797))
    for x in (s.x_train, s.x_heldout):
        assert x.min().item() == -1.0 and x.max().item() == 1.0
    # every class in both parts, stratified (≈ 20 % of each class held out)
    counts_ho = torch.bincount(s.y_heldout, minlength=10)
    counts_all = counts_ho + torch.bincount(s.y_train, minlength=10)
    assert ((counts_ho.float() / counts_all - 0.2).abs() < 0.02).all()


def test_digits_split_matches_sklearn_rows_and_is_fixed() -> None:
    from sklearn.datasets import load_digits

    raw = load_digits()
    s1, s2 = digits_split(), digits_split()
    assert torch.equal(s1.train_index, s2.train_index)
    k = int(s1.heldout_index[7])
    expected = torch.from_numpy(raw.images[k].astype(np.float32)) / 8 - 1
    assert torch.equal(s1.x_heldout[7, 0], expected) and int(s1.y_heldout[7]) == raw.target[k]
    s1.x_train.zero_()  # callers get copies
    assert digits_split().x_train.abs().sum() > 0


def _scipy_logp(dist: RingsDistribution, x: np.ndarray) -> np.ndarray:
    dens = sum(multivariate_normal(m, dist.std**2 * np.eye(2)).pdf(x) for m in dist.means.numpy())
    return np.log(dens / dist.n_components)


def test_rings_log_prob_matches_scipy() -> None:
    dist = RingsDistribution()
    pts = np.array([[2.0, 0.0], [0.0, 0.0], [1.3, 1.5], [-2.1, 0.1], [0.3, -1.9]])
    ours = dist.log_prob(torch.tensor(pts, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(ours, _scipy_logp(dist, pts), rtol=1e-10, atol=1e-10)
    # at a component mean the density is ≈ N(0; 0, s²I) / C (others negligible)
    at_mean = math.log(1 / (2 * math.pi * dist.std**2) / dist.n_components)
    assert abs(float(ours[0]) - at_mean) < 1e-6


def test_rings_log_prob_integrates_to_one() -> None:
    dist = RingsDistribution()
    h = 0.02
    g = torch.arange(-3.2, 3.2, h, dtype=torch.float64)
    xx, yy = torch.meshgrid(g, g, indexing="ij")
    pts = torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=-1)
    total = dist.log_prob(pts).exp().sum().item() * h * h
    assert abs(total - 1.0) < 1e-3


def test_rings_sample_seeded_and_on_the_ring() -> None:
    dist = RingsDistribution()
    a = dist.sample(4000, torch.Generator().manual_seed(5))
    b = dist.sample(4000, torch.Generator().manual_seed(5))
    assert a.shape == (4000, 2) and torch.equal(a, b)
    r = a.norm(dim=1)
    assert abs(r.mean().item() - 2.0) < 0.02
    comp = torch.cdist(a.double(), dist.means).argmin(1)
    assert torch.bincount(comp, minlength=8).min().item() > 4000 / 8 * 0.8
    # the sample mean log-density agrees with the analytic entropy-ish value of a narrow GMM
    expected = -math.log(2 * math.pi * dist.std**2) - 1.0 - math.log(8)
    assert abs(dist.log_prob(a).mean().item() - expected) < 0.05


def test_rings_bad_input() -> None:
    dist = RingsDistribution()
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        dist.log_prob(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="std > 0"):
        RingsDistribution(std=0.0)
    with pytest.raises(TypeError, match="generator"):
        dist.sample(3, None)  # type: ignore[arg-type]
