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

from sqdf_bbo.surrogates.base import (
    SURROGATES,
    FeatureMap,
    Surrogate,
    SurrogateState,
    check_options,
    flatten_features,
    make_surrogate,
)
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
    "check_options",
]

SURROGATES.register("ensemble", EnsembleSurrogate)
SURROGATES.register("ucb", UCBSurrogate)
SURROGATES.register("gp", GPSurrogate)
