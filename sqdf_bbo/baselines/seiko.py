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
   randomized truncation (:class:`~sqdf_bbo.baselines.seiko_trainer.SEIKOTrainer`);
5. ``_propose``: sample the batch from the fine-tuned policy.

Differences from SQDF kept on purpose: no replay buffer, no soft-Q/x0 estimator, gradients
through the chain, KL to the previous round. Same: surrogate family, reward scale, α, η, K.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from ..optimizer import Optimizer, Proposal
from ..prior import DiffusionPrior
from .seiko_trainer import SEIKOTrainConfig, SEIKOTrainer

__all__ = ["SEIKO", "SEIKOConfig"]

_SURROGATES = ("ucb", "ensemble", "gp")


@dataclass(frozen=True)
class SEIKOConfig:
    """Settings of :class:`SEIKO`.

    Attributes:
        surrogate: ``"ucb"`` (SEIKO-UCB), ``"ensemble"`` (SEIKO-Bootstrap) or ``"gp"``.
        surrogate_options: keyword overrides of the surrogate's config (JSON values).
        alpha_official: KL weight in the official (mean over dims, no ½) convention,
            converted with α = α_official · 2 / D as for SQDF.
        alpha: KL weight in our convention; overrides ``alpha_official`` when set.
        steps_per_round: gradient steps per round.
        finetune_batch_size: chains per gradient step.
        lr: Adam learning rate; 1e-4 for full fine-tuning, as SQDF's default (fair comparison).
        grad_clip: max gradient norm (``None``: no clipping).
        bp_min, bp_max: the number of final denoising steps differentiated through is drawn
            uniformly from {bp_min … bp_max} each step (randomized truncation).
        standardize_reward: fine-tune against (r̂ − ȳ)/s_y.
        clip_designs: clamp asked designs to the prior's ``value_range``.
        progress: tqdm bar while fine-tuning.
    """

    surrogate: str = "ucb"
    surrogate_options: Mapping[str, Any] = field(default_factory=dict)
    alpha_official: float = 1.0
    alpha: float | None = None
    steps_per_round: int = 40
    finetune_batch_size: int = 32
    lr: float = 1e-4
    grad_clip: float | None = 1.0
    bp_min: int = 1
    bp_max: int = 5
    standardize_reward: bool = True
    clip_designs: bool = True
    progress: bool = False

    def __post_init__(self) -> None:
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
        return self.alpha if self.alpha is not None else self.alpha_official * 2.0 / dim

    def train_config(self, dim: int) -> SEIKOTrainConfig:
        return SEIKOTrainConfig(
            alpha=self.resolved_alpha(dim),
            steps=self.steps_per_round,
            batch_size=self.finetune_batch_size,
            lr=self.lr,
            grad_clip=self.grad_clip,
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


class SEIKO(Optimizer):
    """SEIKO baseline (see the module docstring).

    Args:
        prior: the pretrained :class:`~sqdf_bbo.prior.DiffusionPrior` (not modified).
        batch_size: designs per ``ask()``.
        seed: seeds sampling, fine-tuning and the surrogate.
        config: :class:`SEIKOConfig`.
        study: folder to write the study through to.
    """

    method = "seiko"

    def __init__(
        self,
        prior: DiffusionPrior,
        batch_size: int = 64,
        seed: int = 0,
        config: SEIKOConfig | Mapping[str, Any] | None = None,
        study: str | Path | None = None,
    ) -> None:
        if not isinstance(prior, DiffusionPrior):
            raise TypeError(f"prior must be a DiffusionPrior, got {type(prior).__name__}")
        if config is None:
            config = SEIKOConfig()
        elif isinstance(config, Mapping):
            config = SEIKOConfig.from_dict(config)
        elif not isinstance(config, SEIKOConfig):
            raise TypeError(f"config must be a SEIKOConfig, got {type(config).__name__}")
        from ..surrogates import make_surrogate

        self.prior = prior
        self.config = config
        self.trainer = SEIKOTrainer(prior, config.train_config(prior.dim), seed=int(seed) + 1)
        self.surrogate = make_surrogate(
            config.surrogate, seed=int(seed) + 3, **dict(config.surrogate_options)
        )
        self.reward_shift = 0.0
        self.reward_scale = 1.0
        self.round_log: list[dict[str, float]] = []
        super().__init__(
            prior.shape,
            batch_size=batch_size,
            seed=seed,
            study=study,
            device=prior.device,
            dtype=prior.dtype,
        )

    def reward(self, x: torch.Tensor) -> torch.Tensor:
        """(optimistic(x) − shift) / scale, ``(n,)``, differentiable in x."""
        return (self.surrogate.optimistic(x) - self.reward_shift) / self.reward_scale

    def _fit(self, x: torch.Tensor, y: torch.Tensor) -> None:
        t0 = time.perf_counter()
        # 1.-2. Optimistic surrogate and the reward's scale.
        self.surrogate.fit(x, y)
        if self.config.standardize_reward:
            self.reward_shift = float(y.mean())
            spread = float(y.std(unbiased=False)) if y.numel() > 1 else 0.0
            self.reward_scale = spread if spread > 1e-12 * max(1.0, abs(self.reward_shift)) else 1.0
        # 3. KL reference = this round's starting model.
        self.trainer.start_round()
        # 4. Back-propagation through the chain.
        logs = self.trainer.train(self.reward, progress=self.config.progress)
        tail = logs[-max(1, len(logs) // 4) :] if logs else []

        def avg(key: str) -> float:
            vals = [m[key] for m in tail if math.isfinite(m[key])]
            return float(sum(vals) / len(vals)) if vals else math.nan

        self.round_log.append(
            {
                "round": float(self.round + 1),
                "n_train": float(x.shape[0]),
                "steps": float(len(logs)),
                "loss": avg("loss"),
                "reward": avg("reward"),
                "kl_to_previous": avg("kl"),
                "time_s": time.perf_counter() - t0,
            }
        )

    def _propose(self, n: int) -> Proposal:
        out = self.trainer.policy.sample(n, self.generator, return_trajectory=True)
        x = out.x
        if self.config.clip_designs and self.prior.value_range is not None:
            x = x.clamp(*self.prior.value_range)
        return Proposal(x, out.trajectory)

    def _metrics(self) -> dict[str, float]:
        """``kl_to_prior``: chain KL (nats) of the current sampler to the PRETRAINED prior,
        estimated on the latest round's asked trajectories (or 32 fresh ones)."""
        from ..metrics import chain_kl

        K = self.prior.num_inference_steps
        trajs = [
            p.traj
            for p in self._points.values()
            if p.source == "asked" and p.round == self.round and p.traj is not None
        ]
        trajs = [t for t in trajs if t.shape[0] == K + 1]
        if trajs:
            traj = torch.stack(trajs).to(self.device)
        else:
            gen = torch.Generator(device=self.device).manual_seed(
                self.seed + 7919 * (self.round + 1)
            )
            traj = self.trainer.policy.sample(32, gen, return_trajectory=True).trajectory
        est = chain_kl(self.trainer.policy.denoiser, self.prior, traj)
        out = {"kl_to_prior": est.kl, "kl_to_prior_stderr": est.stderr}
        if self.round_log:
            out.update({f"last_{k}": v for k, v in self.round_log[-1].items() if k != "round"})
        return out

    # ------------------------------------------------------------------ persistence
    def _spec(self) -> dict[str, Any]:
        return {"prior": self.prior, "config": self.config.to_dict()}

    @classmethod
    def _from_spec(cls, spec: dict[str, Any], *, batch_size: int, seed: int) -> SEIKO:
        return cls(
            spec["prior"],
            batch_size=batch_size,
            seed=seed,
            config=SEIKOConfig.from_dict(spec["config"]),
        )

    def _extra_state(self) -> dict[str, Any]:
        return {
            "trainer": self.trainer.state_dict(),
            "surrogate": self.surrogate.state_dict(),
            "reward_shift": self.reward_shift,
            "reward_scale": self.reward_scale,
            "round_log": self.round_log,
        }

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self.trainer.load_state_dict(dict(state["trainer"]))
        self.surrogate.load_state_dict(dict(state["surrogate"]))
        self.surrogate.to(self.device)
        self.reward_shift = float(state["reward_shift"])
        self.reward_scale = float(state["reward_scale"])
        self.round_log = [dict(r) for r in state["round_log"]]
