"""The genetic algorithm of the Ehrlich paper (holo's ``DiscreteEvolution``) through ask/tell.

Designs are token sequences as one-hot designs ``(L, v)`` in {−1, +1} (:mod:`sqdf_bbo.sequences`);
the algorithm itself works on tokens. One generation = one ``ask``:

0. The first ``ask`` returns sequences of ``initial`` (the natural sequences the user starts
   from, e.g. chain samples), cycling through them.
1. Afterwards the parents are the previous generation's told points; a failed point (NaN, an
   infeasible sequence) counts as −∞. Survivors: the points whose value is at least the
   ``1 − survival_quantile`` quantile of the generation's values (holo: loss ≤ its
   ``survival_quantile`` quantile, loss = −value); if that quantile is −∞, all survive.
2. The rest of the new generation (n − #survivors) are children of two survivors drawn
   uniformly with replacement: position-wise, the first parent's token with probability
   ``recombine_prob``, else the second's.
3. Every member of the new generation, survivors included, is mutated: each position with
   probability ``mutation_prob`` gets a uniform random token.

Defaults are the paper's (holo-bench ``benchmark_optimizer.py``): ``mutation_prob =
recombine_prob = 1.1 / L``; ``survival_quantile`` 0.5 is holo's class default (the paper's
0.0001 of 10⁶ particles does not scale down to a batch of 128; 0.5 keeps 64 parents).
Every draw comes from ``self.generator``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sqdf_bbo.config import as_config, check_fields, config_to_dict
from sqdf_bbo.optimizers.base import Optimizer, Proposal
from sqdf_bbo.sequences import decode_tokens, one_hot_designs

__all__ = ["GeneticAlgorithm", "GAConfig"]

_FLOOR = -1e300  # stands for the −∞ of failed points inside the quantile


@dataclass(frozen=True)
class GAConfig:
    """Settings of :class:`GeneticAlgorithm` (module docstring).

    Attributes:
        mutation_prob: per-position mutation probability; ``None``: 1.1 / L.
        recombine_prob: per-position probability of the first parent's token; ``None``: 1.1 / L.
        survival_quantile: share of a generation that survives, in (0, 1).
    """

    mutation_prob: float | None = None
    recombine_prob: float | None = None
    survival_quantile: float = 0.5

    def __post_init__(self) -> None:
        check_fields(self)
        if self.mutation_prob is not None and not 0 < self.mutation_prob < 1:
            raise ValueError(f"mutation_prob must lie in (0, 1), got {self.mutation_prob}")
        if self.recombine_prob is not None and not 0 <= self.recombine_prob < 1:
            raise ValueError(f"recombine_prob must lie in [0, 1), got {self.recombine_prob}")
        if not 0 < self.survival_quantile < 1:
            raise ValueError(f"survival_quantile must lie in (0, 1), got {self.survival_quantile}")


class GeneticAlgorithm(Optimizer):
    """holo's discrete evolution, one generation per ``ask`` (module docstring).

    Args:
        initial: starting sequences, integer tokens ``(m, L)`` (tensor or nested lists).
        num_states: v.
        batch_size: designs per ``ask()`` (the population size).
        seed: seeds ``self.generator``.
        config: :class:`GAConfig` or a mapping of its fields.
        study: folder to write the study through to.
    """

    method = "ga"

    def __init__(
        self,
        initial: torch.Tensor | Sequence[Sequence[int]],
        num_states: int,
        batch_size: int = 128,
        seed: int = 0,
        config: GAConfig | Mapping[str, Any] | None = None,
        study: str | Path | None = None,
    ) -> None:
        init = torch.as_tensor(initial)
        if init.ndim != 2 or init.shape[0] < 1 or init.is_floating_point():
            raise ValueError(
                f"initial must be integer tokens of shape (m, L), got {tuple(init.shape)}"
            )
        if int(num_states) < 2 or int(init.min()) < 0 or int(init.max()) >= int(num_states):
            raise ValueError(f"initial tokens must lie in [0, num_states={num_states})")
        self.initial = init.long().cpu()
        self.num_states = int(num_states)
        self.config = as_config(config, GAConfig)
        length = self.initial.shape[1]
        self.mutation_prob = self.config.mutation_prob or 1.1 / length
        self.recombine_prob = self.config.recombine_prob or 1.1 / length
        self._generation: list[int] = []  # ids of the latest generation
        self._n_initial_used = 0
        super().__init__((length, self.num_states), batch_size=batch_size, seed=seed, study=study)

    # ------------------------------------------------------------------ one generation
    def _parents(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Tokens ``(m, L)`` and values ``(m,)`` (failed: −∞) of the latest generation's told points."""
        told = [self._points[i] for i in self._generation if self._points[i].state != "pending"]
        if not told:
            return None
        x = decode_tokens(torch.stack([p.x for p in told]))
        y = torch.tensor(
            [
                p.value if p.state == "complete" and math.isfinite(p.value) else -math.inf
                for p in told
            ],
            dtype=torch.float64,
        )
        return x, y

    def _next_generation(self, n: int, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Steps 1.-3. of the module docstring: ``n`` new sequences ``(n, L)``."""
        g = self.generator
        # 1. Survivors: value >= the (1 − q) quantile (all of them if that quantile is −∞).
        low = y.clamp(min=_FLOOR)  # failed points at a finite floor, so the quantile is defined
        threshold = torch.quantile(low, 1.0 - self.config.survival_quantile)
        alive = low >= threshold if threshold > _FLOOR else torch.ones_like(y, dtype=torch.bool)
        survivors = x[alive][:n]
        m = survivors.shape[0]
        # 2. Children by position-wise recombination of two uniformly drawn survivors.
        k = n - m
        p1 = torch.randint(m, (k,), generator=g, device=g.device).cpu()
        p2 = torch.randint(m, (k,), generator=g, device=g.device).cpu()
        take_first = (
            torch.rand((k, x.shape[1]), generator=g, device=g.device).cpu() < self.recombine_prob
        )
        children = torch.where(take_first, survivors[p1], survivors[p2])
        pop = torch.cat([survivors, children])
        # 3. Mutation of every member, survivors included.
        mutate = torch.rand(pop.shape, generator=g, device=g.device).cpu() < self.mutation_prob
        tokens = torch.randint(self.num_states, pop.shape, generator=g, device=g.device).cpu()
        return torch.where(mutate, tokens, pop)

    def _propose(self, n: int) -> Proposal:
        parents = self._parents()
        if parents is None:  # 0. the starting sequences, cycling
            idx = (torch.arange(n) + self._n_initial_used) % self.initial.shape[0]
            self._n_initial_used += n
            tokens = self.initial[idx]
        else:
            tokens = self._next_generation(n, *parents)
        self._generation = list(range(self._next_id, self._next_id + n))  # the ids ask assigns
        x = one_hot_designs(tokens, self.num_states).to(self.device, self.dtype)
        return Proposal(x)

    # ------------------------------------------------------------------ persistence
    def _spec(self) -> dict[str, Any]:
        return {
            "initial": self.initial.tolist(),
            "num_states": self.num_states,
            "config": config_to_dict(self.config),
        }

    def _extra_state(self) -> dict[str, Any]:
        return {"generation": list(self._generation), "n_initial_used": self._n_initial_used}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self._generation = [int(i) for i in state.get("generation", [])]
        self._n_initial_used = int(state.get("n_initial_used", 0))
