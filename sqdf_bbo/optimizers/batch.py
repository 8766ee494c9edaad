"""What ``ask`` returns (:class:`Batch`) and what an algorithm's ``_propose`` returns
(:class:`Proposal`; :func:`sample_proposal` makes one from a diffusion prior)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from sqdf_bbo.diffusion.prior import DiffusionPrior

__all__ = ["Batch", "Proposal", "sample_proposal"]


@dataclass(frozen=True)
class Batch:
    """Designs to evaluate.

    Attributes:
        ids: unique integer ids, one per design (pass them back to ``tell``).
        x: designs, shape ``(n, *shape)``.
        conditions: the condition of each design (a conditional prior's ``ask``), or ``None``.
    """

    ids: list[int]
    x: torch.Tensor
    conditions: list[Any] | None = None

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class Proposal:
    """What an algorithm's ``_propose(n)`` returns.

    Attributes:
        x: designs, shape ``(n, *shape)``.
        trajectories: the sampling chains x_T … x_0 that produced them,
            shape ``(n, K+1, *shape)``, or ``None``.
    """

    x: torch.Tensor
    trajectories: torch.Tensor | None = None


def sample_proposal(
    prior: DiffusionPrior,
    n: int,
    generator: torch.Generator,
    clip: bool,
    cond: torch.Tensor | None = None,
) -> Proposal:
    """n designs of ``prior`` (network in eval mode) with their trajectories ``(n, K+1, *shape)``;
    designs mapped by ``prior.to_design`` (clamped to the value range, or decoded) when
    ``clip`` (the trajectory keeps the chain); ``cond``: the network conditions ``(n, …)``
    of a conditional prior."""
    net = prior.denoiser
    was_training = net.training
    net.eval()
    try:
        out = prior.sample(n, generator, return_trajectory=True, cond=cond)
    finally:
        net.train(was_training)
    x = prior.to_design(out.x) if clip else out.x
    return Proposal(x, out.trajectory)
