"""SEIKO as an ask/tell optimizer (Uehara et al., "Feedback efficient online fine-tuning of
diffusion models", ICML 2024), for comparison with SQDF.

A round (:meth:`~sqdf_bbo.optimizers.finetuned.FinetunedPriorOptimizer._fit`) fits the
optimistic surrogate (``ucb``: SEIKO-UCB, neural-linear UCB bonus; ``ensemble``:
SEIKO-Bootstrap, max over bootstrap heads) and the reward exactly as :class:`sqdf_bbo.SQDF`
does (so α means the same thing for both), snapshots the current policy as the KL reference
(SEIKO regularizes to the PREVIOUS round's model, not to the pretrained prior) and
fine-tunes by back-propagating the reward through the whole reparameterized sampling chain
with the official randomized truncation (:class:`~sqdf_bbo.finetuning.seiko.SEIKOTrainer`).

Differences from SQDF kept on purpose: no replay buffer, no soft-Q/x0 estimator, gradients
through the chain, KL to the previous round. Same: surrogate family, reward scale, α, η, K.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqdf_bbo.finetuning.configs import SEIKOTrainConfig
from sqdf_bbo.finetuning.seiko import SEIKOTrainer
from sqdf_bbo.optimizers.finetuned import FinetunedPriorConfig, FinetunedPriorOptimizer

__all__ = ["SEIKO", "SEIKOConfig"]


@dataclass(frozen=True)
class SEIKOConfig(FinetunedPriorConfig):
    """Settings of :class:`SEIKO` (defaults follow the official SEIKO code, scaled down).

    The surrogate, the reward and its guards are documented in
    :class:`~sqdf_bbo.optimizers.finetuned.FinetunedPriorConfig`; here ``surrogate`` is
    ``"ucb"`` (SEIKO-UCB) by default (``"ensemble"``: SEIKO-Bootstrap) and ``progress`` off.

    Attributes:
        finetune: the fine-tuner's settings
            (:class:`~sqdf_bbo.finetuning.configs.SEIKOTrainConfig`, every one documented
            there, with its default). A mapping changes only the settings it names;
            ``SEIKOTrainConfig()`` is the default.
    """

    surrogate: str = "ucb"
    progress: bool = False
    finetune: SEIKOTrainConfig = field(default_factory=SEIKOTrainConfig)


class SEIKO(FinetunedPriorOptimizer):
    """SEIKO baseline (see the module docstring).

    Args:
        prior: the pretrained :class:`~sqdf_bbo.diffusion.prior.DiffusionPrior` (not modified).
        batch_size: designs per ``ask()``.
        seed: seeds sampling, fine-tuning and the surrogate.
        config: :class:`SEIKOConfig`.
        study: folder to write the study through to.
    """

    method = "seiko"
    config_class = SEIKOConfig
    trainer_class = SEIKOTrainer
    kl_log_name = "kl_to_previous"
