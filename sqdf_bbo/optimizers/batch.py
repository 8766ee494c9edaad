"""What ``ask`` returns (:class:`Batch`) and what an algorithm's ``_propose`` returns
(:class:`Proposal`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["Batch", "Proposal"]


@dataclass(frozen=True)
class Batch:
    """Designs to evaluate.

    Attributes:
        ids: unique integer ids, one per design (pass them back to ``tell``).
        x: designs, shape ``(n, *shape)``.
    """

    ids: list[int]
    x: torch.Tensor

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
