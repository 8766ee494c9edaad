"""SQDF as an ask/tell optimizer: a diffusion prior fine-tuned round by round against a surrogate.

One round (run by the base at the start of ``ask`` once new values were told):

1. fit the surrogate on every successful observation (asked and external);
2. reward r̂(x) = (optimistic(x) − ȳ) / s_y (standardized with the observed mean and std, so
   that α means the same thing for any scale of values; ``standardize_reward=False`` uses the
   raw optimistic value as the official code does);
3. refill the replay buffer with the trajectories of all queried points and their observed
   (standardized) values, source ``"queried"``. External observations have no trajectory:
   they shape the surrogate only;
4. fine-tune the policy with SQDF (:class:`~sqdf_bbo.sqdf.SQDFTrainer`) for
   ``steps_per_round`` steps, KL-regularized to the **pretrained** prior;
5. ``_propose``: sample the batch from the fine-tuned policy, keeping each point's
   trajectory so that step 3 of the next round can replay it.

Before any value is told the policy is the pretrained prior (round 0 samples the prior).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from .buffer import SAMPLING_METHODS, ReplayBuffer
from .optimizer import Optimizer, Proposal
from .prior import DiffusionPrior
from .sqdf import SQDFConfig, SQDFTrainer, official_alpha_to_ours

__all__ = ["SQDF", "SQDFOptimizerConfig"]

_SURROGATES = ("ensemble", "ucb", "gp")


@dataclass(frozen=True)
class SQDFOptimizerConfig:
    """Settings of the :class:`SQDF` optimizer (defaults: the official BBO setup scaled down).

    Attributes:
        alpha_official: KL weight in the official code's convention (mean over dimensions, no
            ½); official BBO value 1.0. Converted with ``α = α_official · 2 / D`` (D = design
            dimensions; digits D = 64 → α = 1/32, rings D = 2 → α = 1).
        alpha: KL weight in our convention (exact Gaussian KL summed over dimensions); when set
            it overrides ``alpha_official``.
        gamma: discount γ of the soft-Q estimate γ^k r̂(f(x_prev)); official 0.9.
        eta: DDIM η of the fine-tuned sampler; official 1.0 (SQDF needs η > 0).
        num_inference_steps: K; ``None`` keeps the prior's (official 50).
        x0_method: estimator f: ``"auto"`` (consistency model when the prior has one, else
            Tweedie), ``"tweedie"``, ``"consistency"`` or ``"ddim"`` (ddim-m with ``ddim_m``).
        ddim_m: m for ``"ddim"``.
        steps_per_round: SQDF optimizer steps per round; official 40 (with batches of
            hundreds of images on a GPU), kept at 40 — our priors are small enough on a CPU.
        finetune_batch_size: transitions per SQDF step.
        lr: AdamW learning rate; ``None`` (default) picks 1e-4 for ``train="full"`` and 1e-3
            (the official value, which was tuned for LoRA adapters) for ``train="lora"``.
            Full fine-tuning at 1e-3 put ~100 nats of KL on the digits chain within 20
            steps, whatever α (see docs/sqdf.md).
        grad_clip: max gradient norm (``None``: no clipping).
        onpolicy_fraction: share of each step's transitions taken from fresh rollouts of the
            current policy; the rest comes from the replay buffer.
        rollouts_per_step: fresh policy trajectories per SQDF step (added to the buffer with
            their surrogate reward, source ``"rollout"``).
        buffer_capacity: trajectories the buffer keeps; official 1024.
        buffer_method: ``"reward+gamma"`` (official, prioritized: P ∝ w(reward)·γ^k, w a rank
            weight, see :mod:`sqdf_bbo.buffer`), ``"reward"``, ``"on-policy"`` or ``"random"``.
        clear_buffer_each_round: official BBO clears the buffer every round (queried
            trajectories of all rounds are re-added right after).
        train: ``"full"`` (all denoiser weights) or ``"lora"``.
        lora_rank: LoRA rank when ``train="lora"``.
        surrogate: ``"ensemble"`` (bootstrap heads, optimism = max over heads; official),
            ``"ucb"`` or ``"gp"``.
        surrogate_options: keyword overrides of the surrogate's config (JSON values), e.g.
            ``{"n_heads": 8}``.
        standardize_reward: fine-tune against (r̂ − ȳ)/s_y instead of raw r̂ (scale-free α).
        clip_designs: clamp asked designs to the prior's ``value_range`` (if any); the stored
            trajectory keeps the unclamped chain.
        progress: tqdm bars while fine-tuning.
    """

    alpha_official: float = 1.0
    alpha: float | None = None
    gamma: float = 0.9
    eta: float | None = 1.0
    num_inference_steps: int | None = None
    x0_method: str = "auto"
    ddim_m: int = 1
    steps_per_round: int = 40
    finetune_batch_size: int = 64
    lr: float | None = None
    grad_clip: float | None = 1.0
    onpolicy_fraction: float = 0.5
    rollouts_per_step: int = 8
    buffer_capacity: int = 1024
    buffer_method: str = "reward+gamma"
    clear_buffer_each_round: bool = True
    train: str = "full"
    lora_rank: int = 4
    surrogate: str = "ensemble"
    surrogate_options: Mapping[str, Any] = field(default_factory=dict)
    standardize_reward: bool = True
    clip_designs: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "surrogate_options", dict(self.surrogate_options))
        problems = []
        if not (math.isfinite(self.alpha_official) and self.alpha_official > 0):
            problems.append(f"alpha_official must be > 0, got {self.alpha_official}")
        if self.alpha is not None and not (math.isfinite(self.alpha) and self.alpha > 0):
            problems.append(f"alpha must be > 0 or None, got {self.alpha}")
        if self.x0_method not in ("auto", "tweedie", "consistency", "ddim", "ddim-m"):
            problems.append(
                f"x0_method {self.x0_method!r} is unknown; accepted values: auto, tweedie, "
                "consistency, ddim"
            )
        if self.steps_per_round < 0:
            problems.append(f"steps_per_round must be >= 0, got {self.steps_per_round}")
        if self.surrogate not in _SURROGATES:
            problems.append(
                f"surrogate {self.surrogate!r} is unknown; accepted values: {', '.join(_SURROGATES)}"
            )
        if self.buffer_method not in SAMPLING_METHODS:
            problems.append(
                f"buffer_method {self.buffer_method!r} is unknown; accepted values: "
                f"{', '.join(SAMPLING_METHODS)}"
            )
        if problems:
            raise ValueError("invalid SQDFOptimizerConfig: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able settings (``SQDFOptimizerConfig.from_dict`` rebuilds them)."""
        d = asdict(self)
        d["surrogate_options"] = dict(self.surrogate_options)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SQDFOptimizerConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(
                f"unknown SQDFOptimizerConfig fields {unknown}; accepted: {sorted(known)}"
            )
        return cls(**dict(d))

    def resolved_alpha(self, dim: int) -> float:
        """α in our convention for designs with ``dim`` dimensions."""
        return (
            self.alpha
            if self.alpha is not None
            else official_alpha_to_ours(self.alpha_official, dim)
        )

    def to_sqdf_config(self, prior: DiffusionPrior, seed: int) -> SQDFConfig:
        """The fine-tuner's settings for ``prior`` (x0 method and α resolved)."""
        x0 = self.x0_method
        if x0 == "auto":
            x0 = "consistency" if prior.consistency is not None else "tweedie"
        return SQDFConfig(
            alpha=self.resolved_alpha(prior.dim),
            gamma=self.gamma,
            x0_method=x0,
            ddim_m=self.ddim_m,
            steps=self.steps_per_round,
            batch_size=self.finetune_batch_size,
            lr=self.lr,
            grad_clip=self.grad_clip,
            onpolicy_fraction=self.onpolicy_fraction,
            rollouts_per_step=self.rollouts_per_step,
            buffer_capacity=self.buffer_capacity,
            buffer_method=self.buffer_method,
            kl_reference="pretrained",
            eta=self.eta,
            num_inference_steps=self.num_inference_steps,
            train=self.train,
            lora_rank=self.lora_rank,
            seed=seed,
        )


