"""Benchmark metrics: reward statistics and diversity (Vendi score).

Notation (shapes):
    y        oracle values of one batch, ``(n,)``; NaN marks a failed point.
    φ        task features of a batch, ``(n, F)`` (see ``benchmarks.tasks``).
    K        similarity matrix ``(n, n)`` with ``K_ii = 1``.

Diversity — the Vendi score (Friedman & Dieng, 2023):

    Vendi(φ) = exp( −Σ_j λ_j log λ_j ),   λ = eigenvalues of K / n.

It is the effective number of distinct points: 1 for n identical points, n for n
points with pairwise similarity 0. Two kernels are provided:

* ``rbf``: ``k(a, b) = exp(−‖a − b‖² / (2 h²))`` with a FIXED bandwidth ``h``. A
  benchmark task fixes ``h`` once by the median heuristic on REAL data (the median
  pairwise distance of held-out data points), never on the batch being scored —
  a per-batch median would make the score invariant to shrinking the batch, so a
  collapsed sampler would look as diverse as the data.
* ``cosine``: ``k(a, b) = ⟨a, b⟩ / (‖a‖ ‖b‖)`` clamped to [0, 1].

The chain KL of a fine-tuned sampler to its prior is in :mod:`sqdf_bbo.finetuning.kl`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "KERNELS",
    "similarity_matrix",
    "median_pairwise_distance",
    "vendi_score",
    "mean_pairwise_distance",
    "best_so_far",
    "top_fraction_mean",
    "RewardStats",
    "reward_stats",
]

KERNELS = ("rbf", "cosine")


def _as_features(features: torch.Tensor | np.ndarray, what: str = "features") -> torch.Tensor:
    """Validate and flatten to float64 ``(n, F)``."""
    f = torch.as_tensor(features)
    if f.ndim < 1 or f.shape[0] < 1:
        raise ValueError(f"{what} must have shape (n, ...) with n >= 1, got {tuple(f.shape)}")
    f = f.detach().reshape(f.shape[0], -1).to(torch.float64)
    if not torch.isfinite(f).all():
        raise ValueError(f"{what} contains NaN or inf values")
    return f


def similarity_matrix(
    features: torch.Tensor | np.ndarray, kernel: str = "rbf", bandwidth: float | None = None
) -> torch.Tensor:
    """Kernel matrix ``(n, n)`` float64 with unit diagonal.

    Args:
        features: ``(n, F)`` (any trailing shape is flattened).
        kernel: ``"rbf"`` (needs ``bandwidth`` h > 0) or ``"cosine"``.
        bandwidth: RBF length scale h.
    """
    f = _as_features(features)
    if kernel == "rbf":
        if bandwidth is None or not float(bandwidth) > 0:
            raise ValueError(f"the rbf kernel needs a bandwidth > 0, got {bandwidth}")
        d2 = torch.cdist(f, f).pow(2)
        k = torch.exp(-d2 / (2.0 * float(bandwidth) ** 2))
    elif kernel == "cosine":
        norms = f.norm(dim=1, keepdim=True)
        if (norms == 0).any():
            raise ValueError("the cosine kernel is undefined for all-zero feature vectors")
        u = f / norms
        k = (u @ u.T).clamp(0.0, 1.0)
    else:
        raise ValueError(f"unknown kernel {kernel!r}; accepted values: {', '.join(KERNELS)}")
    k.fill_diagonal_(1.0)
    return k


def median_pairwise_distance(features: torch.Tensor | np.ndarray) -> float:
    """Median Euclidean distance over distinct pairs (the median heuristic for h)."""
    f = _as_features(features)
    if f.shape[0] < 2:
        raise ValueError("the median pairwise distance needs at least 2 points")
    d = torch.cdist(f, f)
    iu = torch.triu_indices(f.shape[0], f.shape[0], offset=1)
    return float(d[iu[0], iu[1]].median())


def vendi_score(
    features: torch.Tensor | np.ndarray, kernel: str = "rbf", bandwidth: float | None = None
) -> float:
    """Vendi score exp(−Σ λ log λ), λ = eigenvalues of K/n; in [1, n].

    Args:
        features: ``(n, F)``.
        kernel, bandwidth: see :func:`similarity_matrix`.
    """
    k = similarity_matrix(features, kernel, bandwidth)
    n = k.shape[0]
    # 1. λ = eig(K / n); K is PSD with trace n, so λ ≥ 0 and Σ λ = 1 (clamp round-off).
    lam = torch.linalg.eigvalsh(k / n).clamp(min=0.0)
    lam = lam / lam.sum()
    # 2. Shannon entropy of λ (0 log 0 = 0), exponentiated.
    nz = lam[lam > 0]
    return float(torch.exp(-(nz * nz.log()).sum()))


def mean_pairwise_distance(features: torch.Tensor | np.ndarray) -> float:
    """Mean Euclidean distance over distinct pairs (0 for a single point)."""
    f = _as_features(features)
    n = f.shape[0]
    if n < 2:
        return 0.0
    d = torch.cdist(f, f)
    return float(d.sum() / (n * (n - 1)))


def best_so_far(values: Sequence[float] | np.ndarray | torch.Tensor) -> np.ndarray:
    """Running maximum of ``values`` ``(m,)``, ignoring NaN (NaN until the first finite value)."""
    v = np.asarray(torch.as_tensor(values).detach().cpu().numpy(), dtype=np.float64).reshape(-1)
    out = np.full_like(v, np.nan)
    best = -np.inf
    for j, val in enumerate(v):
        if np.isfinite(val) and val > best:
            best = val
        out[j] = best if np.isfinite(best) else np.nan
    return out


def top_fraction_mean(
    values: Sequence[float] | np.ndarray | torch.Tensor, fraction: float = 0.1
) -> float:
    """Mean of the best ``ceil(fraction · m)`` finite values (NaN if none is finite)."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction}")
    v = np.asarray(torch.as_tensor(values).detach().cpu().numpy(), dtype=np.float64).reshape(-1)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan")
    k = max(1, math.ceil(fraction * v.size))
    return float(np.sort(v)[-k:].mean())


@dataclass(frozen=True)
class RewardStats:
    """Oracle values of one batch: mean, top-10% mean, max over finite values, failure count."""

    mean: float
    top10_mean: float
    max: float
    n_failed: int


def reward_stats(values: Sequence[float] | np.ndarray | torch.Tensor) -> RewardStats:
    """Summary of a batch's oracle values ``(n,)``; NaN entries count as failures."""
    v = np.asarray(torch.as_tensor(values).detach().cpu().numpy(), dtype=np.float64).reshape(-1)
    ok = v[np.isfinite(v)]
    n_failed = int(v.size - ok.size)
    if ok.size == 0:
        return RewardStats(float("nan"), float("nan"), float("nan"), n_failed)
    return RewardStats(float(ok.mean()), top_fraction_mean(ok, 0.1), float(ok.max()), n_failed)
