"""SQDF as an ask/tell optimizer: a diffusion prior fine-tuned round by round against a surrogate.

A round (:meth:`~sqdf_bbo.optimizers.finetuned.FinetunedPriorOptimizer._fit`) fits the
surrogate, refills the fine-tuner's replay buffer with the queried chains and their observed
(standardized) values, and fine-tunes the policy with SQDF
(:class:`~sqdf_bbo.finetuning.sqdf.SQDFTrainer`) for ``finetune.steps`` steps,
KL-regularized to the **pretrained** prior.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqdf_bbo.diffusion.prior import DiffusionPrior
from sqdf_bbo.finetuning.configs import SQDFConfig
from sqdf_bbo.finetuning.sqdf import SQDFTrainer
from sqdf_bbo.optimizers.finetuned import FinetunedPriorConfig, FinetunedPriorOptimizer

__all__ = ["SQDF", "SQDFOptimizerConfig"]


@dataclass(frozen=True)
class SQDFOptimizerConfig(FinetunedPriorConfig):
    """Settings of the :class:`SQDF` optimizer (defaults: the official BBO setup scaled down).

    The surrogate, the reward and its guards are documented in
    :class:`~sqdf_bbo.optimizers.finetuned.FinetunedPriorConfig`.

    Attributes:
        finetune: the fine-tuner's settings (:class:`~sqdf_bbo.finetuning.configs.SQDFConfig`,
            every one documented there, with its default and why). A mapping changes only
            the settings it names (``finetune={"steps": 20}``); ``SQDFConfig()`` is the
            default, so a mapping and an instance with the same settings are the same config.
    """

    finetune: SQDFConfig = field(default_factory=SQDFConfig)


class SQDF(FinetunedPriorOptimizer):
    """Online black-box optimization with a diffusion prior fine-tuned by SQDF.

    Args:
        prior: the pretrained :class:`~sqdf_bbo.diffusion.prior.DiffusionPrior` (not modified), e.g.
            ``sqdf_bbo.load_prior("digits")``.
        batch_size: designs per ``ask()``.
        seed: seeds every random draw (sampling, fine-tuning, buffer, surrogate).
        config: :class:`SQDFOptimizerConfig` (defaults: official BBO setup, scaled).
        study: folder to write the study through to (crash-safe; resume with ``SQDF.load``).

    Example::

        opt = sqdf_bbo.SQDF(sqdf_bbo.load_prior("digits"), batch_size=64, seed=0)
        batch = opt.ask()
        opt.tell(batch.ids, oracle(batch.x))
    """

    method = "sqdf"
    config_class = SQDFOptimizerConfig
    trainer_class = SQDFTrainer
    kl_log_name = "kl_step"

    def finetuned_prior(self) -> DiffusionPrior:
        """A standalone copy of the current fine-tuned sampler."""
        return self.trainer.finetuned_prior()