class SQDF(Optimizer):
    """Online black-box optimization with a diffusion prior fine-tuned by SQDF.

    Args:
        prior: the pretrained :class:`~sqdf_bbo.prior.DiffusionPrior` (not modified), e.g.
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

    def __init__(
        self,
        prior: DiffusionPrior,
        batch_size: int = 64,
        seed: int = 0,
        config: SQDFOptimizerConfig | None = None,
        study: str | Path | None = None,
    ) -> None:
        if not isinstance(prior, DiffusionPrior):
            raise TypeError(
                f"prior must be a DiffusionPrior (e.g. sqdf_bbo.load_prior('digits')), "
                f"got {type(prior).__name__}"
            )
        if config is None:
            config = SQDFOptimizerConfig()
        elif isinstance(config, Mapping):
            config = SQDFOptimizerConfig.from_dict(config)
        elif not isinstance(config, SQDFOptimizerConfig):
            raise TypeError(f"config must be a SQDFOptimizerConfig, got {type(config).__name__}")
        from .surrogates import make_surrogate

        self.prior = prior
        self.config = config
        self.sqdf_config = config.to_sqdf_config(prior, seed=int(seed) + 1)
        # 1. The buffer (owned here, read and filled by the trainer).
        self.buffer = ReplayBuffer(config.buffer_capacity, seed=int(seed) + 2)
        # 2. The fine-tuner: a trainable copy of the prior, KL to the frozen pretrained prior.
        self.trainer = SQDFTrainer(prior, self.sqdf_config, buffer=self.buffer)
        # 3. The surrogate.
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

    # ------------------------------------------------------------------ hooks
    def reward(self, x: torch.Tensor) -> torch.Tensor:
        """The reward SQDF fine-tunes against: (optimistic(x) − shift) / scale, ``(n,)``."""
        return (self.surrogate.optimistic(x) - self.reward_shift) / self.reward_scale

    def _fit(self, x: torch.Tensor, y: torch.Tensor) -> None:
        import time

        t0 = time.perf_counter()
        new_round = self.round + 1
        # 1. Surrogate on all successful observations (asked + external).
        self.surrogate.fit(x, y)
        if self.config.standardize_reward:
            self.reward_shift = float(y.mean())
            spread = float(y.std(unbiased=False)) if y.numel() > 1 else 0.0
            self.reward_scale = spread if spread > 1e-12 * max(1.0, abs(self.reward_shift)) else 1.0
        # 2. The buffer: queried trajectories with their observed values (external points
        #    have none and enter through the surrogate only).
        self.trainer.start_round(new_round)
        if self.config.clear_buffer_each_round:
            self.buffer.clear()
        queried = self._queried_trajectories()
        n_queried = 0
        if queried is not None:
            traj, yq, _ = queried
            K = self.trainer.num_inference_steps
            if traj.shape[1] == K + 1:
                traj, yq = traj[-self.buffer.capacity :], yq[-self.buffer.capacity :]
                r = (yq - self.reward_shift) / self.reward_scale
                self.buffer.add(traj, r, "queried", new_round)
                n_queried = int(traj.shape[0])
        # 3. SQDF fine-tuning against the surrogate's optimistic value.
        logs = self.trainer.train(
            self.reward, steps=self.config.steps_per_round, progress=self.config.progress
        )
        tail = logs[-max(1, len(logs) // 4) :] if logs else []

        def avg(key: str) -> float:
            vals = [m[key] for m in tail if math.isfinite(m[key])]
            return float(sum(vals) / len(vals)) if vals else math.nan

        self.round_log.append(
            {
                "round": float(new_round),
                "n_train": float(x.shape[0]),
                "n_queried_in_buffer": float(n_queried),
                "steps": float(len(logs)),
                "loss": avg("loss"),
                "reward": avg("reward"),
                "kl_step": avg("kl"),
                "time_s": time.perf_counter() - t0,
            }
        )

    def _propose(self, n: int) -> Proposal:
        net = self.trainer.policy.denoiser
        was_training = net.training
        net.eval()
        try:
            out = self.trainer.sample(n, self.generator, return_trajectory=True)
        finally:
            net.train(was_training)
        x = out.x
        if self.config.clip_designs and self.prior.value_range is not None:
            x = x.clamp(*self.prior.value_range)
        return Proposal(x, out.trajectory)

    def _metrics(self) -> dict[str, float]:
        """``kl_to_prior``: chain KL (nats) of the current sampler to the pretrained one,
        estimated on the trajectories of the latest round's asked points (or 32 fresh ones)."""
        from .metrics import chain_kl

        K = self.trainer.num_inference_steps
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
            traj = self.trainer.sample(32, gen, return_trajectory=True).trajectory
        est = chain_kl(self.trainer.policy.denoiser, self.trainer.reference, traj)
        out = {"kl_to_prior": est.kl, "kl_to_prior_stderr": est.stderr}
        if self.round_log:
            last = self.round_log[-1]
            out.update({f"last_{k}": v for k, v in last.items() if k != "round"})
        return out

    def finetuned_prior(self) -> DiffusionPrior:
        """A standalone copy of the current fine-tuned sampler."""
        return self.trainer.finetuned_prior()

    # ------------------------------------------------------------------ persistence
    def _spec(self) -> dict[str, Any]:
        return {"prior": self.prior, "config": self.config.to_dict()}

    @classmethod
    def _from_spec(cls, spec: dict[str, Any], *, batch_size: int, seed: int) -> SQDF:
        return cls(
            spec["prior"],
            batch_size=batch_size,
            seed=seed,
            config=SQDFOptimizerConfig.from_dict(spec["config"]),
        )

    def _extra_state(self) -> dict[str, Any]:
        return {
            "trainer": self.trainer.state_dict(include_buffer=True),
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
