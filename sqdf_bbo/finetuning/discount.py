"""The discount γ of SQDF's soft-Q estimate for a chain of K denoising steps (issue 19).

SQDF weights the reward of transition i (k = K−1−i steps still to go after it) by γ^k. The
paper and the official code use K = 50 and γ = 0.9, so the same γ means something else at
another K: the first transition gets γ^(K−1) of the weight (0.9⁴⁹ ≈ 0.006 at K = 50,
0.9¹⁹ ≈ 0.14 at K = 20). A **γ rule** maps the official constant γ to the γ used at K:

    constant   γ_K = γ                     (γ as given, whatever K)
    per50      γ_K = γ^(50/K)              (the official weight profile over the chain)

With ``per50`` the weight of the transition at chain position u = k/K (the fraction of the
chain still to go) is γ_K^(uK) = γ^(50u) for every K: the profile of the official chain,
sampled at K points. At K = 50 both rules give γ itself.

Notation: K steps, transition i = 0 … K−1 (noisiest first), k = K−1−i, weight w_i = γ^k.
"""

from __future__ import annotations

import torch

__all__ = [
    "GAMMA_RULES",
    "REFERENCE_STEPS",
    "discount_for_steps",
    "discount_weights",
    "first_half_mass",
]

GAMMA_RULES: tuple[str, ...] = ("constant", "per50")
"""Accepted ``gamma_rule`` values (see the module docstring)."""

REFERENCE_STEPS = 50
"""K of the paper and the official code, for which their γ = 0.9 was chosen."""


def discount_for_steps(gamma: float, num_steps: int, rule: str = "constant") -> float:
    """γ_K: the discount used with ``num_steps`` = K denoising steps under ``rule``.

    ``constant``: γ; ``per50``: γ^(50/K) (so that γ_K^k = γ^(50·k/K)).
    """
    if rule not in GAMMA_RULES:
        raise ValueError(
            f"gamma_rule {rule!r} is unknown; accepted values: {', '.join(GAMMA_RULES)}"
        )
    if int(num_steps) < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    if not 0.0 < float(gamma) <= 1.0:
        raise ValueError(f"gamma must lie in (0, 1], got {gamma}")
    if rule == "constant":
        return float(gamma)
    return float(gamma) ** (REFERENCE_STEPS / int(num_steps))


def discount_weights(gamma: float, num_steps: int) -> torch.Tensor:
    """w_i = γ^(K−1−i) for transitions i = 0 … K−1, shape ``(K,)`` float64 (noisiest first)."""
    k = torch.arange(int(num_steps) - 1, -1, -1, dtype=torch.float64)
    return torch.as_tensor(float(gamma), dtype=torch.float64) ** k


def first_half_mass(gamma: float, num_steps: int) -> float:
    """Share of the total weight Σ_i w_i on the first ⌊K/2⌋ transitions (the noisy half)."""
    w = discount_weights(gamma, num_steps)
    return float(w[: int(num_steps) // 2].sum() / w.sum())
