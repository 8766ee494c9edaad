"""The chain KL of a fine-tuned sampler p_θ to a reference sampler p' (both K-step
DDIM chains with the same schedule and η):

    KL(p_θ(x_{T:0}) ‖ p'(x_{T:0})) = E_{p_θ} Σ_i ‖μ_θ(x_i) − μ'(x_i)‖² / (2 σ_i²)

(the exact Gaussian step KLs, summed over dimensions and steps, averaged over
trajectories drawn from p_θ). Steps with σ_i = 0 (the last DDIM step when
ᾱ_prev = 1, or every step when η = 0) are deterministic maps whose KL is not
finite; they are left out of the sum, and ``chain_kl`` reports how many steps
were counted.

It also holds the KL conventions of the fine-tuners: :func:`gaussian_step_kl`, the exact
step KL that SQDF weighs with α (SEIKO's loss and :func:`chain_kl` compute the same
‖μ − μ'‖² / (2σ²) inline, with σ a Python float, so that their numbers stay as they were),
and :func:`official_alpha_to_ours`, the one conversion of the official codes' KL weights to α.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from sqdf_bbo.diffusion.prior import DiffusionPrior

__all__ = [
    "ChainKL",
    "chain_kl",
    "gaussian_step_kl",
    "OFFICIAL_KL_SCALES",
    "official_alpha_to_ours",
    "ours_alpha_to_official",
]

OFFICIAL_KL_SCALES: dict[str, float] = {"sqdf": 2.0, "seiko": 1.0}
"""α / (α_official / D) per official code: SQDF's official KL weighs ``mean_d Δ²/σ²`` (no ½,
hence 2), SEIKO's ``mean_d Δ²/(2σ²)`` (with the ½, hence 1)."""


def _kl_scale(convention: str, dim: int) -> float:
    if convention not in OFFICIAL_KL_SCALES:
        raise ValueError(
            f"unknown KL convention {convention!r}; accepted values: "
            + ", ".join(OFFICIAL_KL_SCALES)
        )
    if int(dim) < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    return OFFICIAL_KL_SCALES[convention]


def official_alpha_to_ours(alpha_official: float, dim: int, convention: str = "sqdf") -> float:
    """α in our convention (the exact KL ``Σ_d (μ_θ−μ_ref)²/(2σ²)``) from an official code's α.

    The official codes average their KL over the D = prod(design shape) dimensions: SQDF's
    weighs ``mean_d (μ_θ−μ_ref)²/σ²`` (no ½), so ``α = α_official · 2 / D``; SEIKO's weighs
    ``mean_d (μ_θ−μ_ref)²/(2σ²)`` (``kl_weight / loss_coeff``), so ``α = α_official · 1 / D``.
    """
    return float(alpha_official) * _kl_scale(convention, dim) / int(dim)


def ours_alpha_to_official(alpha: float, dim: int, convention: str = "sqdf") -> float:
    """Inverse of :func:`official_alpha_to_ours`: ``α_official = α · D / scale``."""
    return float(alpha) * int(dim) / _kl_scale(convention, dim)


def gaussian_step_kl(mean: torch.Tensor, ref_mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """KL( N(mean, var·I) ‖ N(ref_mean, var·I) ) = ‖mean − ref_mean‖² / (2 var), summed over dims.

    Args:
        mean, ref_mean: shape ``(n, *shape)``.
        var: per-sample variance, shape ``(n, 1, …, 1)`` or ``(n,)``; must be > 0.

    Returns:
        Shape ``(n,)``.
    """
    sq = (mean - ref_mean).pow(2).flatten(1).sum(1)
    return sq / (2.0 * var.reshape(var.shape[0], -1)[:, 0])


@dataclass(frozen=True)
class ChainKL:
    """Estimated chain KL: mean over trajectories, its standard error, steps counted."""

    kl: float
    stderr: float
    steps_counted: int


@torch.no_grad()
def chain_kl(
    policy_denoiser: torch.nn.Module,
    reference: DiffusionPrior,
    trajectories: torch.Tensor,
    *,
    sigma_floor: float = 1e-6,
    batch_size: int = 512,
    cond: torch.Tensor | None = None,
) -> ChainKL:
    """Exact-Gaussian chain KL of a fine-tuned sampler to a reference prior.

    Args:
        policy_denoiser: the fine-tuned ε-network (μ_θ is computed with the
            reference's schedule, η and K).
        reference: the reference ``DiffusionPrior`` (p').
        trajectories: ``(n, K+1, *shape)`` states x_T … x_0 drawn from the POLICY.
        sigma_floor: steps with σ_i ≤ this are deterministic and not counted.
        batch_size: trajectories per network call.
        cond: the trajectories' network conditions ``(n, …)`` for a conditional reference:
            the KL is then to the conditional (guided) reference p'(·|x, c).

    Returns:
        :class:`ChainKL` with KL = mean_n Σ_i ‖μ_θ − μ'‖² / (2σ_i²) in nats.
    """
    K = reference.num_inference_steps
    if trajectories.ndim != len(reference.shape) + 2 or trajectories.shape[1] != K + 1:
        raise ValueError(
            f"trajectories must have shape (n, {K + 1}, {', '.join(map(str, reference.shape))}); "
            f"got {tuple(trajectories.shape)}"
        )
    n = trajectories.shape[0]
    total = torch.zeros(n, dtype=torch.float64)
    counted = 0
    for i in range(K):
        sigma = float(reference.sigmas[i])
        if sigma <= sigma_floor:
            continue
        counted += 1
        for s in range(0, n, batch_size):
            x = trajectories[s : s + batch_size, i]
            c = None if cond is None else cond[s : s + batch_size]
            mu_p = reference.step_mean(x, i, denoiser=policy_denoiser, cond=c).mean
            mu_r = reference.step_mean(x, i, cond=c).mean
            d2 = (mu_p - mu_r).to(torch.float64).pow(2).reshape(x.shape[0], -1).sum(1)
            total[s : s + batch_size] += (d2 / (2.0 * sigma**2)).cpu()
    se = float(total.std(unbiased=True) / math.sqrt(n)) if n > 1 else float("nan")
    return ChainKL(float(total.mean()), se, counted)
