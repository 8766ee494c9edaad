"""Small ε-prediction networks that follow the denoiser call contract.

Call contract (shared with diffusers' ``UNet2DModel``): ``model(x, t)`` with
``x`` of shape ``(n, *shape)`` and ``t`` an integer tensor of shape ``(n,)``
returns the predicted noise ε of shape ``(n, *shape)`` (a tensor, or an object
with a ``.sample`` tensor as diffusers models return).

Each class here exposes ``config`` (a JSON-serializable dict) so that
``cls(**config)`` rebuilds it; that is how :class:`~sqdf_bbo.diffusion.prior.DiffusionPrior`
saves and loads them without pickling.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from sqdf_bbo.diffusion.io import register_network

__all__ = [
    "MLPDenoiser",
    "GaussianDenoiser",
    "timestep_embedding",
    "call_denoiser",
    "expand_like",
]


def call_denoiser(
    model: Callable[..., Any],
    x: torch.Tensor,
    t: torch.Tensor,
    conditioning: Any = None,
    cond: torch.Tensor | None = None,
) -> torch.Tensor:
    """Apply a denoiser under the call contract and check its output shape.

    Args:
        model: ``model(x, t)`` returning a tensor or an object with ``.sample``.
        x: shape ``(n, *shape)``.
        t: integer timesteps, shape ``(n,)``.
        conditioning, cond: for a conditional prior, its
            :class:`~sqdf_bbo.diffusion.conditioning.Conditioning` and the network's
            conditions ``(n, …)``: the (guided) output of ``model(x, t, <kwarg>=cond)``.

    Returns:
        The model output, shape ``(n, *shape)``.
    """
    if conditioning is not None and cond is not None:
        out = conditioning.call(model, x, t, cond)
    else:
        out = model(x, t)
    out = getattr(out, "sample", out)
    if not isinstance(out, torch.Tensor) or out.shape != x.shape:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"denoiser output shape {got} differs from its input shape {tuple(x.shape)}; "
            "the denoiser must map x of shape (n, *shape) to a tensor of the same shape"
        )
    return out


def expand_like(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape a per-sample vector ``(n,)`` to ``(n, 1, …, 1)`` matching ``like``."""
    return v.reshape(-1, *([1] * (like.ndim - 1))).to(like.dtype)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps.

    Args:
        t: shape ``(n,)``, integer or float timesteps.
        dim: embedding width (even).

    Returns:
        Tensor of shape ``(n, dim)``.
    """
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half
    )
    args = t.float()[:, None] * freqs[None, :]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


@register_network
class MLPDenoiser(nn.Module):
    """ε-network for flat designs: x of shape ``(n, dim)`` → ε of shape ``(n, dim)``."""

    def __init__(self, dim: int, hidden: int = 128, depth: int = 3, time_dim: int = 32) -> None:
        super().__init__()
        if dim < 1 or hidden < 1 or depth < 1 or time_dim < 2 or time_dim % 2:
            raise ValueError(
                f"MLPDenoiser needs dim >= 1, hidden >= 1, depth >= 1 and an even time_dim >= 2; "
                f"got dim={dim}, hidden={hidden}, depth={depth}, time_dim={time_dim}"
            )
        self.config: dict[str, Any] = {
            "dim": dim,
            "hidden": hidden,
            "depth": depth,
            "time_dim": time_dim,
        }
        layers: list[nn.Module] = []
        width = dim + time_dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        layers.append(nn.Linear(width, dim))
        self.net = nn.Sequential(*layers)
        self.time_dim = time_dim

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x: ``(n, dim)``; t: ``(n,)`` → ε: ``(n, dim)``."""
        emb = timestep_embedding(t.reshape(-1).expand(x.shape[0]), self.time_dim).to(x.dtype)
        return self.net(torch.cat([x, emb], dim=-1))


@register_network
class GaussianDenoiser(nn.Module):
    """Exact ε-predictor for Gaussian data N(m, S), plus a learnable per-timestep bias.

    For ``x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε`` with ``x_0 ~ N(m, S)``:

        E[ε | x_t] = √(1−ᾱ_t) (ᾱ_t S + (1−ᾱ_t) I)⁻¹ (x_t − √ᾱ_t m)

    The bias table ``b[t]`` (zero at construction) is what fine-tuning moves: a
    per-step constant shift of the denoising mean, which is exactly the family
    that contains the KL-optimal policy for a linear reward. Used by the
    analytic-tilt tests and benchmark.

    Args:
        mean: shape ``(D,)``.
        cov: shape ``(D, D)``, symmetric positive definite.
        alphas_cumprod: shape ``(T,)``, the scheduler's ᾱ for train timesteps 0..T-1.
    """

    def __init__(
        self,
        mean: torch.Tensor | list[float],
        cov: torch.Tensor | list[list[float]],
        alphas_cumprod: torch.Tensor | list[float],
    ) -> None:
        super().__init__()
        mean_t = torch.as_tensor(mean, dtype=torch.float64)
        cov_t = torch.as_tensor(cov, dtype=torch.float64)
        ab = torch.as_tensor(alphas_cumprod, dtype=torch.float64)
        dim = mean_t.shape[0]
        if mean_t.ndim != 1 or cov_t.shape != (dim, dim):
            raise ValueError(
                f"mean must be (D,) and cov (D, D); got {tuple(mean_t.shape)}, {tuple(cov_t.shape)}"
            )
        if not torch.allclose(cov_t, cov_t.T) or torch.linalg.eigvalsh(cov_t).min() <= 0:
            raise ValueError("cov must be symmetric positive definite")
        self.config: dict[str, Any] = {
            "mean": mean_t.tolist(),
            "cov": cov_t.tolist(),
            "alphas_cumprod": ab.tolist(),
        }
        eye = torch.eye(dim, dtype=torch.float64)
        # 1. Precompute the linear map A_t = √(1−ᾱ_t)(ᾱ_t S + (1−ᾱ_t) I)⁻¹ and offset A_t √ᾱ_t m.
        mats = torch.stack([torch.linalg.inv(a * cov_t + (1 - a) * eye) for a in ab])
        lin = (1 - ab).sqrt()[:, None, None] * mats
        offset = torch.einsum("tij,j->ti", lin, mean_t) * ab.sqrt()[:, None]
        self.register_buffer("lin", lin.float())
        self.register_buffer("offset", offset.float())
        self.bias = nn.Parameter(torch.zeros(len(ab), dim))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x: ``(n, D)``; t: ``(n,)`` integer → ε: ``(n, D)``."""
        t = t.reshape(-1).expand(x.shape[0]).long()
        eps = torch.einsum("nij,nj->ni", self.lin[t].to(x.dtype), x) - self.offset[t].to(x.dtype)
        return eps + self.bias[t].to(x.dtype)
