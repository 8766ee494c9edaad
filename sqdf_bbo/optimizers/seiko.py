"""SEIKO as an ask/tell optimizer (Uehara et al., "Feedback efficient online fine-tuning of
diffusion models", ICML 2024), for comparison with SQDF.

One round (run by the base at the start of ``ask`` once new values were told):

1. fit the optimistic surrogate on every successful observation: ``ucb`` (SEIKO-UCB,
   neural-linear UCB bonus) or ``ensemble`` (SEIKO-Bootstrap, max over bootstrap heads);
2. reward r̂(x) = (optimistic(x) − ȳ) / s_y (standardized exactly as :class:`sqdf_bbo.SQDF`
   does, so α means the same thing for both);
3. snapshot the current policy as the KL reference (SEIKO regularizes to the PREVIOUS
   round's model, not to the pretrained prior);
4. fine-tune by back-propagating r̂ through the whole reparameterized sampling chain with
   the official randomized truncation (each step keeps its ε gradient with probability
   (i+1)/(K+1); :class:`~sqdf_bbo.finetuning.seiko.SEIKOTrainer`);
5. ``_propose``: sample the batch from the fine-tuned policy.

Differences from SQDF kept on purpose: no replay buffer, no soft-Q/x0 estimator, gradients
through the chain, KL to the previous round. Same: surrogate family, reward scale, α, η, K.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from sqdf_bbo.config import check_fields
from sqdf_bbo.finetuning.seiko import SEIKOTrainConfig, SEIKOTrainer
from sqdf_bbo.optimizers.base import Observations
from sqdf_bbo.optimizers.finetuned import FinetunedPriorOptimizer, RewardGuards

__all__ = ["SEIKO", "SEIKOConfig"]

_SURROGATES = ("ucb", "ensemble", "gp")


@dataclass(frozen=True)
class SEIKOConfig(RewardGuards):
    """Settings of :class:`SEIKO` (defaults follow the official SEIKO code, scaled down).

    The over-optimization guards ``surrogate_objective``, ``reward_cap`` and
    ``optimism_warning`` are documented in :class:`~sqdf_bbo.optimizers.finetuned.RewardGuards`.

    Attributes:
        surrogate: ``"ucb"`` (SEIKO-UCB), ``"ensemble"`` (SEIKO-Bootstrap) or ``"gp"``.
        surrogate_options: keyword overrides of the surrogate's config (JSON values).
        alpha_official: the official ratio ``kl_weight / loss_coeff`` (official 0.01 / 0.01 =
            1), which weights Σ_i mean_d Δ²/(2σ²) (dimension mean, with the ½): converted with
            α = α_official / D (SQDF's official KL has no ½, hence SQDF's 2/D).
        alpha: KL weight in our convention; overrides ``alpha_official`` when set.
        steps_per_round: gradient steps per round; official 10 (5 epochs × 2 steps, where
            SQDF's official code takes 40).
        finetune_batch_size: chains per gradient step.
        lr: Adam learning rate; 1e-4 for full fine-tuning, as SQDF's default (fair comparison).
        grad_clip: max gradient norm (``None``: no clipping).
        truncation: ``"official"`` (each step keeps its ε gradient with probability
            (i+1)/(K+1), states never detached) or ``"last-k"`` (v0.1: only the last
            k_bp ~ U{bp_min … bp_max} states are differentiated through).
        bp_min, bp_max: the window of ``"last-k"``.
        standardize_reward: fine-tune against (r̂ − ȳ)/s_y.
        clip_designs: clamp asked designs to the prior's ``value_range``.
        progress: tqdm bar while fine-tuning.
    """

    surrogate: str = "ucb"
    surrogate_options: Mapping[str, Any] = field(default_factory=dict)
    alpha_official: float = 1.0
    alpha: float | None = None
    steps_per_round: int = 10
    finetune_batch_size: int = 32
    lr: float = 1e-4
    grad_clip: float | None = 1.0
    truncation: str = "official"
    bp_min: int = 1
    bp_max: int = 5
    standardize_reward: bool = True
    clip_designs: bool = True
    progress: bool = False

    def __post_init__(self) -> None:
        check_fields(self)
        super().__post_init__()
        object.__setattr__(self, "surrogate_options", dict(self.surrogate_options))
        if self.surrogate not in _SURROGATES:
            raise ValueError(
                f"surrogate {self.surrogate!r} is unknown; accepted values: {', '.join(_SURROGATES)}"
            )
        if not (math.isfinite(self.alpha_official) and self.alpha_official > 0):
            raise ValueError(f"alpha_official must be > 0, got {self.alpha_official}")
        if self.alpha is not None and not (math.isfinite(self.alpha) and self.alpha >= 0):
            raise ValueError(f"alpha must be >= 0 or None, got {self.alpha}")
        # The remaining fields are validated by the trainer's config.
        self.train_config(64)

    def resolved_alpha(self, dim: int) -> float:
        """α in our convention for ``dim`` design dimensions."""
        return self.alpha if self.alpha is not None else self.alpha_official / dim

    def train_config(self, dim: int) -> SEIKOTrainConfig:
        return SEIKOTrainConfig(
            alpha=self.resolved_alpha(dim),
            steps=self.steps_per_round,
            batch_size=self.finetune_batch_size,
            lr=self.lr,
            grad_clip=self.grad_clip,
            truncation=self.truncation,
            bp_min=self.bp_min,
            bp_max=self.bp_max,
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["surrogate_options"] = dict(self.surrogate_options)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SEIKOConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown SEIKOConfig fields {unknown}; accepted: {sorted(known)}")
        return cls(**dict(d))


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
    kl_log_name = "kl_to_previous"

    def _make_trainer(self, seed: int) -> SEIKOTrainer:
        return SEIKOTrainer(self.prior, self.config.train_config(self.prior.dim), seed=seed + 1)

    def _finetune(
        self, observations: Observations, new_round: int
    ) -> tuple[list[dict[str, float]], dict[str, float]]:
        # 3. KL reference = this round's starting model; 4. back-propagation through the chain.
        self.trainer.start_round()
        return self.trainer.train(self.reward, progress=self.config.progress), {}
