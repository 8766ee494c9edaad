"""SQDF: Soft Q-based Diffusion Finetuning (Kang et al., arXiv 2512.04559), in the conventions of DESIGN.md §1.

Notation (paper symbol → name here):

    p'  / p_θ        reference / policy       frozen pretrained prior / the fine-tuned copy
    μ_θ, μ_ref       step means                ``DiffusionPrior.step_mean`` of policy / KL reference
    σ_t              sigma                     DDIM noise scale of transition i (η-scaled)
    i, k = K−1−i     step, steps to go         transition i maps trajectory state i to state i+1
    α                config.alpha              KL weight (our KL: exact Gaussian KL, summed over dims)
    γ                config.gamma              discount of the soft-Q estimate
    f                x0 estimator              ``tweedie`` / ``consistency`` / ``ddim`` (ddim-m) of p'
    r̂                reward_fn                 differentiable reward (a surrogate's optimistic value)

Loss of one transition (x_t taken from a stored trajectory, detached; fresh z):

    x_prev = μ_θ(x_t) + σ_t z,                    z ~ N(0, I)
    Q̂      = γ^k · r̂( f(x_prev) )                 f = identity when i = K−1 (x_prev is x_0)
    KL_t   = ‖μ_θ(x_t) − μ_ref(x_t)‖² / (2 σ̃_t²)   σ̃_t² = max(σ_t², σ²_min)
    L      = −( Q̂ − α · KL_t ),  averaged over the batch

Gradients reach only the trained parameters (the whole policy network, or its
LoRA adapters): the reference, the estimator and the reward model are frozen
and the loss is differentiated with ``torch.autograd.grad`` with respect to
the trained parameters only, so no ``.grad`` ever appears on anything else.

σ = 0 steps. With ``set_alpha_to_one`` the last DDIM transition has σ_t = 0
(x_prev = μ_θ exactly), where the KL between two Dirac steps is undefined. We
floor the KL variance at σ²_min, the smallest *positive* σ_t² of the schedule:
the KL term stays finite and the last step may move its mean by at most about
σ²_min · ∇r̂ / α (σ²_min ≈ 1e-4 for a 10-step linear schedule), a negligible
addition to the tilt that every earlier step makes.

α conventions. The official code (Shin-woocheol/SQDF) averages its KL over
the D design dimensions and drops the ½, so α_official = α · D / 2; convert with
:func:`official_alpha_to_ours` / :func:`ours_alpha_to_official`.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from sqdf_bbo.config import check_fields
from sqdf_bbo.diffusion.prior import X0_METHODS, DiffusionPrior, SampleOutput
from sqdf_bbo.distributed import (
    all_gather_cat,
    all_reduce_mean_,
    broadcast_,
    shard_generator_seed,
    shard_slice,
    world,
)
from sqdf_bbo.finetuning.buffer import PRIORITIES, SAMPLING_METHODS, ReplayBuffer

__all__ = [
    "SQDFConfig",
    "SQDFTrainer",
    "finetune",
    "official_alpha_to_ours",
    "ours_alpha_to_official",
    "gaussian_step_kl",
    "RewardFn",
]

RewardFn = Callable[[torch.Tensor], torch.Tensor]
KL_REFERENCES: tuple[str, ...] = ("pretrained", "previous")
TRAIN_MODES: tuple[str, ...] = ("full", "lora")


def official_alpha_to_ours(alpha_official: float, dim: int) -> float:
    """α in our convention from the official code's α.

    The official SQDF code weights ``mean_d((μ_θ−μ_ref)²/σ²)`` (dimension mean, no ½)
    where we weight the exact KL ``Σ_d (μ_θ−μ_ref)²/(2σ²)``, so
    ``α = α_official · 2 / D`` for D = prod(design shape) dimensions.
    """
    if int(dim) < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    return float(alpha_official) * 2.0 / int(dim)


def ours_alpha_to_official(alpha: float, dim: int) -> float:
    """Inverse of :func:`official_alpha_to_ours`: ``α_official = α · D / 2``."""
    if int(dim) < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    return float(alpha) * int(dim) / 2.0


def gaussian_step_kl(mean: torch.Tensor, ref_mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """KL( N(mean, var·I) ‖ N(ref_mean, var·I) ) = ‖mean − ref_mean‖² / (2 var), summed over dims.

    Args:
        mean, ref_mean: shape ``(n, *shape)``.
        var: per-sample variance, shape ``(n, 1, …, 1)`` or ``(n,)``; must be > 0.

    Returns:
        Shape ``(n,)``.
    """
    sq = (mean - ref_mean).pow(2).flatten(1).sum(1)
    return sq / (2.0 * var.reshape(var.shape[0], -1)[:, 0])


@dataclass(frozen=True)
class SQDFConfig:
    """Settings of one SQDF fine-tuning run.

    Attributes:
        alpha: KL weight α (> 0) on the exact summed Gaussian KL (official α = α·D/2,
            see :func:`official_alpha_to_ours`). Larger α stays closer to the prior.
        gamma: discount γ ∈ (0, 1] of the soft-Q estimate γ^k r̂(f(x_prev)).
        x0_method: x0 estimator f of the frozen prior: ``tweedie``, ``consistency``
            (needs ``prior.consistency``) or ``ddim`` (``ddim-m`` with ``ddim_m``
            deterministic steps; the alias ``"ddim-m"`` is accepted).
        ddim_m: m for ``ddim``.
        steps: optimizer steps per :meth:`SQDFTrainer.train` call.
        batch_size: transitions per optimizer step.
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
        kl_reference: ``pretrained`` (SQDF) or ``previous`` (SEIKO: the policy
            snapshotted at :meth:`SQDFTrainer.start_round`).
        eta: DDIM η of the fine-tuned sampler (> 0); ``None`` keeps the prior's.
        num_inference_steps: K; ``None`` keeps the prior's.
        train: ``full`` (every weight of the denoiser) or ``lora`` (peft adapters).
        lora_rank, lora_alpha, lora_targets: LoRA rank, scale numerator (default
            rank) and peft target module names (default every Linear/Conv2d).
        seed: seed of the trainer's generators (noise, rollouts, on-policy picks)
            and of its own buffer.
    """

    alpha: float = 1.0
    gamma: float = 0.9
    x0_method: str = "tweedie"
    ddim_m: int = 1
    steps: int = 40
    batch_size: int = 64
    lr: float | None = None
    grad_clip: float | None = 1.0
    weight_decay: float = 0.0
    onpolicy_fraction: float = 0.0
    rollouts_per_step: int = 8
    buffer_capacity: int = 1024
    buffer_method: str = "reward+gamma"
    buffer_priority: str = "shift"
    kl_reference: str = "pretrained"
    eta: float | None = None
    num_inference_steps: int | None = None
    train: str = "full"
    lora_rank: int = 4
    lora_alpha: float | None = None
    lora_targets: tuple[str, ...] | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        check_fields(self)
        if self.x0_method == "ddim-m":
            object.__setattr__(self, "x0_method", "ddim")
        if self.lr is None:
            object.__setattr__(self, "lr", 1e-3 if self.train == "lora" else 1e-4)
        if self.lora_targets is not None:
            object.__setattr__(self, "lora_targets", tuple(str(s) for s in self.lora_targets))
        problems: list[str] = []
        if not (math.isfinite(self.alpha) and self.alpha > 0):
            problems.append(f"alpha must be a finite number > 0, got {self.alpha}")
        if not 0.0 < self.gamma <= 1.0:
            problems.append(f"gamma must lie in (0, 1], got {self.gamma}")
        if self.x0_method not in X0_METHODS:
            problems.append(
                f"x0_method {self.x0_method!r} is unknown; accepted values: "
                f"{', '.join(X0_METHODS)} (or 'ddim-m')"
            )
        if self.ddim_m < 1:
            problems.append(f"ddim_m must be >= 1, got {self.ddim_m}")
        if self.steps < 0:
            problems.append(f"steps must be >= 0, got {self.steps}")
        if self.batch_size < 1:
            problems.append(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:  # type: ignore[operator]
            problems.append(f"lr must be > 0, got {self.lr}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            problems.append(f"grad_clip must be > 0 or None, got {self.grad_clip}")
        if self.weight_decay < 0:
            problems.append(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not 0.0 <= self.onpolicy_fraction <= 1.0:
            problems.append(f"onpolicy_fraction must lie in [0, 1], got {self.onpolicy_fraction}")
        if self.rollouts_per_step < 0:
            problems.append(f"rollouts_per_step must be >= 0, got {self.rollouts_per_step}")
        if self.onpolicy_fraction > 0 and self.rollouts_per_step == 0:
            problems.append("onpolicy_fraction > 0 needs rollouts_per_step >= 1")
        if self.buffer_capacity < 1:
            problems.append(f"buffer_capacity must be >= 1, got {self.buffer_capacity}")
        if self.buffer_method not in SAMPLING_METHODS:
            problems.append(
                f"buffer_method {self.buffer_method!r} is unknown; accepted values: "
                f"{', '.join(SAMPLING_METHODS)}"
            )
        if self.buffer_priority not in PRIORITIES:
            problems.append(
                f"buffer_priority {self.buffer_priority!r} is unknown; accepted values: "
                f"{', '.join(PRIORITIES)}"
            )
        if self.kl_reference not in KL_REFERENCES:
            problems.append(
                f"kl_reference {self.kl_reference!r} is unknown; accepted values: "
                f"{', '.join(KL_REFERENCES)}"
            )
        if self.eta is not None and not 0.0 < self.eta <= 1.0:
            problems.append(
                f"eta must lie in (0, 1] (SQDF needs a stochastic sampler), got {self.eta}"
            )
        if self.num_inference_steps is not None and self.num_inference_steps < 1:
            problems.append(f"num_inference_steps must be >= 1, got {self.num_inference_steps}")
        if self.train not in TRAIN_MODES:
            problems.append(
                f"train {self.train!r} is unknown; accepted values: {', '.join(TRAIN_MODES)}"
            )
        if self.lora_rank < 1:
            problems.append(f"lora_rank must be >= 1, got {self.lora_rank}")
        if problems:
            raise ValueError("invalid SQDFConfig: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of the settings (``SQDFConfig(**d)`` rebuilds it)."""
        d = asdict(self)
        if d["lora_targets"] is not None:
            d["lora_targets"] = list(d["lora_targets"])
        return d


