"""The optimizers layer: ask/tell optimizers on one base (importing it registers them all).

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
``GeneticAlgorithm`` ``method="ga"``: holo's discrete evolution on token sequences
                    (one-hot designs ``(L, v)``; docs/sequences.md).
``LaMBO2``          ``method="lambo2"``: our LaMBO-2 variant (guided masked-LM infill
                    of the best sequences; docs/sequences.md).
``CMAES``           ``method="cma-es"``: pycma's CMA-ES in the design box, one
                    population per round (``airfoil`` extra; no generative prior).
==================  =========================================================

``SQDF`` (``method="sqdf"``, :mod:`~sqdf_bbo.optimizers.sqdf`) is the optimizer this
package is about; its variants are configurations of :class:`SQDFOptimizerConfig`. The
base (:mod:`~sqdf_bbo.optimizers.base`) owns ask/tell; :mod:`~sqdf_bbo.optimizers.finetuned`
is the round shared by SQDF and SEIKO.
"""

from __future__ import annotations

from sqdf_bbo.optimizers.base import Optimizer
from sqdf_bbo.optimizers.cmaes import CMAES, CMAESConfig
from sqdf_bbo.optimizers.genetic import GAConfig, GeneticAlgorithm
from sqdf_bbo.optimizers.gp_bo import GPBO, GPBOConfig
from sqdf_bbo.optimizers.lambo import LaMBO2, LaMBO2Config
from sqdf_bbo.optimizers.prior_sampler import PriorSampler
from sqdf_bbo.optimizers.seiko import SEIKO, SEIKOConfig
from sqdf_bbo.optimizers.sqdf import SQDF, SQDFOptimizerConfig

__all__ = [
    "Optimizer",
    "SQDF",
    "SQDFOptimizerConfig",
    "PriorSampler",
    "SEIKO",
    "SEIKOConfig",
    "GPBO",
    "GPBOConfig",
    "CMAES",
    "CMAESConfig",
    "GeneticAlgorithm",
    "GAConfig",
    "LaMBO2",
    "LaMBO2Config",
]
