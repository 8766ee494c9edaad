"""Baseline optimizers on the ask/tell base, for benchmarks against SQDF.

==================  =========================================================
``PriorSampler``    ``method="prior"``: samples the pretrained prior, never
                    fine-tunes (the floor every method should beat).
``SEIKO``           ``method="seiko"``: SEIKO (Uehara et al., ICML 2024) —
                    optimistic surrogate (``ucb`` = SEIKO-UCB, ``ensemble`` =
                    SEIKO-Bootstrap), fine-tuning by back-propagating the
                    surrogate reward through the sampling chain with randomized
                    truncation, KL to the previous round's model.
``GPBO``            ``method="gp-bo"``: BoTorch ``SingleTaskGP`` +
                    ``qLogExpectedImprovement`` directly in the raw design box
                    (no generative prior).
``CMAES``           ``method="cma-es"``: pycma's CMA-ES in the design box, one
                    population per round (``airfoil`` extra; no generative prior).
==================  =========================================================

SQDF itself is :class:`sqdf_bbo.SQDF` (its variants are configurations of
:class:`sqdf_bbo.SQDFOptimizerConfig`).
"""

from __future__ import annotations

from .cmaes import CMAES, CMAESConfig
from .gp_bo import GPBO
from .gp_bo_core import GPBOConfig
from .prior_sampler import PriorSampler
from .seiko import SEIKO, SEIKOConfig
from .seiko_trainer import SEIKOTrainConfig, SEIKOTrainer

__all__ = [
    "PriorSampler",
    "SEIKO",
    "SEIKOConfig",
    "SEIKOTrainer",
    "SEIKOTrainConfig",
    "GPBO",
    "GPBOConfig",
    "CMAES",
    "CMAESConfig",
]
