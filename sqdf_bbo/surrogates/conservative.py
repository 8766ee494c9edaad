"""A pessimistic ensemble bound for offline optimization (docs/offline.md).

With an archive and no further queries, a fine-tuner that maximizes the optimistic value
max_h f_h(x) is rewarded for going where the heads disagree, i.e. away from the data. The
conservative value penalizes that disagreement instead:

    μ(x) = (1/H) Σ_h f_h(x),   σ(x)² = (1/H) Σ_h (f_h(x) − μ(x))²,
    v_κ(x) = μ(x) − κ·σ(x)                                   (κ ≥ 0)

κ = 0 is the plain ensemble mean. σ is the spread of the H heads of an
:class:`~sqdf_bbo.surrogates.ensemble.EnsembleSurrogate` (population std of the uniform
mixture of heads), in the data's units; it is differentiable in ``x``.
"""

from __future__ import annotations

import torch

from sqdf_bbo.surrogates.base import Surrogate

__all__ = [
    "CONSERVATIVE_SURROGATES",
    "check_conservative",
    "mean_and_spread",
    "conservative_value",
]

#: Surrogates whose spread the conservative value can use (they expose ``heads``).
CONSERVATIVE_SURROGATES: tuple[str, ...] = ("ensemble",)


def check_conservative(objective: str, surrogate: str) -> None:
    """``ValueError`` when an optimizer config asks for the conservative objective with a
    surrogate (registry name) that has no heads."""
    if objective == "conservative" and surrogate not in CONSERVATIVE_SURROGATES:
        raise ValueError(
            f"surrogate_objective 'conservative' needs the spread of an ensemble's heads; "
            f"surrogate {surrogate!r} has none (use surrogate={CONSERVATIVE_SURROGATES[0]!r})"
        )


def mean_and_spread(surrogate: Surrogate, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(μ(x), σ(x))``, each ``(n,)``, of designs ``x (n, *shape)`` over the surrogate's heads.

    Raises ``TypeError`` for a surrogate without heads (only ``ensemble`` has them).
    """
    heads = getattr(surrogate, "heads", None)
    if heads is None:
        raise TypeError(
            f"the conservative value needs a surrogate with heads "
            f"({', '.join(CONSERVATIVE_SURROGATES)}), got {type(surrogate).__name__}"
        )
    f = heads(x)  # (H, n)
    mean = f.mean(0)
    return mean, (f - mean).pow(2).mean(0).sqrt()


def conservative_value(surrogate: Surrogate, x: torch.Tensor, kappa: float) -> torch.Tensor:
    """``v_κ(x) = μ(x) − κ·σ(x)`` ``(n,)`` of designs ``x (n, *shape)``."""
    mean, spread = mean_and_spread(surrogate, x)
    return mean if kappa == 0 else mean - float(kappa) * spread
