"""The chain KL of a fine-tuned sampler p_θ to a reference sampler p' (both K-step
DDIM chains with the same schedule and η):

    KL(p_θ(x_{T:0}) ‖ p'(x_{T:0})) = E_{p_θ} Σ_i ‖μ_θ(x_i) − μ'(x_i)‖² / (2 σ_i²)

(the exact Gaussian step KLs, summed over dimensions and steps, averaged over
trajectories drawn from p_θ). Steps with σ_i = 0 (the last DDIM step when
ᾱ_prev = 1, or every step when η = 0) are deterministic maps whose KL is not
finite; they are left out of the sum, and ``chain_kl`` reports how many steps
were counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from sqdf_bbo.diffusion.prior import DiffusionPrior

__all__ = ["ChainKL", "chain_kl"]


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
) -> ChainKL:
    """Exact-Gaussian chain KL of a fine-tuned sampler to a reference prior.

    Args:
        policy_denoiser: the fine-tuned ε-network (μ_θ is computed with the
            reference's schedule, η and K).
        reference: the reference ``DiffusionPrior`` (p').
        trajectories: ``(n, K+1, *shape)`` states x_T … x_0 drawn from the POLICY.
        sigma_floor: steps with σ_i ≤ this are deterministic and not counted.
        batch_size: trajectories per network call.

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
            mu_p = reference.step_mean(x, i, denoiser=policy_denoiser).mean
            mu_r = reference.step_mean(x, i).mean
            d2 = (mu_p - mu_r).to(torch.float64).pow(2).reshape(x.shape[0], -1).sum(1)
            total[s : s + batch_size] += (d2 / (2.0 * sigma**2)).cpu()
    se = float(total.std(unbiased=True) / math.sqrt(n)) if n > 1 else float("nan")
    return ChainKL(float(total.mean()), se, counted)
