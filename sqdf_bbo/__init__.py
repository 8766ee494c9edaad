"""sqdf-bbo: online black-box optimization with diffusion priors fine-tuned by SQDF.

Public names are imported lazily, so ``import sqdf_bbo`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # prior layer
    "DiffusionPrior": "prior",
    "SampleOutput": "prior",
    "StepOutput": "prior",
    "MLPDenoiser": "models",
    "GaussianDenoiser": "models",
    "ConsistencyModel": "consistency",
    "distill_consistency": "consistency",
    "consistency_error_report": "consistency",
    "load_prior": "registry",
    "available_priors": "registry",
    "digits_split": "data",
    "RingsDistribution": "data",
    "load_digits_classifier": "classifier",
    # SQDF fine-tuner
    "SQDFConfig": "sqdf",
    "SQDFTrainer": "sqdf",
    "finetune": "sqdf",
    "official_alpha_to_ours": "sqdf",
    "ours_alpha_to_official": "sqdf",
    "ReplayBuffer": "buffer",
    # optimizers (ask/tell)
    "Optimizer": "optimizer",
    "Batch": "optimizer",
    "Proposal": "optimizer",
    "Observations": "optimizer",
    "Best": "optimizer",
    "StudyError": "store",
    "FinetunedPriorOptimizer": "finetuned",
    "SQDF": "sqdf_optimizer",
    "SQDFOptimizerConfig": "sqdf_optimizer",
    # baselines
    "PriorSampler": "baselines",
    "SEIKO": "baselines",
    "SEIKOConfig": "baselines",
    "GPBO": "baselines",
    "GPBOConfig": "baselines",
    # surrogates
    "Surrogate": "surrogates",
    "EnsembleSurrogate": "surrogates",
    "UCBSurrogate": "surrogates",
    "GPSurrogate": "surrogates",
    "make_surrogate": "surrogates",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sqdf_bbo' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
