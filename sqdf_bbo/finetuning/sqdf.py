"""SQDF: Soft Q-based Diffusion Finetuning (Kang et al., arXiv 2512.04559), in the conventions of docs/design.md §1.

Length: one class, the trainer, whose loss, data-parallel training step and checkpoint
share its private state; its settings are in :mod:`~sqdf_bbo.finetuning.configs` and the KL
conventions in :mod:`~sqdf_bbo.finetuning.kl`.

Notation (paper symbol → name here):

    p'  / p_θ        reference / policy       frozen pretrained prior / the fine-tuned copy
    μ_θ, μ_ref       step means                ``DiffusionPrior.step_mean`` of policy / KL reference
    σ_t              sigma                     DDIM noise scale of transition i (η-scaled)
    i, k = K−1−i     step, steps to go         transition i maps trajectory state i to state i+1
    α                self.alpha                KL weight (our KL: exact Gaussian KL, summed over dims)
    γ                config.gamma              discount of the soft-Q estimate
    f                x0 estimator              ``tweedie`` / ``consistency`` / ``ddim`` (ddim-m) of p'
    r̂                reward_fn                 differentiable reward (a surrogate's optimistic value)
    c                cond                      a conditional prior's network condition (label,
                                               prompt embedding); r̂(x0, c) then
    h                constraint_fn             optional constraint term (α-weighted log-feasibility)

Loss of one transition (x_t taken from a stored trajectory, detached; fresh z):

    x_prev = μ_θ(x_t) + σ_t z,                    z ~ N(0, I)
    Q̂      = γ^k · r̂( f(x_prev) ) + h( f(x_prev) )  f = identity when i = K−1 (x_prev is x_0);
                                                  h undiscounted unless discount_constraints
    KL_t   = ‖μ_θ(x_t) − μ_ref(x_t)‖² / (2 σ̃_t²)   σ̃_t² = max(σ_t², σ²_min)
    L      = −( Q̂ − α · KL_t ),  averaged over the batch

Conditional priors: every stored trajectory keeps the condition c it was sampled under; the
step means of both the policy and the reference, the estimator f and the reward all take
that c, so the KL is to the *conditional* (and guided, when the prior guides) reference
p'(·|x_t, c). On-policy rollouts draw their conditions uniformly from the condition pool:
the conditions of the round's queried chains (:meth:`SQDFTrainer.start_round`) or
:meth:`SQDFTrainer.set_condition_pool`.

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
:func:`~sqdf_bbo.finetuning.kl.official_alpha_to_ours`; the setting ``SQDFConfig(kl_weight=…)``
is α_official, and the trainer converts it for the prior's D (``trainer.alpha``). The settings and their validation live in
:mod:`sqdf_bbo.finetuning.configs`.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from sqdf_bbo.diffusion.prior import DiffusionPrior, SampleOutput
from sqdf_bbo.distributed import (
    all_gather_cat,
    all_reduce_mean_,
    broadcast_,
    shard_generator_seed,
    shard_slice,
    world,
)
from sqdf_bbo.finetuning.buffer import ReplayBuffer
from sqdf_bbo.finetuning.checkpoint import frozen_copy, load_optimizer_tensors, optimizer_tensors
from sqdf_bbo.finetuning.configs import SQDFConfig
from sqdf_bbo.finetuning.kl import gaussian_step_kl, official_alpha_to_ours, ours_alpha_to_official
from sqdf_bbo.finetuning.lora import add_lora, merge_lora
from sqdf_bbo.progress import progress_bar

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


def _frozen_copy(prior: DiffusionPrior) -> DiffusionPrior:
    """A deep copy of ``prior`` (denoiser and consistency model) with every parameter frozen."""
    ref = prior.clone()
    if prior.consistency is not None:
        ref.consistency = frozen_copy(prior.consistency)
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

    It meets the fine-tuner contract of :class:`sqdf_bbo.finetuning.FineTuner`.

    Args:
        prior: the pretrained prior (not modified). Its device is used throughout.
        config: the run's settings (resolved for ``prior``: see :meth:`SQDFConfig.resolve`).
        buffer: a replay buffer to read and fill (e.g. one pre-filled with trajectories);
            default a new ``ReplayBuffer(config.buffer_capacity, seed=seed + 1)``. The
            trainer owns it from then on: :meth:`start_round` and :meth:`train_step` fill it.
        seed: seed of the trainer's generators (noise, rollouts, batch draws) and of its
            own buffer.

    Attributes:
        config: the resolved settings (``x0_method`` and ``lr`` set).
        alpha: the KL weight α the loss uses (our convention; from ``config.kl_weight``).
        reference: frozen copy of the pretrained prior (x0 estimator and KL reference).
        policy: the prior being fine-tuned (``DiffusionPrior`` sharing the
            trainer's network; sample it with :meth:`sample`).
        buffer: the replay buffer.
        round: the current round (tag of trajectories added to the buffer).
        num_updates: optimizer steps taken so far.
    """

    def __init__(
        self,
        prior: DiffusionPrior,
        config: SQDFConfig | None = None,
        buffer: ReplayBuffer | None = None,
        seed: int = 0,
    ) -> None:
        if not isinstance(prior, DiffusionPrior):
            raise TypeError(f"prior must be a DiffusionPrior, got {type(prior).__name__}")
        config = config if config is not None else SQDFConfig()
        self.config = config = config.resolve(prior)
        self.alpha = config.alpha_for(prior.dim)
        self.seed = seed = int(seed)
        if config.eta is not None or config.num_inference_steps is not None:
            prior = prior.with_settings(
                eta=config.eta, num_inference_steps=config.num_inference_steps
            )
        if not bool((prior.sigmas > 0).any()):
            fix = (
                "set SQDFConfig(eta=1.0)"
                if not prior.eta > 0
                else f"with {prior.num_inference_steps} denoising step(s) DDIM adds no noise "
                "whatever eta; use num_inference_steps >= 2"
            )
            raise ValueError(
                f"the sampler of prior {prior.name!r} is deterministic (eta={prior.eta}, "
                f"{prior.num_inference_steps} steps); SQDF needs a stochastic sampler: {fix}"
            )
        if config.x0_method == "consistency" and prior.conditional:
            raise ValueError(
                f"prior {prior.name!r} is conditional and its consistency model is not: "
                "use x0_method 'tweedie' or 'ddim'"
            )
        if config.x0_method == "consistency" and prior.consistency is None:
            raise ValueError(
                f"x0_method='consistency' but prior {prior.name!r} has no consistency model; "
                "distill one with sqdf_bbo.distill_consistency(prior) or use 'tweedie' or 'ddim'"
            )
        # 1. Frozen reference (estimator f and KL reference).
        self.reference = _frozen_copy(prior)
        # 2. The policy: a trainable copy (all weights, or LoRA adapters on frozen base weights).
        #    The network stays in eval mode: the policy is a fixed Gaussian per step
        #    (no dropout noise in μ_θ); gradients flow all the same.
        if config.train == "lora":
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
        self.optimizer = torch.optim.AdamW(
            self._params, lr=config.lr, weight_decay=config.weight_decay
        )
        self.buffer = (
            buffer if buffer is not None else ReplayBuffer(config.buffer_capacity, seed=seed + 1)
        )
        device = prior.device
        self.device = device
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self.index_generator = torch.Generator().manual_seed(seed + 2)
        self.round = 0
        self.num_updates = 0
        #: conditions ``(m, …)`` on-policy rollouts draw from (conditional priors)
        self.condition_pool: torch.Tensor | None = None
        self._dp_world: tuple[int, int] | None = None  # process group rank 0's weights came from
        # 3. Variance floor for the KL on σ = 0 steps: the smallest positive σ² of the schedule.
        var = prior.sigmas.double() ** 2
        self.kl_var_floor = float(var[var > 0].min())

    # ------------------------------------------------------------------ properties
    @property
    def num_inference_steps(self) -> int:
        return self.policy.num_inference_steps

    @property
    def trainable_parameters(self) -> dict[str, nn.Parameter]:
        """The parameters SQDF updates, by name in the policy network."""
        return dict(zip(self._param_names, self._params))

    # ------------------------------------------------------------------ rounds
    def start_round(
        self,
        round: int | None = None,
        chains: torch.Tensor | None = None,
        values: torch.Tensor | None = None,
        conditions: torch.Tensor | None = None,
    ) -> dict[str, float]:
        """Begin a new round (``round`` or the next one), refilling the buffer when given
        the round's chains.

        Args:
            round: the round's number (tag of the trajectories added from now on).
            chains: queried trajectories ``(q, K+1, *shape)`` (q may be 0): the buffer is
                emptied first when ``clear_buffer_each_round``, then the last ``capacity``
                of them are added as ``"queried"``.
            values: their rewards ``(q,)``, on the scale of the reward fine-tuned against.
            conditions: their network conditions ``(q, …)`` (conditional priors); they also
                become the condition pool of the round's rollouts.

        Returns:
            ``n_queried_in_buffer`` when chains were given (entries of the round log).
        """
        self.round = self.round + 1 if round is None else int(round)
        if chains is None:
            return {}
        if values is None or values.shape[0] != chains.shape[0]:
            raise ValueError("start_round needs one value per chain")
        if self.config.clear_buffer_each_round:
            self.buffer.clear()
        chains, values = chains[-self.buffer.capacity :], values[-self.buffer.capacity :]
        if self.policy.conditional != (conditions is not None):
            raise ValueError(
                "a conditional prior's chains need their conditions"
                if self.policy.conditional
                else "this prior is unconditional: its chains have no conditions"
            )
        if conditions is not None:
            conditions = conditions[-self.buffer.capacity :]
            if conditions.shape[0] != chains.shape[0]:
                raise ValueError("start_round needs one condition per chain")
            if conditions.shape[0]:
                self.set_condition_pool(conditions)
        if chains.shape[0]:
            self.buffer.add(chains, values, "queried", self.round, conditions=conditions)
        return {"n_queried_in_buffer": float(chains.shape[0])}

    def set_condition_pool(self, conditions: torch.Tensor) -> None:
        """The network conditions ``(m, …)`` that on-policy rollouts draw from (uniformly,
        with the trainer's generator), e.g. ``prior.encode_conditions(["a cat", "a dog"])``."""
        if not self.policy.conditional:
            raise TypeError("this prior is unconditional: it has no condition pool")
        if not isinstance(conditions, torch.Tensor) or conditions.shape[0] < 1:
            raise ValueError("the condition pool needs at least one condition (a tensor)")
        self.condition_pool = conditions.detach().to(self.device).clone()

    def _rollout_conditions(self, n: int) -> torch.Tensor | None:
        """n conditions drawn uniformly from the pool (``None`` for an unconditional prior)."""
        if not self.policy.conditional:
            return None
        if self.condition_pool is None:
            raise ValueError(
                "a conditional prior's rollouts need conditions: call start_round with the "
                "queried chains' conditions or set_condition_pool(...) first"
            )
        j = torch.randint(self.condition_pool.shape[0], (n,), generator=self.index_generator)
        return self.condition_pool[j.to(self.condition_pool.device)]

    # ------------------------------------------------------------------ sampling
    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        return_trajectory: bool = False,
        cond: torch.Tensor | None = None,
    ) -> SampleOutput:
        """n designs from the current policy (no gradients); see :meth:`DiffusionPrior.sample`."""
        return self.policy.sample(n, generator, return_trajectory=return_trajectory, cond=cond)

    def finetuned_prior(self) -> DiffusionPrior:
        """A standalone copy of the fine-tuned prior (LoRA adapters merged into plain layers)."""
        out = self.policy.clone()
        if self.config.train == "lora":
            out.denoiser = merge_lora(self.policy.denoiser)
        out.denoiser.eval()
        return out

    # ------------------------------------------------------------------ the loss
    def _reward(
        self, reward_fn: RewardFn, x: torch.Tensor, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        r = reward_fn(x) if cond is None else reward_fn(x, cond)
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
        constraint_fn: RewardFn | None = None,
        cond: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The SQDF loss on a batch of transitions.

        Args:
            reward_fn: ``r̂(x0 (b, *shape)) -> (b,)``, differentiable in x0.
            x_t: states, shape ``(b, *shape)`` (treated as constants).
            step: transition index i of each state, shape ``(b,)`` long.
            noise: z of shape ``(b, *shape)``; default fresh from the trainer's generator.
            constraint_fn: optional ``h(x0 (b, *shape)) -> (b,)`` added to Q̂, discounted only
                with ``config.discount_constraints``.
            cond: the network condition of each transition ``(b, …)`` (conditional priors):
                μ_θ, μ_ref and f take it, and the reward is ``r̂(x0, c)``.

        Returns:
            ``(loss, parts)``: the scalar loss and per-transition tensors ``reward``
            r̂(f(x_prev)) (+ h), ``q`` the soft-Q estimate, ``kl`` KL_t (each ``(b,)``,
            detached).
        """
        cfg, K = self.config, self.num_inference_steps
        x_t = self.policy.check_designs(x_t, "x_t").detach()
        i = torch.as_tensor(step, dtype=torch.long).reshape(-1).cpu()
        if i.numel() != x_t.shape[0]:
            raise ValueError(f"step must have shape ({x_t.shape[0]},), got {tuple(i.shape)}")
        if self.policy.conditional and cond is None:
            raise ValueError("a conditional prior's transitions need their conditions (cond=)")
        # 1. μ_θ(x_t, c) (trained network) and μ_ref(x_t, c) (frozen, no graph).
        out = self.policy.step_mean(x_t, i, cond=cond)
        with torch.no_grad():
            ref_mean = self.reference.step_mean(x_t, i, cond=cond).mean
        # 2. x_prev = μ_θ + σ_t z with fresh z.
        if noise is None:
            noise = torch.randn(
                x_t.shape, generator=self.generator, device=x_t.device, dtype=x_t.dtype
            )
        x_prev = out.mean + out.sigma * noise
        # 3. Q̂ = γ^k r̂(f(x_prev)), f the frozen estimator at state i+1 (identity at state K).
        given = {} if cond is None else {"cond": cond}
        x0_hat = self.reference.x0_estimate(x_prev, i + 1, cfg.x0_method, cfg.ddim_m, **given)
        reward = self._reward(reward_fn, x0_hat, cond)
        k = (K - 1 - i).to(device=x_t.device, dtype=x_t.dtype)
        q = cfg.gamma**k * reward
        if constraint_fn is not None:  # h(f(x_prev)), undiscounted by default
            h = self._reward(constraint_fn, x0_hat)
            q = q + (cfg.gamma**k * h if cfg.discount_constraints else h)
            reward = reward + h
        # 4. Exact Gaussian KL with the variance floored on σ = 0 steps.
        var = (out.sigma**2).clamp(min=self.kl_var_floor)
        kl = gaussian_step_kl(out.mean, ref_mean, var)
        loss = -(q - self.alpha * kl).mean()
        parts = {"reward": reward.detach(), "q": q.detach(), "kl": kl.detach()}
        return loss, parts

    # ------------------------------------------------------------------ training
    def _rollouts(
        self, reward_fn: RewardFn, n: int, constraint_fn: RewardFn | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """n fresh policy trajectories ``(n, K+1, *shape)``, their rewards ``(n,)`` (r̂ + h
        when there is a constraint term) and conditions (drawn from the pool, or ``None``)."""
        cond = self._rollout_conditions(n)
        out = self.policy.sample(n, self.generator, return_trajectory=True, cond=cond)
        with torch.no_grad():
            r = self._reward(reward_fn, out.x, cond)
            if constraint_fn is not None:
                r = r + self._reward(constraint_fn, out.x)
        assert out.trajectory is not None
        return out.trajectory, r, cond

    def _draw_batch(
        self, fresh: torch.Tensor | None, fresh_cond: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The step's transitions: states ``(b, *shape)``, steps ``(b,)`` and conditions."""
        cfg, K = self.config, self.num_inference_steps
        b = cfg.transitions_per_step
        n_on = round(cfg.onpolicy_fraction * b) if fresh is not None else 0
        xs, steps, conds = [], [], []
        if n_on > 0:
            assert fresh is not None
            j = torch.randint(fresh.shape[0], (n_on,), generator=self.index_generator)
            i = torch.randint(K, (n_on,), generator=self.index_generator)
            xs.append(fresh[j.to(fresh.device), i.to(fresh.device)])
            steps.append(i)
            if fresh_cond is not None:
                conds.append(fresh_cond[j.to(fresh_cond.device)])
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
            if tb.condition is not None:
                conds.append(tb.condition.to(self.device))
        if self.policy.conditional and len(conds) != len(xs):
            raise ValueError("the replay buffer holds trajectories without conditions")
        return torch.cat(xs), torch.cat(steps), (torch.cat(conds) if conds else None)

    def train_step(
        self, reward_fn: RewardFn, constraint_fn: RewardFn | None = None
    ) -> dict[str, float]:
        """One optimizer step (rollouts, batch, loss, update); returns its metrics.

        Under a ``torch.distributed`` process group of W > 1 processes the step is
        data-parallel (:mod:`sqdf_bbo.distributed`): each process samples
        ``rollouts_per_step / W`` rollouts with its own noise stream, every buffer receives
        all of them, every process draws the same batch of ``transitions_per_step``
        transitions and keeps its ``transitions_per_step / W`` share, and :meth:`update` averages the gradients.
        Without a process group (or with W = 1) nothing of this runs.
        """
        cfg = self.config
        t0 = time.perf_counter()
        rank, size = world()
        mine = shard_slice(cfg.transitions_per_step, rank, size, "transitions_per_step")
        if size > 1:  # this process's own noise for this update (rank 0 keeps its stream)
            shard_slice(cfg.rollouts_per_step, rank, size, "rollouts_per_step")
            if rank > 0:
                self.generator.manual_seed(shard_generator_seed(self.seed, rank, self.num_updates))
        # 1. Fresh on-policy rollouts (this process's share, gathered from every process),
        #    stored with their surrogate rewards.
        fresh, fresh_cond, rollout_reward = None, None, float("nan")
        if cfg.rollouts_per_step > 0:
            fresh, r, fresh_cond = self._rollouts(
                reward_fn, cfg.rollouts_per_step // size, constraint_fn
            )
            fresh, r = all_gather_cat(fresh), all_gather_cat(r)
            if fresh_cond is not None:
                fresh_cond = all_gather_cat(fresh_cond)
            self.buffer.add(fresh, r, "rollout", self.round, conditions=fresh_cond)
            rollout_reward = float(r.double().mean())
        # 2. The batch: on-policy part from the fresh rollouts, the rest from the buffer
        #    (the same batch on every process), and this process's share of it.
        x_t, step, cond = self._draw_batch(fresh, fresh_cond)
        # 3. Loss, gradients (averaged over the processes), clipping and the optimizer step.
        metrics = self.update(
            reward_fn,
            x_t[mine],
            step[mine],
            constraint_fn=constraint_fn,
            cond=None if cond is None else cond[mine],
        )
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
        constraint_fn: RewardFn | None = None,
        cond: torch.Tensor | None = None,
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
            constraint_fn: optional constraint term h (see :meth:`loss`).
            cond: the transitions' network conditions ``(b, …)`` (conditional priors).

        Returns:
            ``loss``, ``reward``, ``q``, ``kl`` (means over the batch, every process's share
            included) and ``grad_norm`` (of the averaged gradient, before clipping).
        """
        cfg = self.config
        if world()[1] > 1 and self._dp_world != world():
            broadcast_(self._params, src=0)
            self._dp_world = world()
        # 1. Loss on these transitions and its gradients w.r.t. the trained parameters only.
        loss, parts = self.loss(reward_fn, x_t, step, noise, constraint_fn, cond)
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
        constraint_fn: RewardFn | None = None,
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
            constraint_fn: optional ``h(x0 (n, *shape)) -> (n,)``, differentiable in x0, added
                to the soft-Q estimate (undiscounted unless ``config.discount_constraints``):
                the ask/tell optimizers pass their α-weighted log-feasibility here.

        Returns:
            The list of per-step metrics.
        """
        if not callable(reward_fn):
            raise TypeError(f"reward_fn must be callable, got {type(reward_fn).__name__}")
        n = self.config.steps if steps is None else int(steps)
        if n < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        history: list[dict[str, float]] = []
        bar = progress_bar(range(n), progress=progress and n > 0, desc="SQDF", leave=False)
        for _ in bar:
            metrics = self.train_step(reward_fn, constraint_fn)
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
        for ``lora``),         ``optim/<param index>/<key>``, ``generator``, ``index_generator``,
        ``round``, ``num_updates`` and, with ``include_buffer``, ``buffer/<key>``.
        """
        only = set(self._param_names) if self.config.train == "lora" else None
        d: dict[str, torch.Tensor] = {}
        for k, v in _tensor_state(self.policy.denoiser, only).items():
            d[f"policy/{k}"] = v
        d.update({f"optim/{k}": v for k, v in optimizer_tensors(self.optimizer).items()})
        d["generator"] = self.generator.get_state().clone()
        d["index_generator"] = self.index_generator.get_state().clone()
        d["round"] = torch.tensor(self.round, dtype=torch.long)
        d["num_updates"] = torch.tensor(self.num_updates, dtype=torch.long)
        if self.condition_pool is not None:
            d["condition_pool"] = self.condition_pool.detach().cpu().clone()
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
        if sub("kl_reference/"):
            raise KeyError(
                "trainer state has a 'kl_reference/...' snapshot: SQDF's KL reference "
                "is the pretrained prior (kl_reference='previous' was removed)"
            )
        load_optimizer_tensors(self.optimizer, sub("optim/"))
        try:
            self.generator.set_state(state["generator"].to(torch.uint8))
        except (RuntimeError, KeyError):  # a state saved on another device kind
            self.generator.manual_seed(self.seed + int(state.get("num_updates", 0)))
        if "index_generator" in state:
            self.index_generator.set_state(state["index_generator"].to(torch.uint8))
        self.round = int(state.get("round", torch.tensor(0)))
        self.num_updates = int(state.get("num_updates", torch.tensor(0)))
        pool = state.get("condition_pool")
        self.condition_pool = None if pool is None else pool.to(self.device).clone()
        buf = sub("buffer/")
        if buf:
            self.buffer.load_state_dict(buf, device=self.device)


def finetune(
    prior: DiffusionPrior,
    reward_fn: RewardFn,
    config: SQDFConfig | None = None,
    callback: Callable[[dict[str, float]], Any] | None = None,
    progress: bool = True,
    seed: int = 0,
) -> DiffusionPrior:
    """Offline SQDF: fine-tune ``prior`` against ``reward_fn`` for ``config.steps`` steps.

    Args:
        prior: the pretrained prior (not modified).
        reward_fn: ``r(x0 (n, *shape)) -> (n,)``, differentiable in x0.
        config: settings (default :class:`SQDFConfig()`).
        callback, progress: see :meth:`SQDFTrainer.train`.
        seed: the trainer's seed.

    Returns:
        The fine-tuned prior (a new object; LoRA adapters merged), sampling with
        the config's η and K.
    """
    trainer = SQDFTrainer(prior, config, seed=seed)
    trainer.train(reward_fn, callback=callback, progress=progress)
    return trainer.finetuned_prior()
