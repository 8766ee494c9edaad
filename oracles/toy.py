"""Toy oracles for flat designs, e.g. the 2-D "rings" prior (8 Gaussians on a circle of radius 2).

Their maxima lie OFF the data manifold, so a maximizer that ignores the prior
walks away from the rings, while a KL-regularized one (SQDF) should stay on
the ring mode closest to the maximum.

- :class:`LinearOracle` — ``r(x) = aᵀx`` (unbounded: no maximum at all).
- :class:`BumpOracle` — ``r(x) = h · exp(−‖x − c‖² / (2w²))``, maximum ``h`` at ``c``.
- :class:`RingsOracle` — the rings benchmark's reward: a bump with centre
  (3, 3) and width 1.5. Its maximum (value 1) is 2.24 from the nearest ring
  mode (√2, √2) — about 15 mode standard deviations. At the 8 mode centres
  the reward is 0.327 (nearest), 0.108 (its two neighbours), … , 1.7e-4
  (opposite); over 1e5 ring samples its mean is 0.070 and its max 0.55.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .base import DifferentiableOracle

__all__ = ["LinearOracle", "BumpOracle", "RingsOracle"]


def _vector(values: Sequence[float] | torch.Tensor, what: str) -> torch.Tensor:
    v = torch.as_tensor(values, dtype=torch.float64).flatten()
    if v.numel() < 1 or not torch.isfinite(v).all():
        raise ValueError(f"{what} must be a non-empty finite vector, got {values!r}")
    return v


class LinearOracle(DifferentiableOracle):
    """``r(x) = aᵀ flatten(x)`` for designs of ``shape`` (default ``(len(a),)``)."""

    name = "linear"

    def __init__(
        self,
        direction: Sequence[float] | torch.Tensor = (1.0, 1.0),
        *,
        shape: Sequence[int] | None = None,
        **kwargs: Any,
    ) -> None:
        self.direction = _vector(direction, "direction")
        self.shape = tuple(shape) if shape is not None else (self.direction.numel(),)
        if torch.Size(self.shape).numel() != self.direction.numel():
            raise ValueError(
                f"direction has {self.direction.numel()} entries but shape {self.shape} has {torch.Size(self.shape).numel()}"
            )
        super().__init__(**kwargs)

    def evaluate_true(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(x.shape[0], -1)
        return flat @ self.direction.to(device=x.device, dtype=flat.dtype)


class BumpOracle(DifferentiableOracle):
    """``r(x) = height · exp(−‖x − center‖² / (2·width²))``; maximum ``height`` at ``center``."""

    name = "bump"

    def __init__(
        self,
        center: Sequence[float] | torch.Tensor,
        *,
        width: float = 1.0,
        height: float = 1.0,
        shape: Sequence[int] | None = None,
        **kwargs: Any,
    ) -> None:
        self.center = _vector(center, "center")
        if not width > 0 or not height > 0:
            raise ValueError(f"width and height must be > 0, got width={width}, height={height}")
        self.width, self.height = float(width), float(height)
        self.shape = tuple(shape) if shape is not None else (self.center.numel(),)
        if torch.Size(self.shape).numel() != self.center.numel():
            raise ValueError(
                f"center has {self.center.numel()} entries but shape {self.shape} has {torch.Size(self.shape).numel()}"
            )
        self._optimal_value = self.height
        super().__init__(**kwargs)

    @property
    def optimizers(self) -> torch.Tensor:
        """The maximizer, shape ``(1, *shape)``."""
        return self.center.reshape(1, *self.shape)

    def evaluate_true(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(x.shape[0], -1)
        sq = ((flat - self.center.to(device=x.device, dtype=flat.dtype)) ** 2).sum(1)
        return self.height * torch.exp(-sq / (2 * self.width**2))


class RingsOracle(BumpOracle):
    """The rings benchmark's reward: a bump at ``(3, 3)`` of width 1.5 (maximum 1, off the rings)."""

    name = "rings-bump"

    def __init__(
        self, *, center: Sequence[float] = (3.0, 3.0), width: float = 1.5, **kwargs: Any
    ) -> None:
        super().__init__(center, width=width, shape=(2,), **kwargs)
