"""Naturalness measures: log-densities that NO method optimizes.

A benchmark's naturalness score of a design x is a log-density log q(x) of a
fixed model of the real data, fit on the training split only:

* toy task (rings): q = the exact data density (``RingsDistribution.log_prob``);
* digits tasks: q = a probabilistic-PCA × GMM density on pixels
  (:class:`PCAGMMDensity`): x ∈ R^64 is split into its coordinates z ∈ R^d on the
  top d principal axes of the training digits and the residual r (64 − d dims),

      log q(x) = log GMM(z) + log N(r; 0, s² I_{64−d}),

  with the GMM (C full-covariance components) fit on the training scores and s²
  the mean residual variance per dimension of the training digits. It is a proper
  density on R^64 in nats. It is deliberately pixel-based: the digits rewards are
  classifier logits, so a density in the classifier's feature space would be a
  function of what the optimizers push on.

Each measure is calibrated on held-out real data: ``threshold`` is the 5th
percentile of held-out log-densities, and ``fraction_natural(x)`` is the share of
designs above it (≈ 0.95 for held-out real data by construction).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable

import numpy as np
import torch

__all__ = ["NaturalnessModel", "ExactLogDensity", "PCAGMMDensity"]


class NaturalnessModel(ABC):
    """A fixed log-density log q(x) of real data; higher = more natural.

    Subclasses implement :meth:`_log_density`. Call :meth:`calibrate` with
    held-out real data before :meth:`fraction_natural`.
    """

    threshold: float | None = None
    percentile: float = 5.0

    @abstractmethod
    def _log_density(self, x: torch.Tensor) -> np.ndarray:
        """log q(x) for designs ``(n, *shape)`` → ``(n,)`` float64 (nats)."""

    def log_density(self, x: torch.Tensor) -> np.ndarray:
        """log q(x), x: ``(n, *shape)`` → ``(n,)`` float64; NaN designs give NaN."""
        x = torch.as_tensor(x).detach().cpu()
        out = np.full(x.shape[0], np.nan)
        ok = torch.isfinite(x.reshape(x.shape[0], -1)).all(1).numpy()
        if ok.any():
            out[ok] = self._log_density(x[torch.from_numpy(ok)])
        return out

    def calibrate(self, heldout: torch.Tensor, percentile: float = 5.0) -> NaturalnessModel:
        """Set ``threshold`` = the ``percentile``-th percentile of held-out log-densities."""
        if not 0.0 < percentile < 100.0:
            raise ValueError(f"percentile must lie in (0, 100), got {percentile}")
        self.percentile = float(percentile)
        self.threshold = float(np.nanpercentile(self.log_density(heldout), percentile))
        return self

    def fraction_natural(self, x: torch.Tensor) -> float:
        """Share of designs whose log q exceeds the held-out threshold (NaN counts as not)."""
        if self.threshold is None:
            raise RuntimeError("call calibrate(heldout) before fraction_natural()")
        lq = self.log_density(x)
        return float(np.mean(np.nan_to_num(lq, nan=-np.inf) > self.threshold))


class ExactLogDensity(NaturalnessModel):
    """Wraps a known log-density ``log_prob(x (n, *shape)) → (n,)``."""

    def __init__(self, log_prob: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self._log_prob = log_prob

    def _log_density(self, x: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return np.asarray(self._log_prob(x).detach().cpu().numpy(), dtype=np.float64)


class PCAGMMDensity(NaturalnessModel):
    """Probabilistic-PCA residual × GMM on the principal scores (see module docstring).

    Args:
        n_pca: d, principal axes kept.
        n_components: C, GMM components.
        seed: seeds the PCA solver and the GMM's k-means initialisation.
        reg_covar: added to GMM covariance diagonals.
    """

    def __init__(
        self, n_pca: int = 16, n_components: int = 10, seed: int = 0, reg_covar: float = 1e-3
    ) -> None:
        if int(n_pca) < 1 or int(n_components) < 1:
            raise ValueError(f"n_pca and n_components must be >= 1, got {n_pca} and {n_components}")
        self.n_pca = int(n_pca)
        self.n_components = int(n_components)
        self.seed = int(seed)
        self.reg_covar = float(reg_covar)
        self._pca = None
        self._gmm = None
        self._s2: float | None = None
        self._dim: int | None = None

    def fit(self, x_train: torch.Tensor) -> PCAGMMDensity:
        """Fit on training designs ``(n, *shape)`` (n > n_pca)."""
        from sklearn.decomposition import PCA  # lazy: sklearn is slow to import
        from sklearn.mixture import GaussianMixture  # lazy

        X = torch.as_tensor(x_train).detach().cpu().reshape(len(x_train), -1).double().numpy()
        n, D = X.shape
        if self.n_pca >= D or n <= self.n_pca:
            raise ValueError(
                f"need n_pca < dimension and more points than n_pca; got n={n}, D={D}, "
                f"n_pca={self.n_pca}"
            )
        # 1. Principal axes and scores z of the training data.
        self._pca = PCA(self.n_pca, random_state=self.seed).fit(X)
        z = self._pca.transform(X)
        # 2. Residual variance per discarded dimension: s² = E‖r‖² / (D − d).
        r = X - self._pca.inverse_transform(z)
        self._s2 = float((r**2).sum(1).mean() / (D - self.n_pca))
        # 3. GMM on the scores.
        self._gmm = GaussianMixture(
            self.n_components,
            covariance_type="full",
            random_state=self.seed,
            reg_covar=self.reg_covar,
        ).fit(z)
        self._dim = D
        return self

    def _log_density(self, x: torch.Tensor) -> np.ndarray:
        if self._gmm is None or self._pca is None or self._s2 is None:
            raise RuntimeError("PCAGMMDensity must be fit(x_train) before use")
        X = x.reshape(x.shape[0], -1).double().numpy()
        if X.shape[1] != self._dim:
            raise ValueError(
                f"designs have {X.shape[1]} dimensions, the model was fit on {self._dim}"
            )
        z = self._pca.transform(X)
        r = X - self._pca.inverse_transform(z)
        m = self._dim - self.n_pca
        log_res = -0.5 * (r**2).sum(1) / self._s2 - 0.5 * m * math.log(2 * math.pi * self._s2)
        return self._gmm.score_samples(z) + log_res
