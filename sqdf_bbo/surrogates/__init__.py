"""Differentiable surrogates of the oracle with optimism (the reward SQDF fine-tunes against).

=============  =========================================  ==========================
name           model                                      optimistic value
=============  =========================================  ==========================
``ensemble``   H bootstrap MLP heads                      max over heads
``ucb``        MLP features + feature covariance          μ + min(β·√(φᵀ(C+λI)⁻¹φ), b_max)
``gp``         exact BoTorch SingleTaskGP on ≤ N points   μ + β·σ
=============  =========================================  ==========================

Build one by name with :func:`make_surrogate`.
"""

from __future__ import annotations

from typing import Any

from sqdf_bbo.surrogates.base import FeatureMap, Surrogate, SurrogateState, flatten_features
from sqdf_bbo.surrogates.ensemble import EnsembleConfig, EnsembleSurrogate
from sqdf_bbo.surrogates.gp import GPConfig, GPSurrogate
from sqdf_bbo.surrogates.ucb import UCBConfig, UCBSurrogate

__all__ = [
    "Surrogate",
    "FeatureMap",
    "SurrogateState",
    "flatten_features",
    "EnsembleSurrogate",
    "EnsembleConfig",
    "UCBSurrogate",
    "UCBConfig",
    "GPSurrogate",
    "GPConfig",
    "SURROGATES",
    "make_surrogate",
]

SURROGATES: dict[str, type[Surrogate]] = {
    "ensemble": EnsembleSurrogate,
    "ucb": UCBSurrogate,
    "gp": GPSurrogate,
}
"""Accepted names of :func:`make_surrogate`."""


def make_surrogate(name: str, **kwargs: Any) -> Surrogate:
    """Build a surrogate by name: ``"ensemble"``, ``"ucb"`` or ``"gp"``.

    ``kwargs`` are ``seed``, ``feature_map``, ``config`` and any field of the
    surrogate's config (e.g. ``make_surrogate("ucb", seed=1, beta=2.0)``).
    """
    cls = SURROGATES.get(str(name).lower()) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(f"unknown surrogate {name!r}; accepted names: {sorted(SURROGATES)}")
    return cls(**kwargs)
