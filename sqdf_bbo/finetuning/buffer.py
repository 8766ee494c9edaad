"""Replay buffer of denoising trajectories for SQDF.

Each stored item is one whole trajectory x_T … x_0 (shape ``(K+1, *shape)``)
with a scalar reward, its source and the round it was added in:

* ``source="queried"``: a design the oracle scored; ``reward`` is the observed value.
* ``source="rollout"``: an on-policy sample of the fine-tuned model; ``reward`` is
  the surrogate's (optimistic) value.

SQDF trains on *transitions*: a pair (trajectory j, transition index i) gives the
state x_t = ``trajectory[j, i]`` and the transition i → i + 1, with
k = K − 1 − i denoising steps still to go after it (see :mod:`sqdf_bbo.diffusion.prior`).

Sampling methods (``ReplayBuffer.sample(b, method, gamma)``):

* ``random``: b pairs (j, i) uniform over stored trajectories and steps, with replacement.
* ``on-policy``: the b newest trajectories (all of them if fewer are stored, then
  with replacement), one uniformly random step each.
* ``reward``: the b highest-reward trajectories (same rule), one random step each.
* ``reward+gamma``: b pairs drawn with replacement from
  P(j, i) ∝ w_j · γ^{k_i},  k_i = K − 1 − i   (the official PER),
  where w_j is a non-negative transform of the stored reward r_j, chosen by ``priority``:

  - ``shift`` (default): w_j = r_j − min_j r_j + 1. With rewards in target standard
    deviations (the optimizers standardize them), the worst trajectory gets weight 1 and
    each standard deviation above it adds 1: linear in the reward like the official
    weight, positive for any sign of reward. Typical best/worst ratios are 3–6.
  - ``official``: w_j = max(r_j, 0), the official code's weight. It was used there on raw
    aesthetic scores (all ≈ 5–8 > 0, best/worst ≈ 1.3); with standardized rewards it gives
    every below-average trajectory weight 0 (all-zero weights fall back to uniform).
  - ``rank``: w_j = rank_j / n (rank 1 = lowest, ties averaged): the best trajectory is n
    times as likely as the worst (v0.1's default; 64× for a buffer of 64, which replays
    exploited rollouts greedily).

  Steps near x_0 (small k) are favoured when γ < 1.

Conditional priors: each trajectory may carry the network condition it was sampled under
(a class label, a prompt embedding; ``add(..., conditions=)``), stored beside it and returned
with each drawn transition (:attr:`TransitionBatch.condition`), so that the step's KL and the
soft-Q estimate use the same condition as the chain.

Memory: the storage tensors are allocated once, at the first :meth:`add`, for
``capacity`` trajectories on that call's device and dtype; later adds overwrite
the oldest entries (a ring), so memory never grows past the capacity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

__all__ = [
    "ReplayBuffer",
    "TransitionBatch",
    "SAMPLING_METHODS",
    "PRIORITIES",
    "SOURCES",
    "priority_weights",
]

SAMPLING_METHODS: tuple[str, ...] = ("random", "on-policy", "reward", "reward+gamma")
PRIORITIES: tuple[str, ...] = ("shift", "official", "rank")
SOURCES: tuple[str, ...] = ("queried", "rollout")


@dataclass(frozen=True)
class TransitionBatch:
    """Transitions drawn from a :class:`ReplayBuffer`.

    Attributes:
        x_t: the states, shape ``(b, *shape)`` (detached copies).
        step: transition index i of each state, shape ``(b,)`` long (0 … K−1).
        traj_index: buffer slot j of each trajectory, shape ``(b,)`` long.
        reward: the stored reward of each trajectory, shape ``(b,)``.
        condition: the network condition of each trajectory ``(b, …)``, or ``None`` for a
            buffer of unconditional trajectories.
    """

    x_t: torch.Tensor
    step: torch.Tensor
    traj_index: torch.Tensor
    reward: torch.Tensor
    condition: torch.Tensor | None = None


def rank_weights(rewards: torch.Tensor) -> torch.Tensor:
    """w_j = rank_j / n (1 = lowest, n = highest; ties averaged); rewards ``(n,)`` → ``(n,)`` float64."""
    r = rewards.detach().double().cpu()
    n = r.numel()
    order = torch.argsort(r, stable=True)
    ranks = torch.empty(n, dtype=torch.float64)
    ranks[order] = torch.arange(1, n + 1, dtype=torch.float64)
    # 1. Average the ranks of tied rewards so equal rewards get equal weight.
    uniq, inverse = torch.unique(r, return_inverse=True)
    if uniq.numel() < n:
        sums = torch.zeros(uniq.numel(), dtype=torch.float64).index_add_(0, inverse, ranks)
        counts = torch.zeros(uniq.numel(), dtype=torch.float64).index_add_(
            0, inverse, torch.ones(n, dtype=torch.float64)
        )
        ranks = (sums / counts)[inverse]
    return ranks / n


def priority_weights(rewards: torch.Tensor, priority: str = "shift") -> torch.Tensor:
    """Trajectory weights w_j of the ``reward+gamma`` sampler (see the module docstring);
    rewards ``(n,)`` → ``(n,)`` float64, non-negative with a positive sum."""
    r = rewards.detach().double().cpu()
    if priority == "shift":
        return r - r.min() + 1.0
    if priority == "official":
        w = r.clamp_min(0.0)
        return w if float(w.sum()) > 0 else torch.ones_like(w)
    if priority == "rank":
        return rank_weights(r)
    raise ValueError(f"unknown priority {priority!r}; accepted values: {', '.join(PRIORITIES)}")


class ReplayBuffer:
    """A bounded ring buffer of trajectories with reward, source and round.

    Args:
        capacity: maximum number of trajectories kept (oldest overwritten first).
        seed: seed of the buffer's own ``torch.Generator`` used by :meth:`sample`.
    """

    def __init__(self, capacity: int = 1024, seed: int = 0) -> None:
        if int(capacity) < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self.seed = int(seed)
        self._gen = torch.Generator().manual_seed(self.seed)
        self._traj: torch.Tensor | None = None  # (capacity, K+1, *shape)
        self._cond: torch.Tensor | None = None  # (capacity, …): conditions, if any
        self._reward = torch.zeros(self.capacity, dtype=torch.float64)
        self._source = torch.zeros(self.capacity, dtype=torch.long)  # index into SOURCES
        self._round = torch.zeros(self.capacity, dtype=torch.long)
        self._stamp = torch.zeros(self.capacity, dtype=torch.long)  # insertion counter
        self._size = 0
        self._ptr = 0
        self._count = 0  # trajectories ever added

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return self._size

    def __repr__(self) -> str:
        return f"ReplayBuffer(capacity={self.capacity}, size={self._size})"

    @property
    def num_steps(self) -> int | None:
        """K, the number of transitions per stored trajectory (None while empty)."""
        return None if self._traj is None else self._traj.shape[1] - 1

    @property
    def shape(self) -> tuple[int, ...] | None:
        """Design shape of the stored trajectories (None before the first add)."""
        return None if self._traj is None else tuple(self._traj.shape[2:])

    def clear(self) -> None:
        """Forget every stored trajectory (the storage tensors are kept for reuse)."""
        self._size = 0
        self._ptr = 0

    def _slots(self) -> torch.Tensor:
        return torch.arange(self._size, dtype=torch.long)

    @property
    def rewards(self) -> torch.Tensor:
        """Rewards of the stored trajectories, shape ``(len(self),)`` float64 (slot order)."""
        return self._reward[: self._size].clone()

    @property
    def rounds(self) -> torch.Tensor:
        """Round of each stored trajectory, shape ``(len(self),)`` long."""
        return self._round[: self._size].clone()

    @property
    def sources(self) -> list[str]:
        """Source (``queried`` / ``rollout``) of each stored trajectory, in slot order."""
        return [SOURCES[int(s)] for s in self._source[: self._size]]

    def trajectories(self) -> torch.Tensor:
        """The stored trajectories, shape ``(len(self), K+1, *shape)`` (a view; do not modify)."""
        if self._traj is None:
            raise ValueError("the buffer is empty")
        return self._traj[: self._size]

    # ------------------------------------------------------------------ add
    def add(
        self,
        trajectories: torch.Tensor,
        rewards: torch.Tensor,
        source: str,
        round: int = 0,
        conditions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Store trajectories.

        Args:
            trajectories: shape ``(n, K+1, *shape)`` with ``[:, 0] = x_T`` and ``[:, K] = x_0``.
            rewards: shape ``(n,)``, finite (observed oracle values for
                ``queried``, surrogate values for ``rollout``).
            source: ``"queried"`` or ``"rollout"``.
            round: the optimization round the trajectories belong to.
            conditions: the network condition of each trajectory ``(n, …)`` (conditional
                priors); a buffer holds either conditional or unconditional trajectories.

        Returns:
            The buffer slots written, shape ``(n,)`` long. If ``n`` exceeds the
            capacity only the last ``capacity`` trajectories are kept.
        """
        if source not in SOURCES:
            raise ValueError(f"unknown source {source!r}; accepted values: {', '.join(SOURCES)}")
        if not isinstance(trajectories, torch.Tensor) or trajectories.ndim < 3:
            got = (
                tuple(trajectories.shape)
                if isinstance(trajectories, torch.Tensor)
                else type(trajectories).__name__
            )
            raise ValueError(f"trajectories must be a tensor of shape (n, K+1, *shape), got {got}")
        rewards = torch.as_tensor(rewards).detach().reshape(-1).double().cpu()
        n = trajectories.shape[0]
        if rewards.numel() != n:
            raise ValueError(
                f"rewards must have shape ({n},) to match {n} trajectories, got {rewards.numel()} values"
            )
        if not torch.isfinite(rewards).all():
            bad = torch.nonzero(~torch.isfinite(rewards)).reshape(-1).tolist()
            raise ValueError(
                f"rewards must be finite; entries {bad} are NaN or infinite "
                "(leave failed oracle queries out of the buffer)"
            )
        if trajectories.shape[1] < 2:
            raise ValueError(f"trajectories must hold K+1 >= 2 states, got {trajectories.shape[1]}")
        if self._traj is None:
            # 1. Lazy preallocation: the only allocation of trajectory memory.
            self._traj = torch.zeros(
                (self.capacity, *trajectories.shape[1:]),
                dtype=trajectories.dtype,
                device=trajectories.device,
            )
        elif tuple(trajectories.shape[1:]) != tuple(self._traj.shape[1:]):
            raise ValueError(
                f"trajectories of shape (n, {', '.join(map(str, trajectories.shape[1:]))}) do not "
                f"match the buffer's (n, {', '.join(map(str, self._traj.shape[1:]))})"
            )
        self._check_conditions(conditions, n, trajectories.device)
        if n == 0:
            return torch.zeros(0, dtype=torch.long)
        if n > self.capacity:
            trajectories, rewards, n = (
                trajectories[-self.capacity :],
                rewards[-self.capacity :],
                self.capacity,
            )
            conditions = None if conditions is None else conditions[-self.capacity :]
        # 2. Ring write: slots ptr, ptr+1, … modulo capacity.
        slots = (self._ptr + torch.arange(n)) % self.capacity
        self._traj[slots.to(self._traj.device)] = trajectories.detach().to(
            device=self._traj.device, dtype=self._traj.dtype
        )
        if conditions is not None and self._cond is not None:
            self._cond[slots.to(self._cond.device)] = conditions.detach().to(
                device=self._cond.device, dtype=self._cond.dtype
            )
        self._reward[slots] = rewards
        self._source[slots] = SOURCES.index(source)
        self._round[slots] = int(round)
        self._stamp[slots] = self._count + torch.arange(n)
        self._count += n
        self._ptr = int((self._ptr + n) % self.capacity)
        self._size = min(self.capacity, self._size + n)
        return slots

    def _check_conditions(
        self, conditions: torch.Tensor | None, n: int, device: torch.device
    ) -> None:
        """Refuse conditions of the wrong count or shape, or a mix of conditional and
        unconditional trajectories; allocate the condition storage at the first add."""
        conditional = self._cond is not None
        if self._size > 0 and conditional != (conditions is not None):
            held = "conditional" if conditional else "unconditional"
            raise ValueError(
                f"the buffer holds {held} trajectories; "
                + ("pass their conditions" if conditional else "these come with conditions")
            )
        if conditions is None:
            if self._size == 0:
                self._cond = None
            return
        if conditions.shape[0] != n:
            raise ValueError(f"got {conditions.shape[0]} conditions for {n} trajectories")
        if self._cond is None or tuple(self._cond.shape[1:]) != tuple(conditions.shape[1:]):
            self._cond = torch.zeros(
                (self.capacity, *conditions.shape[1:]), dtype=conditions.dtype, device=device
            )

    def conditions(self) -> torch.Tensor | None:
        """The stored conditions ``(len(self), …)`` (``None`` for unconditional ones)."""
        return None if self._cond is None else self._cond[: self._size]

    # ------------------------------------------------------------------ sampling
    def probabilities(self, gamma: float, priority: str = "shift") -> torch.Tensor:
        """The ``reward+gamma`` distribution P(j, i) ∝ w_j γ^{K−1−i}, shape ``(len(self), K)``
        float64 (w_j by ``priority``, see :func:`priority_weights`)."""
        if self._size == 0 or self._traj is None:
            raise ValueError("the buffer is empty")
        if not 0.0 < float(gamma) <= 1.0:
            raise ValueError(f"gamma must lie in (0, 1], got {gamma}")
        K = self._traj.shape[1] - 1
        w = priority_weights(self._reward[: self._size], priority)  # (n,)
        k = torch.arange(K - 1, -1, -1, dtype=torch.float64)  # k_i = K-1-i
        p = w[:, None] * float(gamma) ** k[None, :]
        return p / p.sum()

    def _one_step_each(self, slots: torch.Tensor, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        """b (slot, step) pairs: the given slots (cycled if fewer than b), one uniform step each."""
        K = self._traj.shape[1] - 1  # type: ignore[union-attr]
        if slots.numel() >= b:
            chosen = slots[:b]
        else:
            extra = slots[torch.randint(slots.numel(), (b - slots.numel(),), generator=self._gen)]
            chosen = torch.cat([slots, extra])
        steps = torch.randint(K, (b,), generator=self._gen)
        return chosen, steps

    def sample(
        self,
        batch_size: int,
        method: str = "random",
        gamma: float = 1.0,
        priority: str = "shift",
    ) -> TransitionBatch:
        """Draw ``batch_size`` transitions (see the module docstring for the methods).

        Args:
            batch_size: b.
            method: one of ``random``, ``on-policy``, ``reward``, ``reward+gamma``.
            gamma: discount γ ∈ (0, 1] used by ``reward+gamma``.
            priority: trajectory weight of ``reward+gamma`` (``shift``, ``official``, ``rank``).

        Returns:
            A :class:`TransitionBatch` with ``x_t`` of shape ``(b, *shape)``.
        """
        if method not in SAMPLING_METHODS:
            raise ValueError(
                f"unknown sampling method {method!r}; accepted values: {', '.join(SAMPLING_METHODS)}"
            )
        b = int(batch_size)
        if b < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if self._size == 0 or self._traj is None:
            raise ValueError("cannot sample from an empty replay buffer; add trajectories first")
        n, K = self._size, self._traj.shape[1] - 1
        if method == "random":
            slots = torch.randint(n, (b,), generator=self._gen)
            steps = torch.randint(K, (b,), generator=self._gen)
        elif method == "on-policy":
            order = torch.argsort(self._stamp[:n], descending=True)
            slots, steps = self._one_step_each(order, b)
        elif method == "reward":
            order = torch.argsort(self._reward[:n], descending=True, stable=True)
            slots, steps = self._one_step_each(order, b)
        else:  # reward+gamma
            p = self.probabilities(gamma, priority).reshape(-1)
            flat = torch.multinomial(p, b, replacement=True, generator=self._gen)
            slots, steps = flat // K, flat % K
        dev = self._traj.device
        x_t = self._traj[slots.to(dev), steps.to(dev)].clone()
        cond = None if self._cond is None else self._cond[slots.to(self._cond.device)].clone()
        return TransitionBatch(
            x_t=x_t,
            step=steps.to(dev),
            traj_index=slots.to(dev),
            reward=self._reward[slots].to(device=dev, dtype=x_t.dtype),
            condition=cond,
        )

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, torch.Tensor]:
        """Everything needed to restore the buffer, as tensors only (safetensors-friendly).

        Only the filled slots are saved (in slot order), plus the ring pointer
        and the generator state, so a reloaded buffer samples exactly as this one.
        """
        n = self._size
        d: dict[str, Any] = {
            "capacity": torch.tensor(self.capacity, dtype=torch.long),
            "seed": torch.tensor(self.seed, dtype=torch.long),
            "size": torch.tensor(n, dtype=torch.long),
            "ptr": torch.tensor(self._ptr, dtype=torch.long),
            "count": torch.tensor(self._count, dtype=torch.long),
            "reward": self._reward[:n].clone(),
            "source": self._source[:n].clone(),
            "round": self._round[:n].clone(),
            "stamp": self._stamp[:n].clone(),
            "generator": self._gen.get_state(),
        }
        if self._traj is not None:
            d["trajectories"] = self._traj[:n].detach().cpu().clone()
            d["traj_shape"] = torch.tensor(list(self._traj.shape[1:]), dtype=torch.long)
        if self._cond is not None:
            d["conditions"] = self._cond[:n].detach().cpu().clone()
        return d

    def load_state_dict(
        self, state: dict[str, torch.Tensor], device: torch.device | str | None = None
    ) -> None:
        """Restore a state written by :meth:`state_dict` (trajectories go to ``device``, default CPU)."""
        required = (
            "capacity",
            "size",
            "ptr",
            "count",
            "reward",
            "source",
            "round",
            "stamp",
            "generator",
        )
        missing = [k for k in required if k not in state]
        if missing:
            raise KeyError(f"replay buffer state is missing {missing}")
        self.capacity = int(state["capacity"])
        if "seed" in state:
            self.seed = int(state["seed"])
        n = int(state["size"])
        self._reward = torch.zeros(self.capacity, dtype=torch.float64)
        self._source = torch.zeros(self.capacity, dtype=torch.long)
        self._round = torch.zeros(self.capacity, dtype=torch.long)
        self._stamp = torch.zeros(self.capacity, dtype=torch.long)
        self._reward[:n] = state["reward"].double()
        self._source[:n] = state["source"].long()
        self._round[:n] = state["round"].long()
        self._stamp[:n] = state["stamp"].long()
        self._size, self._ptr, self._count = n, int(state["ptr"]), int(state["count"])
        self._gen = torch.Generator()
        self._gen.set_state(state["generator"].to(torch.uint8).cpu())
        if "trajectories" in state:
            traj = state["trajectories"]
            shape = tuple(int(s) for s in state["traj_shape"])
            self._traj = torch.zeros(
                (self.capacity, *shape), dtype=traj.dtype, device=device or traj.device
            )
            self._traj[:n] = traj.to(self._traj.device)
        else:
            self._traj = None
        self._cond = None
        if "conditions" in state:
            cond = state["conditions"]
            self._cond = torch.zeros(
                (self.capacity, *cond.shape[1:]), dtype=cond.dtype, device=device or cond.device
            )
            self._cond[:n] = cond.to(self._cond.device)
