"""Known constraints: differentiable functions of the design, feasible where c(x) ≥ 0.

A user who can state a constraint exactly (an airfoil's thickness is a closed-form function
of its Kulfan vector; a sequence must avoid a motif; a formulation must sum to one) gives it
to any optimizer as ``constraints=[fn, ...]``. Two things then hold:

1. ``ask`` never returns a design that violates one: the base resamples
   (:meth:`~sqdf_bbo.optimizers.base.Optimizer.ask`, at most ``max_draws_factor`` × n
   designs drawn per ask; a shorter batch and a warning when the sampler cannot satisfy them).
2. The fine-tuners see them in their reward, as a smooth log-barrier (docs/constraints.md):

       r̃(x) = r(x) + α · Σ_j log σ( c_j(x) / τ_j )

   so that SQDF's KL-regularized target p*(x) ∝ p(x) · exp(r̃(x)/α) becomes
   p(x) · exp(r(x)/α) · Π_j σ(c_j(x)/τ_j): the prior restricted (softly, with temperature
   τ_j in c_j's own units) to the feasible set, then tilted. As τ → 0 the factor tends to
   the indicator 1[x ∈ F]; α in front keeps the feasible part of the target independent
   of α. GP-BO adds the same barrier to its acquisition function, CMA-ES resamples (pycma's
   way of handling known constraints).

Notation: x designs ``(n, *shape)``; c(x) the margins ``(n, m)`` of all m scalar constraints;
τ ``(m,)`` their temperatures.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["Constraint", "Constraints", "as_constraints"]

ConstraintFn = Callable[[torch.Tensor], torch.Tensor]
#: τ_j of a constraint without its own: this fraction of c_j's spread on reference designs.
DEFAULT_TAU_FRACTION = 0.1


@dataclass(frozen=True)
class Constraint:
    """One known constraint (or a group of them).

    Attributes:
        fn: ``c(x (n, *shape)) -> (n,)`` or ``(n, m)`` torch margins, ≥ 0 where feasible,
            differentiable in ``x`` for the fine-tuners (a non-differentiable one still keeps
            ``ask`` feasible, by resampling).
        name: what error messages and warnings call it (default: the function's name).
        tau: temperature of its smooth barrier, in the units of c (``None``: calibrated,
            :data:`DEFAULT_TAU_FRACTION` × the spread of c on the designs told so far).
    """

    fn: ConstraintFn
    name: str = ""
    tau: float | None = None

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise TypeError(f"a constraint must be callable, got {type(self.fn).__name__}")
        if not isinstance(self.name, str):
            raise TypeError(f"Constraint.name must be a string, got {type(self.name).__name__}")
        if not self.name:
            object.__setattr__(self, "name", getattr(self.fn, "__name__", "constraint"))
        if self.tau is not None and not (math.isfinite(self.tau) and self.tau > 0):
            raise ValueError(f"Constraint.tau must be finite and > 0 or None, got {self.tau}")


class Constraints:
    """The known constraints of an optimizer: margins, feasibility and the log-barrier.

    Args:
        constraints: callables or :class:`Constraint` objects (at least one; names unique).
        max_draws_factor: an ``ask(n)`` draws at most ``max_draws_factor · n`` designs
            while looking for n feasible ones.
    """

    def __init__(
        self, constraints: Sequence[ConstraintFn | Constraint], max_draws_factor: int = 20
    ) -> None:
        if callable(constraints) or isinstance(constraints, Constraint):
            constraints = [constraints]  # type: ignore[list-item]
        items = [c if isinstance(c, Constraint) else Constraint(c) for c in constraints]
        if not items:
            raise ValueError("constraints must hold at least one constraint (or be None)")
        names = [c.name for c in items]
        if len(set(names)) != len(names):
            raise ValueError(
                f"constraint names must be unique, got {names}; "
                "name them with Constraint(fn, name=...)"
            )
        if not isinstance(max_draws_factor, int) or not 1 <= max_draws_factor <= 10_000:
            raise ValueError(
                f"max_draws_factor must be an int in [1, 10000], got {max_draws_factor}"
            )
        self.items: tuple[Constraint, ...] = tuple(items)
        self.max_draws_factor = max_draws_factor

    @property
    def names(self) -> list[str]:
        """The constraints' names, in order (what a study records)."""
        return [c.name for c in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        return f"Constraints({self.names})"

    # ------------------------------------------------------------------ margins
    def _margin_blocks(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each constraint's margins as an ``(n, m_j)`` block, checked."""
        blocks = []
        for c in self.items:
            out = c.fn(x)
            if not isinstance(out, torch.Tensor):
                raise TypeError(
                    f"constraint {c.name!r} must return a torch.Tensor, got {type(out).__name__}"
                )
            if out.ndim == 1:
                out = out[:, None]
            if out.ndim != 2 or out.shape[0] != x.shape[0]:
                raise ValueError(
                    f"constraint {c.name!r} must map {x.shape[0]} designs to margins of shape "
                    f"({x.shape[0]},) or ({x.shape[0]}, m), got {tuple(out.shape)}"
                )
            blocks.append(out if out.is_floating_point() else out.double())
        return blocks

    def margins(self, x: torch.Tensor) -> torch.Tensor:
        """c(x): margins ``(n, m)`` of designs ``x (n, *shape)`` (≥ 0 feasible); differentiable."""
        return torch.cat(self._margin_blocks(x), dim=1)

    def feasible(self, x: torch.Tensor) -> torch.Tensor:
        """Bool ``(n,)``: every margin finite and ≥ 0."""
        with torch.no_grad():
            c = self.margins(x)
        return (torch.isfinite(c) & (c >= 0)).all(1)

    def violations(self, x: torch.Tensor) -> dict[int, str]:
        """``{row: reason}`` of the infeasible designs (the first violated constraint)."""
        with torch.no_grad():
            blocks = self._margin_blocks(x)
        out: dict[int, str] = {}
        for c, block in zip(self.items, blocks):
            bad = ~(torch.isfinite(block) & (block >= 0)).all(1)
            for r in bad.nonzero().flatten().tolist():
                out.setdefault(int(r), f"violates {c.name} (margin {float(block[r].min()):.4g})")
        return out

    # ------------------------------------------------------------------ the barrier
    def temperatures(self, x: torch.Tensor) -> torch.Tensor:
        """τ ``(m,)``: each constraint's own ``tau``, else :data:`DEFAULT_TAU_FRACTION` × the
        standard deviation of its margins on the reference designs ``x (n, *shape)`` (1 when
        there is no spread to measure)."""
        with torch.no_grad():
            blocks = self._margin_blocks(x)
        taus = []
        for c, block in zip(self.items, blocks):
            if c.tau is not None:
                taus.append(torch.full((block.shape[1],), float(c.tau), dtype=torch.float64))
                continue
            finite = torch.where(torch.isfinite(block), block, torch.nan).double()
            spread = _nanstd(finite) if block.shape[0] > 1 else torch.ones(block.shape[1])
            spread = torch.where(spread > 0, spread, torch.ones_like(spread)).double()
            taus.append(DEFAULT_TAU_FRACTION * spread)
        return torch.cat(taus)

    def log_barrier(self, x: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        """Σ_j log σ(c_j(x) / τ_j), ``(n,)``, ≤ 0, differentiable in ``x``."""
        c = self.margins(x)
        t = tau.to(device=c.device, dtype=c.dtype)
        return torch.nn.functional.logsigmoid(c / t).sum(1)


def _nanstd(v: torch.Tensor) -> torch.Tensor:
    """Column standard deviations of ``v (n, m)`` ignoring NaN (0 where < 2 values)."""
    ok = ~torch.isnan(v)
    count = ok.sum(0).clamp_min(1)
    mean = torch.where(ok, v, 0.0).sum(0) / count
    var = torch.where(ok, (v - mean) ** 2, 0.0).sum(0) / count
    return torch.where(ok.sum(0) > 1, var.sqrt(), torch.zeros_like(var))


def as_constraints(value: Any) -> Constraints | None:
    """``None``, a :class:`Constraints`, or callables / :class:`Constraint` objects."""
    if value is None or isinstance(value, Constraints):
        return value
    return Constraints(value)
