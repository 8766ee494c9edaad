"""Offline data sets behind the shipped priors: 8×8 digits and a 2-D ring of Gaussians.

Digits: scikit-learn's bundled ``load_digits`` (1797 images of 8×8 pixels with
integer intensities 0…16, ten classes; no download). Pixels are scaled to
[-1, 1] by ``x / 8 − 1`` and shaped ``(n, 1, 8, 8)``. The split is a fixed
stratified 80/20 split (``train_test_split(test_size=0.2, stratify=y,
random_state=0)``): **1437 training images, 360 held-out images**, disjoint,
every class in both. The digits prior and the digits classifier are trained on
the training part only; the held-out part is what their evidence is measured on.

Rings: an equal-weight mixture of 8 isotropic Gaussians with std 0.15 whose
means sit evenly on a circle of radius 2 (angles 2πk/8, k = 0…7). Its density
is exact, so log-likelihoods of samples are a ground-truth naturalness score.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch

__all__ = [
    "DigitsSplit",
    "digits_split",
    "DIGITS_SEED",
    "DIGITS_HELDOUT_FRACTION",
    "DIGITS_N_TRAIN",
    "DIGITS_N_HELDOUT",
    "RingsDistribution",
    "digits_to_unit",
]

DIGITS_SEED = 0
DIGITS_HELDOUT_FRACTION = 0.2
DIGITS_N_TRAIN = 1437
DIGITS_N_HELDOUT = 360


@dataclass(frozen=True)
class DigitsSplit:
    """The fixed digits split.

    Attributes:
        x_train: ``(1437, 1, 8, 8)`` float32 in [-1, 1].
        y_train: ``(1437,)`` long labels 0…9.
        x_heldout: ``(360, 1, 8, 8)`` float32 in [-1, 1].
        y_heldout: ``(360,)`` long labels 0…9.
        train_index: ``(1437,)`` row indices into ``load_digits()`` (for provenance).
        heldout_index: ``(360,)`` row indices into ``load_digits()``.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_heldout: torch.Tensor
    y_heldout: torch.Tensor
    train_index: torch.Tensor
    heldout_index: torch.Tensor


def digits_to_unit(images: torch.Tensor) -> torch.Tensor:
    """Map raw sklearn intensities 0…16 to [-1, 1] (``x / 8 − 1``); shape preserved."""
    return images / 8.0 - 1.0


@lru_cache(maxsize=1)
def _digits_split_cached() -> DigitsSplit:
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    images = np.asarray(data.images, dtype=np.float32)  # (1797, 8, 8), values 0..16
    labels = np.asarray(data.target, dtype=np.int64)
    idx = np.arange(len(labels))
    tr, ho = train_test_split(
        idx, test_size=DIGITS_HELDOUT_FRACTION, stratify=labels, random_state=DIGITS_SEED
    )
    tr, ho = np.sort(tr), np.sort(ho)
    x = digits_to_unit(torch.from_numpy(images)).unsqueeze(1)
    y = torch.from_numpy(labels)
    tr_t, ho_t = torch.from_numpy(tr), torch.from_numpy(ho)
    split = DigitsSplit(x[tr_t], y[tr_t], x[ho_t], y[ho_t], tr_t, ho_t)
    if len(tr) != DIGITS_N_TRAIN or len(ho) != DIGITS_N_HELDOUT:
        raise RuntimeError(
            f"scikit-learn's digits split gave {len(tr)}/{len(ho)} images, "
            f"expected {DIGITS_N_TRAIN}/{DIGITS_N_HELDOUT}"
        )
    return split


def digits_split() -> DigitsSplit:
    """The fixed stratified 80/20 split of sklearn's 8×8 digits (1437 train / 360 held-out).

    Returns clones, so callers may modify the tensors freely.
    """
    s = _digits_split_cached()
    return DigitsSplit(
        *(
            t.clone()
            for t in (
                s.x_train,
                s.y_train,
                s.x_heldout,
                s.y_heldout,
                s.train_index,
                s.heldout_index,
            )
        )
    )


class RingsDistribution:
    """Equal-weight mixture of ``n_components`` isotropic 2-D Gaussians on a circle.

    p(x) = (1/C) Σ_c N(x; μ_c, s² I),  μ_c = R (cos 2πc/C, sin 2πc/C).

    Args:
        n_components: C (default 8).
        radius: R (default 2.0).
        std: s (default 0.15).
    """

    def __init__(self, n_components: int = 8, radius: float = 2.0, std: float = 0.15) -> None:
        if int(n_components) < 1 or not radius > 0 or not std > 0:
            raise ValueError(
                "RingsDistribution needs n_components >= 1, radius > 0 and std > 0; "
                f"got n_components={n_components}, radius={radius}, std={std}"
            )
        self.n_components = int(n_components)
        self.radius = float(radius)
        self.std = float(std)
        angles = 2 * math.pi * torch.arange(self.n_components, dtype=torch.float64)
        angles = angles / self.n_components
        self.means = self.radius * torch.stack([angles.cos(), angles.sin()], dim=-1)  # (C, 2)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` draws, shape ``(n, 2)`` float32, all randomness from ``generator``."""
        if int(n) < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if not isinstance(generator, torch.Generator):
            raise TypeError("generator must be a torch.Generator (seeded by the caller)")
        comp = torch.randint(self.n_components, (int(n),), generator=generator)
        z = torch.randn(int(n), 2, generator=generator, dtype=torch.float64)
        return (self.means[comp] + self.std * z).float()

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log-density, x: ``(n, 2)`` → ``(n,)`` (computed in float64, returned in x's dtype)."""
        if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[1] != 2:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must have shape (n, 2), got {got}")
        xd = x.to(torch.float64)
        means = self.means.to(xd.device)
        # 1. log N(x; μ_c, s² I) = −|x − μ_c|² / (2 s²) − log(2π s²) for each component.
        sq = (xd[:, None, :] - means[None]).pow(2).sum(-1)  # (n, C)
        log_comp = -sq / (2 * self.std**2) - math.log(2 * math.pi * self.std**2)
        # 2. Mix with equal weights 1/C.
        out = torch.logsumexp(log_comp, dim=1) - math.log(self.n_components)
        return out.to(x.dtype if x.is_floating_point() else torch.float64)

    def __repr__(self) -> str:
        return (
            f"RingsDistribution(n_components={self.n_components}, radius={self.radius}, "
            f"std={self.std})"
        )
