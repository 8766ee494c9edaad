"""Consistency model for the prior's deterministic DDIM ODE: one call maps x_t to its end point x_0.

Parametrization (v-style, well conditioned at every noise level, exact boundary):

    f_φ(x_t, t) = √ᾱ_t · x_t − √(1−ᾱ_t) · F_φ(x_t, t)

so f(x, t) = x where ᾱ_t = 1, and at high noise f is a direct x_0 prediction.

Distillation. The consistency target of a state x_t is the end point of the
teacher's ODE trajectory through it. The teacher here is the prior's own
K-step deterministic DDIM sampler (η = 0), so we generate whole teacher
trajectories x_T … x_0 and regress f_φ(x_{t_j}, t_j) on their end point x_0 for
every state j. This is the fixed point that bootstrapped consistency
distillation (Song et al., 2023) converges to, reached without its EMA
target network; it needs K teacher calls per trajectory, which is cheap for the
small priors this package ships.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from sqdf_bbo.diffusion.io import load_module, register_network, save_module
from sqdf_bbo.diffusion.networks import call_denoiser, expand_like
from sqdf_bbo.progress import progress_bar

if TYPE_CHECKING:
    import pandas as pd

    from sqdf_bbo.diffusion.prior import DiffusionPrior

__all__ = ["ConsistencyModel", "distill_consistency", "consistency_error_report"]


@register_network
class ConsistencyModel(nn.Module):
    """f_φ(x_t, t) → x̂_0, shapes ``(n, *shape)`` → ``(n, *shape)``; ``t`` integer ``(n,)``.

    Args:
        net: a network under the denoiser call contract (its output is F_φ).
        alphas_cumprod: the prior's ᾱ over train timesteps, shape ``(T,)``.
    """

    def __init__(self, net: nn.Module, alphas_cumprod: torch.Tensor | list[float]) -> None:
        super().__init__()
        self.net = net
        self.register_buffer(
            "alphas_cumprod", torch.as_tensor(alphas_cumprod, dtype=torch.float32).clone()
        )

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = t.reshape(-1).expand(x.shape[0]).long()
        ab = expand_like(self.alphas_cumprod[t], x)
        return ab.sqrt() * x - (1 - ab).sqrt() * call_denoiser(self.net, x, t)

    # serialization hooks used by sqdf_bbo.diffusion.io
    def save_parts(self, directory: Path) -> dict[str, Any]:
        return {
            "alphas_cumprod": self.alphas_cumprod.tolist(),
            "net": save_module(self.net, Path(directory) / "net"),
        }

    @classmethod
    def load_parts(cls, config: dict[str, Any], directory: Path) -> ConsistencyModel:
        return cls(load_module(config["net"], Path(directory) / "net"), config["alphas_cumprod"])


def _teacher_trajectories(prior: DiffusionPrior, n: int, seed: int) -> torch.Tensor:
    """Deterministic DDIM (η = 0) trajectories of the prior, shape ``(n, K+1, *shape)``."""
    gen = torch.Generator(device=prior.device).manual_seed(seed)
    out = prior.with_settings(eta=0.0).sample(n, gen, return_trajectory=True)
    assert out.trajectory is not None
    return out.trajectory


def distill_consistency(
    prior: DiffusionPrior,
    *,
    steps: int = 2000,
    batch_size: int = 128,
    lr: float = 3e-4,
    pool_size: int = 2048,
    seed: int = 0,
    net: nn.Module | None = None,
    progress: bool = True,
) -> ConsistencyModel:
    """Distill a consistency model from ``prior``'s deterministic DDIM ODE.

    Args:
        prior: the teacher; its K inference steps define the ODE grid.
        steps: optimizer steps.
        batch_size: (trajectory, state) pairs per step.
        lr: AdamW learning rate (cosine-decayed).
        pool_size: number of teacher trajectories generated up front.
        seed: seeds the teacher noise and the pair sampling.
        net: the F_φ network; default a copy of the prior's denoiser.
        progress: show a progress bar.

    Returns:
        A frozen :class:`ConsistencyModel` (attach it with ``prior.consistency = cm``).
    """
    if steps < 1 or batch_size < 1 or pool_size < 1:
        raise ValueError("steps, batch_size and pool_size must be >= 1")
    K = prior.num_inference_steps
    # 1. Teacher trajectories and their end points x_0.
    traj = _teacher_trajectories(prior, pool_size, seed)
    target = traj[:, K]
    net = copy.deepcopy(prior.denoiser) if net is None else net
    net.requires_grad_(True)  # the teacher may be frozen; its copy is trained
    cm = ConsistencyModel(net, prior.scheduler.alphas_cumprod).to(prior.device)
    cm.train()
    opt = torch.optim.AdamW(cm.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    gen = torch.Generator().manual_seed(seed + 1)
    timesteps = prior.timesteps.to(prior.device)
    bar = progress_bar(
        range(steps), progress=progress, desc="consistency distillation", leave=False
    )
    for _ in bar:
        # 2. Random (trajectory, state) pairs with j < K; target = that trajectory's x_0.
        idx = torch.randint(pool_size, (batch_size,), generator=gen)
        j = torch.randint(K, (batch_size,), generator=gen)
        x = traj[idx, j]
        pred = cm(x, timesteps[j.to(prior.device)])
        loss = (pred - target[idx]).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.4f}")
    cm.eval()
    cm.requires_grad_(False)
    return cm


def consistency_error_report(
    prior: DiffusionPrior, *, n: int = 256, seed: int = 12345, buckets: int = 4
) -> pd.DataFrame:
    """Per-timestep-bucket MSE of Tweedie and of the consistency model against the teacher's ODE end point.

    Fresh deterministic DDIM trajectories (seed ``seed``) are drawn; at every
    state j < K both one-call x0 estimates are compared with the trajectory's
    end point. Returns a DataFrame with columns ``t_low, t_high, tweedie_mse,
    consistency_mse`` (MSE per dimension), highest noise last.
    """
    import pandas as pd  # lazy: slow to import, needed only for this report

    K = prior.num_inference_steps
    traj = _teacher_trajectories(prior, n, seed)
    end = traj[:, K]
    rows = []
    with torch.no_grad():
        for j in range(K):
            x = traj[:, j]
            tw = (prior.tweedie(x, j) - end).pow(2).mean().item()
            cm = (prior.consistency_x0(x, j) - end).pow(2).mean().item()
            rows.append((int(prior.timesteps[j]), tw, cm))
    df = pd.DataFrame(rows, columns=["t", "tweedie_mse", "consistency_mse"])
    T = prior.scheduler.config.num_train_timesteps
    edges = [round(T * b / buckets) for b in range(buckets + 1)]
    df["bucket"] = pd.cut(df["t"], bins=edges, right=False, labels=False, include_lowest=True)
    out = df.groupby("bucket")[["tweedie_mse", "consistency_mse"]].mean().reset_index()
    out["t_low"] = [edges[int(b)] for b in out["bucket"]]
    out["t_high"] = [edges[int(b) + 1] for b in out["bucket"]]
    return out[["t_low", "t_high", "tweedie_mse", "consistency_mse"]]
