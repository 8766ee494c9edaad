"""The pieces of the Ehrlich sequence tasks (``benchmarks.tasks`` registers them as tasks).

A task ``ehrlich-v<v>-l<L>-c<c>-k<k>-q<q>`` (instance seed 0) has:

* prior: the shipped sequence prior of that name (designs ``(L, v)``, one-hot decoder);
* oracle: :class:`oracles.ehrlich.EhrlichOracle` of the instance, noise-free (the run seed
  seeds only its unused noise generator): infeasible sequences are failed points;
* naturalness: the exact chain log-likelihood (x_0 ~ π) of the decoded sequence,
  :class:`ChainLogLikelihood`: NaN for an infeasible sequence (probability 0), so the
  reported mean is over feasible designs and ``natural_frac`` counts infeasible ones as not
  natural; calibrated, like every task, on held-out real designs (1,000 chain sequences);
* diversity features: flat 0/1 one-hot vectors of the decoded sequences;
* extra columns: ``feasible_frac``, ``hamming`` (mean pairwise Hamming distance) and
  ``vendi_onehot`` (Vendi score, cosine kernel on one-hot vectors: 1 − Hamming/L);
* natural sequences for the methods that start from sequences rather than from a prior
  (GA, LaMBO-2): chain samples drawn with the run's seed.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import torch

from benchmarks.metrics import vendi_score
from benchmarks.naturalness import NaturalnessModel
from benchmarks.sequence_priors import SHIPPED_SEQUENCE_PRIORS, ehrlich_oracle
from oracles.ehrlich import EhrlichOracle
from sqdf_bbo.sequences import hamming_diversity, one_hot_designs, one_hot_features

__all__ = [
    "SEQUENCE_TASKS",
    "ehrlich_oracle",
    "ChainLogLikelihood",
    "instance",
    "heldout_designs",
    "sequence_features",
    "sequence_extra_metrics",
    "natural_sequences",
]

SEQUENCE_TASKS = SHIPPED_SEQUENCE_PRIORS
_HELDOUT_SEED = 12345
_HELDOUT_N = 1000
_NATURAL_SEED_OFFSET = 777  # natural sequences of run seed s come from seed s + this


@cache
def instance(name: str) -> EhrlichOracle:
    """The noise-free oracle of task ``name`` (shared: for its chain and its motifs)."""
    return ehrlich_oracle(name)


class ChainLogLikelihood(NaturalnessModel):
    """Exact log-likelihood of the decoded sequence under the instance's chain (x_0 ~ π);
    NaN where the sequence is infeasible."""

    def __init__(self, oracle: EhrlichOracle) -> None:
        self.oracle = oracle

    def _log_density(self, x: torch.Tensor) -> np.ndarray:
        ll = self.oracle.log_likelihood(self.oracle.tokens(x)).numpy()
        return np.where(np.isfinite(ll), ll, np.nan)


def heldout_designs(name: str) -> torch.Tensor:
    """1,000 chain sequences of the instance as designs ``(1000, L, v)``."""
    o = instance(name)
    gen = torch.Generator().manual_seed(_HELDOUT_SEED)
    return one_hot_designs(o.sample_natural(_HELDOUT_N, gen), o.num_states)


def sequence_features(name: str, x: torch.Tensor) -> torch.Tensor:
    """Flat 0/1 one-hot vectors ``(n, L·v)`` of the sequences of designs ``x (n, L, v)``."""
    o = instance(name)
    return one_hot_features(o.tokens(x), o.num_states)


def sequence_extra_metrics(name: str, x: torch.Tensor) -> dict[str, float]:
    """``feasible_frac``, ``hamming`` and ``vendi_onehot`` of a batch ``(n, L, v)``."""
    o = instance(name)
    tok = o.tokens(x)
    return {
        "feasible_frac": float(o.feasible(tok).double().mean()),
        "hamming": hamming_diversity(tok),
        "vendi_onehot": vendi_score(one_hot_features(tok, o.num_states), "cosine"),
    }


def natural_sequences(name: str, n: int, seed: int) -> torch.Tensor:
    """``n`` chain sequences ``(n, L)`` of the instance drawn with run seed ``seed``."""
    gen = torch.Generator().manual_seed(int(seed) + _NATURAL_SEED_OFFSET)
    return instance(name).sample_natural(int(n), gen)
