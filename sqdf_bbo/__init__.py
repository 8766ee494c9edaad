"""sqdf-bbo: online black-box optimization with diffusion priors fine-tuned by SQDF.

Public names are imported lazily, so ``import sqdf_bbo`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # prior layer
    "DiffusionPrior": "diffusion.prior",
    "SampleOutput": "diffusion.prior",
    "StepOutput": "diffusion.prior",
    "MLPDenoiser": "diffusion.networks",
    "GaussianDenoiser": "diffusion.networks",
    "SequenceDenoiser": "diffusion.sequence",
    "OneHotDecoder": "diffusion.sequence",
    "ViterbiDecoder": "diffusion.sequence",
    "ConsistencyModel": "diffusion.consistency",
    "distill_consistency": "diffusion.consistency",
    "consistency_error_report": "diffusion.consistency",
    "Conditioning": "diffusion.conditioning",
    "LatentDecoder": "diffusion.latent",
    "load_pipeline_prior": "diffusion.pipelines",
    "load_prior": "diffusion.priors",
    "available_priors": "diffusion.priors",
    "digits_split": "data",
    "RingsDistribution": "data",
    "load_digits_classifier": "classifier",
    # SQDF fine-tuner
    "SQDFConfig": "finetuning.sqdf",
    "SQDFTrainer": "finetuning.sqdf",
    "finetune": "finetuning.sqdf",
    "official_alpha_to_ours": "finetuning.kl",
    "ours_alpha_to_official": "finetuning.kl",
    "ReplayBuffer": "finetuning.buffer",
    # optimizers (ask/tell)
    "Optimizer": "optimizers.base",
    "Batch": "optimizers.base",
    "Proposal": "optimizers.base",
    "Observations": "optimizers.base",
    "Best": "optimizers.base",
    "StudyError": "study.store",
    "FinetunedPriorOptimizer": "optimizers.finetuned",
    "FinetunedPriorConfig": "optimizers.finetuned",
    "SQDF": "optimizers.sqdf",
    "SQDFOptimizerConfig": "optimizers.sqdf",
    # baselines
    "PriorSampler": "optimizers",
    "SEIKO": "optimizers",
    "SEIKOConfig": "optimizers",
    "GPBO": "optimizers",
    "GPBOConfig": "optimizers",
    "CMAES": "optimizers",
    "CMAESConfig": "optimizers",
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