def _frozen_copy(prior: DiffusionPrior) -> DiffusionPrior:
    """A deep copy of ``prior`` (denoiser and consistency model) with every parameter frozen."""
    ref = prior.clone()
    if prior.consistency is not None:
        ref.consistency = copy.deepcopy(prior.consistency)
        ref.consistency.requires_grad_(False).eval()
    ref.denoiser.requires_grad_(False).eval()
    return ref


def _tensor_state(
    module: nn.Module, only_trainable_names: set[str] | None
) -> dict[str, torch.Tensor]:
    state = module.state_dict()
    if only_trainable_names is not None:
        state = {k: v for k, v in state.items() if k in only_trainable_names}
    return {k: v.detach().cpu().clone().contiguous() for k, v in state.items()}


class SQDFTrainer:
    """Fine-tunes a copy of a diffusion prior with SQDF against a differentiable reward.

    Args:
        prior: the pretrained prior (not modified). Its device is used throughout.
        config: the run's settings.
        buffer: a replay buffer to read and fill (e.g. one the ask/tell optimizer
            owns, holding queried trajectories); default a new
            ``ReplayBuffer(config.buffer_capacity, seed=config.seed + 1)``.

    Attributes:
        reference: frozen copy of the pretrained prior (x0 estimator; KL reference
            when ``kl_reference="pretrained"``).
        policy: the prior being fine-tuned (``DiffusionPrior`` sharing the
            trainer's network; sample it with :meth:`sample`).
        buffer: the replay buffer.
        round: the current round (tag of rollouts added to the buffer).
        num_updates: optimizer steps taken so far.
    """

    def __init__(
        self,
        prior: DiffusionPrior,
        config: SQDFConfig | None = None,
        buffer: ReplayBuffer | None = None,
    ) -> None:
        if not isinstance(prior, DiffusionPrior):
            raise TypeError(f"prior must be a DiffusionPrior, got {type(prior).__name__}")
        self.config = config = config if config is not None else SQDFConfig()
        if config.eta is not None or config.num_inference_steps is not None:
            prior = prior.with_settings(
                eta=config.eta, num_inference_steps=config.num_inference_steps
            )
        if not bool((prior.sigmas > 0).any()):
            raise ValueError(
                f"the sampler of prior {prior.name!r} is deterministic (eta={prior.eta}); "
                "SQDF needs eta > 0 — set SQDFConfig(eta=1.0)"
            )
        if config.x0_method == "consistency" and prior.consistency is None:
            raise ValueError(
                f"x0_method='consistency' but prior {prior.name!r} has no consistency model; "
                "distill one with sqdf_bbo.distill_consistency(prior) or use 'tweedie' or 'ddim'"
            )
        # 1. Frozen reference (estimator f and, by default, the KL reference).
        self.reference = _frozen_copy(prior)
        # 2. The policy: a trainable copy (all weights, or LoRA adapters on frozen base weights).
        #    The network stays in eval mode: the policy is a fixed Gaussian per step
        #    (no dropout noise in μ_θ); gradients flow all the same.
        if config.train == "lora":
            from sqdf_bbo.finetuning.lora import add_lora

            self.policy = copy.copy(prior)
            self.policy.denoiser = add_lora(
                prior.denoiser, config.lora_rank, config.lora_alpha, config.lora_targets
            )
        else:
            self.policy = prior.clone()
            self.policy.denoiser.requires_grad_(True)
        self.policy.denoiser.eval()
        self._params: list[nn.Parameter] = [
            p for p in self.policy.denoiser.parameters() if p.requires_grad
        ]
        self._param_names: list[str] = [
            n for n, p in self.policy.denoiser.named_parameters() if p.requires_grad
        ]
        if not self._params:
            raise ValueError("the policy has no trainable parameter")
        self._kl_ref: DiffusionPrior = self.reference
        self.optimizer = torch.optim.AdamW(
            self._params, lr=config.lr, weight_decay=config.weight_decay
        )
        self.buffer = (
            buffer
            if buffer is not None
            else ReplayBuffer(config.buffer_capacity, seed=config.seed + 1)
        )
        device = prior.device
        self.device = device
        self.generator = torch.Generator(device=device).manual_seed(config.seed)
        self.index_generator = torch.Generator().manual_seed(config.seed + 2)
        self.round = 0
        self.num_updates = 0
        self._dp_world: tuple[int, int] | None = None  # process group rank 0's weights came from
        # 3. Variance floor for the KL on σ = 0 steps: the smallest positive σ² of the schedule.
        var = prior.sigmas.double() ** 2
        self.kl_var_floor = float(var[var > 0].min())

    # ------------------------------------------------------------------ properties
    @property
    def num_inference_steps(self) -> int:
        return self.policy.num_inference_steps

    @property
    def kl_reference(self) -> DiffusionPrior:
        """The prior the KL is measured against (pretrained, or the previous round's policy)."""
        return self._kl_ref

    @property
    def trainable_parameters(self) -> dict[str, nn.Parameter]:
        """The parameters SQDF updates, by name in the policy network."""
        return dict(zip(self._param_names, self._params))

    # ------------------------------------------------------------------ rounds
    def start_round(self, round: int | None = None) -> None:
        """Begin a new round (``round`` or the next one).

        With ``kl_reference="previous"`` the current policy is snapshotted
        (frozen) as the KL reference of this round, as in SEIKO.
        """
        self.round = self.round + 1 if round is None else int(round)
        if self.config.kl_reference == "previous":
            snap = self.policy.clone()
            snap.denoiser.requires_grad_(False).eval()
            self._kl_ref = snap

    # ------------------------------------------------------------------ sampling
    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        return_trajectory: bool = False,
    ) -> SampleOutput:
        """n designs from the current policy (no gradients); see :meth:`DiffusionPrior.sample`."""
        return self.policy.sample(n, generator, return_trajectory=return_trajectory)

    def finetuned_prior(self) -> DiffusionPrior:
        """A standalone copy of the fine-tuned prior (LoRA adapters merged into plain layers)."""
        out = self.policy.clone()
        if self.config.train == "lora":
            from sqdf_bbo.finetuning.lora import merge_lora

            out.denoiser = merge_lora(self.policy.denoiser)
        out.denoiser.eval()
        return out

    # ------------------------------------------------------------------ the loss
    def _reward(self, reward_fn: RewardFn, x: torch.Tensor) -> torch.Tensor:
        r = reward_fn(x)
        if not isinstance(r, torch.Tensor):
            raise TypeError(f"reward_fn must return a torch.Tensor, got {type(r).__name__}")
        if r.numel() != x.shape[0]:
            raise ValueError(
                f"reward_fn must map designs of shape {tuple(x.shape)} to rewards of shape "
                f"({x.shape[0]},), got {tuple(r.shape)}"
            )
        return r.reshape(-1).to(x.dtype)

    def loss(
        self,
        reward_fn: RewardFn,
        x_t: torch.Tensor,
        step: torch.Tensor,
        noise: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The SQDF loss on a batch of transitions.

        Args:
            reward_fn: ``r̂(x0 (b, *shape)) -> (b,)``, differentiable in x0.
            x_t: states, shape ``(b, *shape)`` (treated as constants).
            step: transition index i of each state, shape ``(b,)`` long.
            noise: z of shape ``(b, *shape)``; default fresh from the trainer's generator.

        Returns:
            ``(loss, parts)``: the scalar loss and per-transition tensors ``reward``
            r̂(f(x_prev)), ``q`` γ^k r̂, ``kl`` KL_t (each ``(b,)``, detached).
        """
        cfg, K = self.config, self.num_inference_steps
        x_t = self.policy.check_designs(x_t, "x_t").detach()
        i = torch.as_tensor(step, dtype=torch.long).reshape(-1).cpu()
        if i.numel() != x_t.shape[0]:
            raise ValueError(f"step must have shape ({x_t.shape[0]},), got {tuple(i.shape)}")
        # 1. μ_θ(x_t) (trained network) and μ_ref(x_t) (frozen, no graph).
        out = self.policy.step_mean(x_t, i)
        with torch.no_grad():
            ref_mean = self._kl_ref.step_mean(x_t, i).mean
        # 2. x_prev = μ_θ + σ_t z with fresh z.
        if noise is None:
            noise = torch.randn(
                x_t.shape, generator=self.generator, device=x_t.device, dtype=x_t.dtype
            )
        x_prev = out.mean + out.sigma * noise
        # 3. Q̂ = γ^k r̂(f(x_prev)), f the frozen estimator at state i+1 (identity at state K).
        x0_hat = self.reference.x0_estimate(x_prev, i + 1, cfg.x0_method, cfg.ddim_m)
        reward = self._reward(reward_fn, x0_hat)
        k = (K - 1 - i).to(device=x_t.device, dtype=x_t.dtype)
        q = cfg.gamma**k * reward
        # 4. Exact Gaussian KL with the variance floored on σ = 0 steps.
        var = (out.sigma**2).clamp(min=self.kl_var_floor)
        kl = gaussian_step_kl(out.mean, ref_mean, var)
        loss = -(q - cfg.alpha * kl).mean()
        parts = {"reward": reward.detach(), "q": q.detach(), "kl": kl.detach()}
        return loss, parts

    # ------------------------------------------------------------------ training
    def _rollouts(self, reward_fn: RewardFn, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """n fresh policy trajectories ``(n, K+1, *shape)`` and their rewards ``(n,)``."""
        out = self.policy.sample(n, self.generator, return_trajectory=True)
        with torch.no_grad():
            r = self._reward(reward_fn, out.x)
        assert out.trajectory is not None
        return out.trajectory, r

    def _draw_batch(self, fresh: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        cfg, K = self.config, self.num_inference_steps
        b = cfg.batch_size
        n_on = round(cfg.onpolicy_fraction * b) if fresh is not None else 0
        xs, steps = [], []
        if n_on > 0:
            assert fresh is not None
            j = torch.randint(fresh.shape[0], (n_on,), generator=self.index_generator)
            i = torch.randint(K, (n_on,), generator=self.index_generator)
            xs.append(fresh[j.to(fresh.device), i.to(fresh.device)])
            steps.append(i)
        if b - n_on > 0:
            if len(self.buffer) == 0:
                raise ValueError(
                    "the replay buffer is empty and this step has no on-policy part "
                    "(set rollouts_per_step >= 1 or add trajectories to the buffer)"
                )
            if self.buffer.num_steps != K:
                raise ValueError(
                    f"the buffer holds {self.buffer.num_steps}-step trajectories but the policy "
                    f"samples with K={K} steps"
                )
            tb = self.buffer.sample(b - n_on, cfg.buffer_method, cfg.gamma, cfg.buffer_priority)
            xs.append(tb.x_t.to(self.device))
            steps.append(tb.step.cpu())
        return torch.cat(xs), torch.cat(steps)

    def train_step(self, reward_fn: RewardFn) -> dict[str, float]:
        """One optimizer step (rollouts, batch, loss, update); returns its metrics.

        Under a ``torch.distributed`` process group of W > 1 processes the step is
        data-parallel (:mod:`sqdf_bbo.distributed`): each process samples
        ``rollouts_per_step / W`` rollouts with its own noise stream, every buffer receives
        all of them, every process draws the same batch of ``batch_size`` transitions and
        keeps its ``batch_size / W`` share, and :meth:`update` averages the gradients.
        Without a process group (or with W = 1) nothing of this runs.
        """
        cfg = self.config
        t0 = time.perf_counter()
        rank, size = world()
        mine = shard_slice(cfg.batch_size, rank, size)
        if size > 1:  # this process's own noise for this update (rank 0 keeps its stream)
            shard_slice(cfg.rollouts_per_step, rank, size, "rollouts_per_step")
            if rank > 0:
                self.generator.manual_seed(shard_generator_seed(cfg.seed, rank, self.num_updates))
        # 1. Fresh on-policy rollouts (this process's share, gathered from every process),
        #    stored with their surrogate rewards.
        fresh, rollout_reward = None, float("nan")
        if cfg.rollouts_per_step > 0:
            fresh, r = self._rollouts(reward_fn, cfg.rollouts_per_step // size)
            fresh, r = all_gather_cat(fresh), all_gather_cat(r)
            self.buffer.add(fresh, r, "rollout", self.round)
            rollout_reward = float(r.double().mean())
        # 2. The batch: on-policy part from the fresh rollouts, the rest from the buffer
        #    (the same batch on every process), and this process's share of it.
        x_t, step = self._draw_batch(fresh)
        # 3. Loss, gradients (averaged over the processes), clipping and the optimizer step.
        metrics = self.update(reward_fn, x_t[mine], step[mine])
        return {
            "update": float(self.num_updates),
            "round": float(self.round),
            **metrics,
            "rollout_reward": rollout_reward,
            "time_s": time.perf_counter() - t0,
        }

    def update(
        self,
        reward_fn: RewardFn,
        x_t: torch.Tensor,
        step: torch.Tensor,
        noise: torch.Tensor | None = None,
    ) -> dict[str, float]:
        """One optimizer step on given transitions: loss, gradients, clipping, AdamW.

        Under a process group of W > 1 processes every process passes its own share of
        the batch, all shares of the same size b: the gradients (and the reported means)
        are averaged over the processes before clipping, so the step is the one of the
        mean loss over the W·b transitions, taken identically on every process. The
        first such update copies rank 0's trained parameters to every process.

        Args:
            reward_fn: ``r̂(x0 (b, *shape)) -> (b,)``, differentiable in x0.
            x_t: states, shape ``(b, *shape)``.
            step: transition index of each state, shape ``(b,)`` long.
            noise: z of shape ``(b, *shape)``; default fresh from the trainer's generator.

        Returns:
            ``loss``, ``reward``, ``q``, ``kl`` (means over the batch, every process's share
            included) and ``grad_norm`` (of the averaged gradient, before clipping).
        """
        cfg = self.config
        if world()[1] > 1 and self._dp_world != world():
            broadcast_(self._params, src=0)
            self._dp_world = world()
        # 1. Loss on these transitions and its gradients w.r.t. the trained parameters only.
        loss, parts = self.loss(reward_fn, x_t, step, noise)
        grads = torch.autograd.grad(loss, self._params, allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g for p, g in zip(self._params, grads)]
        # 2. Batch means (float64), averaged over the processes together with the gradients.
        means = [parts[k].double().mean() for k in ("reward", "q", "kl")]
        stats = torch.stack([loss.detach().double(), *means])
        all_reduce_mean_([*grads, stats])
        if not torch.isfinite(stats[0]):
            raise FloatingPointError(
                f"SQDF loss is {float(stats[0])} at update {self.num_updates}; "
                "check the reward function's outputs or lower lr"
            )
        # 3. Clipping of the (averaged) gradient, then the AdamW step.
        for p, g in zip(self._params, grads):
            p.grad = g
        max_norm = cfg.grad_clip if cfg.grad_clip is not None else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self._params, max_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.num_updates += 1
        loss_v, reward_v, q_v, kl_v = (float(v) for v in stats)
        return {
            "loss": loss_v,
            "reward": reward_v,
            "q": q_v,
            "kl": kl_v,
            "grad_norm": float(grad_norm),
        }

    def train(
        self,
        reward_fn: RewardFn,
        steps: int | None = None,
        callback: Callable[[dict[str, float]], Any] | None = None,
        progress: bool = True,
    ) -> list[dict[str, float]]:
        """Run ``steps`` (default ``config.steps``) SQDF optimizer steps.

        Args:
            reward_fn: ``r̂(x0 (n, *shape)) -> (n,)``, differentiable in x0
                (e.g. a surrogate's ``optimistic``).
            steps: number of optimizer steps.
            callback: called with each step's metrics (keys ``loss``, ``reward``,
                ``kl``, ``grad_norm``, ``q``, ``rollout_reward``, ``update``,
                ``round``, ``time_s``); returning ``True`` stops training early.
            progress: show a tqdm progress bar.

        Returns:
            The list of per-step metrics.
        """
        if not callable(reward_fn):
            raise TypeError(f"reward_fn must be callable, got {type(reward_fn).__name__}")
        n = self.config.steps if steps is None else int(steps)
        if n < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        from sqdf_bbo.progress import progress_bar

        history: list[dict[str, float]] = []
        bar = progress_bar(range(n), progress=progress and n > 0, desc="SQDF", leave=False)
        for _ in bar:
            metrics = self.train_step(reward_fn)
            history.append(metrics)
            bar.set_postfix(
                loss=f"{metrics['loss']:.3g}",
                reward=f"{metrics['reward']:.3g}",
                kl=f"{metrics['kl']:.3g}",
            )
            if callback is not None and callback(metrics) is True:
                break
        bar.close()
        return history

    # ------------------------------------------------------------------ persistence
    def state_dict(self, include_buffer: bool = True) -> dict[str, torch.Tensor]:
        """The trainer's state as CPU tensors only (safetensors-able).

        Keys: ``policy/<name>`` (the whole network for ``full``, adapter weights
        for ``lora``), ``kl_reference/<name>`` (``previous`` snapshot, if any),
        ``optim/<param index>/<key>``, ``generator``, ``index_generator``,
        ``round``, ``num_updates`` and, with ``include_buffer``, ``buffer/<key>``.
        """
        only = set(self._param_names) if self.config.train == "lora" else None
        d: dict[str, torch.Tensor] = {}
        for k, v in _tensor_state(self.policy.denoiser, only).items():
            d[f"policy/{k}"] = v
        if self._kl_ref is not self.reference:
            for k, v in _tensor_state(self._kl_ref.denoiser, only).items():
                d[f"kl_reference/{k}"] = v
        for idx, st in self.optimizer.state_dict()["state"].items():
            for key, val in st.items():
                d[f"optim/{idx}/{key}"] = torch.as_tensor(val).detach().cpu().clone()
        d["generator"] = self.generator.get_state().clone()
        d["index_generator"] = self.index_generator.get_state().clone()
        d["round"] = torch.tensor(self.round, dtype=torch.long)
        d["num_updates"] = torch.tensor(self.num_updates, dtype=torch.long)
        if include_buffer:
            for k, v in self.buffer.state_dict().items():
                d[f"buffer/{k}"] = v
        return d

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore a state written by :meth:`state_dict` (on a trainer built with the same prior and config)."""
        strict = self.config.train == "full"

        def sub(prefix: str) -> dict[str, torch.Tensor]:
            return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}

        def load_net(net: nn.Module, weights: dict[str, torch.Tensor], what: str) -> None:
            res = net.load_state_dict(weights, strict=strict)
            missing = [k for k in res.missing_keys if k in set(self._param_names)]
            if res.unexpected_keys or missing:
                raise KeyError(
                    f"{what} weights do not match this trainer (train={self.config.train!r}): "
                    f"unexpected {res.unexpected_keys[:5]}, missing {missing[:5]}"
                )

        pol = sub("policy/")
        if not pol:
            raise KeyError("trainer state has no 'policy/...' entries")
        load_net(self.policy.denoiser, pol, "policy")
        ref = sub("kl_reference/")
        if ref:
            snap = self.policy.clone()
            load_net(snap.denoiser, ref, "kl_reference")
            snap.denoiser.requires_grad_(False).eval()
            self._kl_ref = snap
        else:
            self._kl_ref = self.reference
        opt: dict[int, dict[str, torch.Tensor]] = {}
        for k, v in sub("optim/").items():
            idx, _, key = k.partition("/")
            opt.setdefault(int(idx), {})[key] = v
        osd = self.optimizer.state_dict()
        osd["state"] = opt
        self.optimizer.load_state_dict(osd)
        try:
            self.generator.set_state(state["generator"].to(torch.uint8))
        except (RuntimeError, KeyError):  # a state saved on another device kind
            self.generator.manual_seed(self.config.seed + int(state.get("num_updates", 0)))
        if "index_generator" in state:
            self.index_generator.set_state(state["index_generator"].to(torch.uint8))
        self.round = int(state.get("round", torch.tensor(0)))
        self.num_updates = int(state.get("num_updates", torch.tensor(0)))
        buf = sub("buffer/")
        if buf:
            self.buffer.load_state_dict(buf, device=self.device)


def finetune(
    prior: DiffusionPrior,
    reward_fn: RewardFn,
    config: SQDFConfig | None = None,
    callback: Callable[[dict[str, float]], Any] | None = None,
    progress: bool = True,
) -> DiffusionPrior:
    """Offline SQDF: fine-tune ``prior`` against ``reward_fn`` for ``config.steps`` steps.

    Args:
        prior: the pretrained prior (not modified).
        reward_fn: ``r(x0 (n, *shape)) -> (n,)``, differentiable in x0.
        config: settings (default :class:`SQDFConfig()`).
        callback, progress: see :meth:`SQDFTrainer.train`.

    Returns:
        The fine-tuned prior (a new object; LoRA adapters merged), sampling with
        the config's η and K.
    """
    trainer = SQDFTrainer(prior, config)
    trainer.train(reward_fn, callback=callback, progress=progress)
    return trainer.finetuned_prior()
