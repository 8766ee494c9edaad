"""The settings of the fine-tuners (:class:`SQDFConfig`, :class:`SEIKOTrainConfig`), each
validated here and nowhere else.

The KL weight is one setting, ``kl_weight``, given in the convention of the method's
official code (SQDF: α_official of its BBO script; SEIKO: ``kl_weight / loss_coeff``), so
that the defaults and the papers' numbers read the same. The α the loss uses (our
convention: the exact Gaussian KL, summed over the D design dimensions) follows from it and
D alone: :meth:`_TrainerConfig.alpha_for` (SQDF α = kl_weight · 2 / D, SEIKO α =
kl_weight / D; :func:`~sqdf_bbo.finetuning.kl.official_alpha_to_ours`); a trainer keeps it
as ``trainer.alpha``, and its ``.config`` holds the same ``kl_weight`` as the config it was
given. Settings that depend on the prior (``x0_method="auto"``, ``lr=None``) are resolved
by ``config.resolve(prior)``, which the trainer calls (its ``.config`` is the resolved copy).

The ask/tell optimizers hold one of these as their ``finetune`` field
(:class:`~sqdf_bbo.optimizers.sqdf.SQDFOptimizerConfig`,
:class:`~sqdf_bbo.optimizers.seiko.SEIKOConfig`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from sqdf_bbo.config import (
    ConfigError,
    Range,
    check_fields,
    config_from_dict,
    config_to_dict,
    limit_problems,
)
from sqdf_bbo.deprecation import deprecate
from sqdf_bbo.diffusion.prior import X0_METHODS, DiffusionPrior
from sqdf_bbo.finetuning.buffer import PRIORITIES, SAMPLING_METHODS
from sqdf_bbo.finetuning.discount import GAMMA_RULES, discount_for_steps
from sqdf_bbo.finetuning.kl import official_alpha_to_ours, ours_alpha_to_official

__all__ = ["SQDFConfig", "SEIKOTrainConfig", "TRAIN_MODES", "TRUNCATIONS", "X0_CHOICES"]

TRAIN_MODES: tuple[str, ...] = ("full", "lora")
TRUNCATIONS: tuple[str, ...] = ("official", "last-k")
X0_CHOICES: tuple[str, ...] = (*X0_METHODS, "auto")
"""``x0_method`` values: ``auto`` is ``consistency`` when the prior has a consistency model,
else ``tweedie``; ``"ddim-m"`` is accepted as an alias of ``"ddim"``."""


def _one_of(name: str, value: str, accepted: tuple[str, ...]) -> list[str]:
    if value in accepted:
        return []
    return [f"{name} {value!r} is unknown; accepted values: {', '.join(accepted)}"]


class _TrainerConfig:
    """Shared behaviour of the fine-tuners' configs: the KL weight and (de)serialization."""

    KL_CONVENTION: ClassVar[str]
    kl_weight: float

    def alpha_for(self, dim: int) -> float:
        """α in our convention (exact summed Gaussian KL) for designs of ``dim`` dimensions,
        from ``kl_weight`` (the official code's convention)."""
        return official_alpha_to_ours(self.kl_weight, dim, self.KL_CONVENTION)

    @classmethod
    def migrate_legacy(cls, d: dict[str, Any], dim: int | None) -> dict[str, Any]:
        """Stored settings with the old ``alpha`` (our convention; ``None``: "from
        ``alpha_official``") turned into ``kl_weight`` with the design dimension ``dim``
        (:func:`sqdf_bbo.migration.migrate`); a numeric ``alpha`` won over ``alpha_official``."""
        if "alpha" not in d:
            return d
        out = dict(d)
        alpha = out.pop("alpha")
        deprecate(
            f"the setting 'alpha' of {cls.__name__}",
            f"'kl_weight' (the official convention: α = kl_weight · "
            f"{'2' if cls.KL_CONVENTION == 'sqdf' else '1'} / D)",
            stacklevel=5,
        )
        if alpha is None:
            return out
        if dim is None:
            raise ConfigError(
                f"{cls.__name__}: 'alpha' was replaced by 'kl_weight' (the official "
                "convention), and converting it needs the design dimension: give kl_weight"
            )
        out["kl_weight"] = ours_alpha_to_official(alpha, dim, cls.KL_CONVENTION)
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-able settings (``from_dict`` rebuilds them)."""
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, d: Any) -> Any:
        """Settings from :meth:`to_dict` output."""
        return config_from_dict(cls, d)


@dataclass(frozen=True)
class SQDFConfig(_TrainerConfig):
    """Settings of one SQDF fine-tuner (:class:`~sqdf_bbo.finetuning.sqdf.SQDFTrainer`).

    Attributes:
        kl_weight: the KL weight in the official SQDF code's convention (its α_official;
            > 0): the loss weighs the exact summed Gaussian KL with α = kl_weight · 2 / D
            (:meth:`alpha_for`); larger stays closer to the prior. Default 2.0: the official
            config's default (its BBO script uses 1.0), chosen by the frontier benchmark as
            the weight with the most reward whose final batches stay as natural as the
            prior's (≥ 0.95 × its natural fraction) on both digits tasks
            (docs/results/frontier; 1 kept 88 % natural on digits-ink); on digits (D = 64)
            it is α = 1/16.
        gamma: discount γ ∈ (0, 1] of the soft-Q estimate γ^k r̂(f(x_prev)), as given
            for the official K = 50 (see ``gamma_rule``).
        gamma_rule: how ``gamma`` is used at the sampler's K
            (:mod:`sqdf_bbo.finetuning.discount`): ``"constant"`` (default: γ as given,
            whatever K) or ``"per50"`` (γ_K = γ^(50/K): the official weight profile over
            the chain, γ itself at K = 50). Resolved by :meth:`resolve`, whose copy holds
            γ_K with the rule ``"constant"``.
        discount_constraints: whether γ^k also discounts the constraint term h(f(x_prev))
            (the α-weighted log-feasibility of known constraints and of the learned
            feasibility model, docs/constraints.md). Default ``False``: Q̂ = γ^k r̂ + h. The
            discount is a credit-assignment device for the surrogate's noisy reward; whether
            a design is feasible is decided by the early, mode-choosing steps, which γ^k all
            but silences (γ^19 ≈ 0.14 at K = 20): fine-tuning the airfoil prior against the
            known geometry constraints alone reached 72–78 % feasible samples with the
            discount and 88–92 % without it (prior: 34 %).
        x0_method: x0 estimator f of the frozen prior: ``tweedie``, ``consistency``
            (needs ``prior.consistency``), ``ddim`` (``ddim-m`` with ``ddim_m``
            deterministic steps; the alias ``"ddim-m"`` is accepted) or ``auto``
            (``consistency`` when the prior has a consistency model and is unconditional,
            else ``tweedie``).
        ddim_m: m for ``ddim``.
        steps: optimizer steps per :meth:`SQDFTrainer.train` call (one round of the ask/tell
            optimizer).
        transitions_per_step: transitions (state, step) per optimizer step.
        lr: AdamW learning rate; ``None`` picks 1e-4 for ``train="full"`` and 1e-3
            (the official value, used there with LoRA) for ``train="lora"``. Full
            fine-tuning at 1e-3 moves every weight by ~lr on Adam's first steps, which
            on the digits UNet costs ~100 nats of chain KL at once (docs/sqdf.md).
        grad_clip: max global gradient norm, or ``None`` for no clipping.
        weight_decay: AdamW weight decay.
        onpolicy_fraction: fraction of each batch drawn uniformly from the fresh
            on-policy rollouts of that step; the rest comes from the buffer by
            ``buffer_method``. Default 0: as in the official code, every transition is
            drawn from the buffer (the fresh rollouts enter it first).
        rollouts_per_step: fresh trajectories sampled from the current policy
            (and added to the buffer as ``rollout``) before each optimizer step (the
            official ``on_policy_batch_size``).
        buffer_capacity: trajectories the trainer's own buffer keeps (ignored
            when a buffer is passed to the trainer).
        buffer_method: ``random``, ``on-policy``, ``reward`` or ``reward+gamma``.
        buffer_priority: trajectory weight of ``reward+gamma``: ``shift`` (default),
            ``official`` (max(r, 0)) or ``rank`` (see :mod:`sqdf_bbo.finetuning.buffer`).
        clear_buffer_each_round: :meth:`SQDFTrainer.start_round` given the queried chains
            empties the buffer before adding them (the official BBO code; the chains of all
            rounds are re-added right after).
        eta: DDIM η of the fine-tuned sampler (in (0, 1]; official 1.0: SQDF needs a
            stochastic sampler); ``None`` keeps the prior's.
        num_inference_steps: K; ``None`` keeps the prior's.
        train: ``full`` (every weight of the denoiser) or ``lora`` (peft adapters).
        lora_rank, lora_alpha, lora_targets: LoRA rank, scale numerator (default
            rank) and peft target module names (default every Linear/Conv2d).
    """

    KL_CONVENTION: ClassVar[str] = "sqdf"
    #: The sane range of each numeric setting (checked by ``check_fields``).
    LIMITS: ClassVar[dict[str, Range]] = {
        "kl_weight": Range(0, 1e6, low_open=True),
        "gamma": Range(0, 1, low_open=True),
        "ddim_m": Range(1, 1000),
        "steps": Range(0, 1_000_000),
        "transitions_per_step": Range(1, 1_000_000),
        "lr": Range(0, 1, low_open=True),
        "grad_clip": Range(0, 1e6, low_open=True),
        "weight_decay": Range(0, 100),
        "onpolicy_fraction": Range(0, 1),
        "rollouts_per_step": Range(0, 100_000),
        "buffer_capacity": Range(1, 100_000),
        "eta": Range(0, 1, low_open=True),
        "num_inference_steps": Range(1, 10_000),
        "lora_rank": Range(1, 4096),
        "lora_alpha": Range(0, 1e6, low_open=True),
    }

    kl_weight: float = 2.0
    gamma: float = 0.9
    gamma_rule: str = "constant"
    discount_constraints: bool = False
    x0_method: str = "auto"
    ddim_m: int = 1
    steps: int = 40
    transitions_per_step: int = 64
    lr: float | None = None
    grad_clip: float | None = 1.0
    weight_decay: float = 0.0
    onpolicy_fraction: float = 0.0
    rollouts_per_step: int = 8
    buffer_capacity: int = 1024
    buffer_method: str = "reward+gamma"
    buffer_priority: str = "shift"
    clear_buffer_each_round: bool = True
    eta: float | None = 1.0
    num_inference_steps: int | None = None
    train: str = "full"
    lora_rank: int = 4
    lora_alpha: float | None = None
    lora_targets: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        check_fields(self, limits=False)
        if self.x0_method == "ddim-m":
            object.__setattr__(self, "x0_method", "ddim")
        problems = limit_problems(self) + _one_of("x0_method", self.x0_method, X0_CHOICES)
        if self.onpolicy_fraction > 0 and self.rollouts_per_step == 0:
            problems.append("onpolicy_fraction > 0 needs rollouts_per_step >= 1")
        problems += _one_of("buffer_method", self.buffer_method, SAMPLING_METHODS)
        problems += _one_of("buffer_priority", self.buffer_priority, PRIORITIES)
        problems += _one_of("train", self.train, TRAIN_MODES)
        problems += _one_of("gamma_rule", self.gamma_rule, GAMMA_RULES)
        if problems:
            raise ConfigError("invalid SQDFConfig: " + "; ".join(problems))

    def resolve(self, prior: DiffusionPrior) -> SQDFConfig:
        """A copy for ``prior`` with ``x0_method`` (``auto``), ``lr`` (``None``) and γ
        (``gamma_rule`` at K: ``num_inference_steps``, else the prior's) resolved
        (``kl_weight`` stays: the α it means for ``prior`` is :meth:`alpha_for`)."""
        K = self.num_inference_steps or prior.num_inference_steps
        gamma = discount_for_steps(self.gamma, K, self.gamma_rule)
        x0 = self.x0_method
        if x0 == "auto":  # a conditional prior's consistency model would ignore its condition
            usable = prior.consistency is not None and not prior.conditional
            x0 = "consistency" if usable else "tweedie"
        lr = self.lr if self.lr is not None else (1e-3 if self.train == "lora" else 1e-4)
        return dataclasses.replace(self, x0_method=x0, lr=lr, gamma=gamma, gamma_rule="constant")


@dataclass(frozen=True)
class SEIKOTrainConfig(_TrainerConfig):
    """Settings of the SEIKO fine-tuner (:class:`~sqdf_bbo.finetuning.seiko.SEIKOTrainer`).

    Attributes:
        kl_weight: the KL weight in the official SEIKO code's convention, the ratio
            ``kl_weight / loss_coeff`` (default: the official 0.01 / 0.01 = 1), which weighs
            Σ_i mean_d Δ²/(2σ²) (dimension mean, with the ½): the loss uses α =
            kl_weight / D on the exact summed KL (:meth:`alpha_for`).
        steps: gradient steps per :meth:`SEIKOTrainer.train` call (one round; official:
            5 epochs × 2 steps).
        chains_per_step: sampling chains per gradient step.
        lr: Adam learning rate (default 1e-4, SQDF's for full fine-tuning: a fair comparison).
        grad_clip: max global gradient norm (``None``: no clipping).
        truncation: ``"official"`` (per-step random detach of ε with keep probability
            (i+1)/(K+1)) or ``"last-k"`` (v0.1: states detached before the last k_bp steps).
        bp_min, bp_max: with ``"last-k"``, the number of final steps back-propagated through
            is drawn uniformly from {bp_min, …, bp_max} at every gradient step.
    """

    KL_CONVENTION: ClassVar[str] = "seiko"
    #: The sane range of each numeric setting (checked by ``check_fields``).
    LIMITS: ClassVar[dict[str, Range]] = {
        "kl_weight": Range(0, 1e6),
        "steps": Range(0, 1_000_000),
        "chains_per_step": Range(1, 100_000),
        "lr": Range(0, 1, low_open=True),
        "grad_clip": Range(0, 1e6, low_open=True),
        "bp_min": Range(1, 10_000),
        "bp_max": Range(1, 10_000),
    }

    kl_weight: float = 1.0
    steps: int = 10
    chains_per_step: int = 32
    lr: float = 1e-4
    grad_clip: float | None = 1.0
    truncation: str = "official"
    bp_min: int = 1
    bp_max: int = 5

    def __post_init__(self) -> None:
        check_fields(self, limits=False)
        problems = limit_problems(self) + _one_of("truncation", self.truncation, TRUNCATIONS)
        if not self.bp_min <= self.bp_max:
            problems.append(
                f"need bp_min <= bp_max, got bp_min={self.bp_min}, bp_max={self.bp_max}"
            )
        if problems:
            raise ConfigError("invalid SEIKOTrainConfig: " + "; ".join(problems))

    def resolve(self, prior: DiffusionPrior) -> SEIKOTrainConfig:
        """This config: nothing of SEIKO's depends on the prior (the α that ``kl_weight``
        means for ``prior`` is :meth:`alpha_for`)."""
        del prior
        return self
