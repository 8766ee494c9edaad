"""Step 2 of ``ask`` with known constraints: draw until n designs satisfy them.

:func:`propose_feasible` calls the algorithm's ``_propose`` again for the rows that violate
a constraint, oversampling by the acceptance rate seen so far, until n designs are feasible
or ``max_draws_factor · n`` designs were drawn. A diffusion sampler resampled this way draws
from p_θ(x) restricted to the feasible set, which is the constrained target itself
(docs/constraints.md). Short of n after the budget: a shorter batch and a ``RuntimeWarning``
saying how rare feasible designs were; none at all: ``RuntimeError`` (nothing is recorded).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import torch

from sqdf_bbo.constraints import Constraints
from sqdf_bbo.optimizers.batch import Proposal

__all__ = ["propose_feasible"]

_OVERSAMPLE = 1.2  # margin on the measured acceptance rate when drawing again


def propose_feasible(
    propose: Callable[[int], tuple[torch.Tensor, torch.Tensor | None]],
    n: int,
    constraints: Constraints,
    name: str,
    redraw: bool = True,
) -> tuple[Proposal, int]:
    """Up to ``n`` feasible designs ``(m, *shape)`` (m ≤ n) with their trajectories, and the
    number of designs drawn to find them (the acceptance rate is m / drawn).

    Args:
        propose: ``k -> (x (k, *shape), trajectories (k, K+1, *shape) | None)``, checked
            designs of the algorithm (the base's ``_propose`` and input checks).
        n: designs wanted.
        constraints: the known constraints.
        name: the algorithm's name, for messages.
        redraw: whether ``propose`` may be called again (``False`` for algorithms that make
            their own proposals feasible and number them as they draw, e.g. CMA-ES: an
            infeasible row from them is an error).
    """
    budget = constraints.max_draws_factor * n
    xs: list[torch.Tensor] = []
    trajs: list[torch.Tensor | None] = []
    drawn = kept = 0
    while kept < n and drawn < budget:
        # 1. How many to draw: the missing rows, scaled up by the acceptance so far.
        want = n - kept
        if drawn:
            rate = max(kept / drawn, 1.0 / constraints.max_draws_factor)
            want = math.ceil(_OVERSAMPLE * want / rate)
        k = min(want, budget - drawn)
        x, traj = propose(k)
        drawn += k
        # 2. Keep the feasible rows (at most the missing ones, in the order drawn).
        ok = constraints.feasible(x).nonzero().flatten()[: n - kept].to(x.device)
        if not redraw and ok.numel() < k:
            bad = constraints.violations(x)
            raise RuntimeError(
                f"{name}._propose returned {len(bad)} design(s) violating the known "
                f"constraints (e.g. row {min(bad)}: {bad[min(bad)]})"
            )
        xs.append(x[ok])
        trajs.append(None if traj is None else traj[ok.to(traj.device)])
        kept += int(ok.numel())
        if not redraw:
            break
    if kept == 0:
        raise RuntimeError(
            f"{name}: none of {drawn} drawn designs satisfies the known constraints "
            f"{constraints.names}; the sampler cannot reach the feasible set (check the "
            "constraints, or raise Constraints(..., max_draws_factor=...))"
        )
    if kept < n:
        warnings.warn(
            f"{name}: only {kept} of {n} designs satisfy the known constraints "
            f"{constraints.names} after drawing {drawn} (acceptance {kept / drawn:.1%}); "
            "this batch is shorter",
            RuntimeWarning,
            stacklevel=3,
        )
    if any(t is None for t in trajs) and not all(t is None for t in trajs):
        raise RuntimeError(f"{name}._propose returned trajectories for some draws only")
    x = torch.cat(xs)
    traj = None if trajs[0] is None else torch.cat([t for t in trajs if t is not None])
    return Proposal(x, traj), drawn
