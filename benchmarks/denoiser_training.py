"""The DDPM training loop every shipped prior uses (``benchmarks/train_priors.py``,
``benchmarks/sequence_priors.py``): AdamW with warm-up and cosine decay, an EMA of the weights."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from sqdf_bbo.config import check_fields
from sqdf_bbo.diffusion.networks import call_denoiser
from sqdf_bbo.progress import progress_bar

__all__ = ["DenoiserTrainConfig", "train_denoiser"]


@dataclass(frozen=True)
class DenoiserTrainConfig:
    """DDPM ε-loss training settings.

    Attributes:
        steps: optimizer steps.
        batch_size: examples per step.
        lr: AdamW learning rate (linear warm-up over 2% of steps, then cosine to 0).
        weight_decay: AdamW weight decay.
        ema_decay: decay of the exponential moving average of the weights (the
            EMA weights are the ones shipped); 0 disables it.
        seed: seeds initialization, data order, t and ε.
    """

    steps: int = 4000
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.0
    ema_decay: float = 0.999
    seed: int = 0

    def __post_init__(self) -> None:
        check_fields(self)
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(
                f"steps and batch_size must be >= 1, got {self.steps}, {self.batch_size}"
            )
        if not self.lr > 0 or self.weight_decay < 0 or not 0 <= self.ema_decay < 1:
            raise ValueError(
                "need lr > 0, weight_decay >= 0 and 0 <= ema_decay < 1; "
                f"got {self.lr}, {self.weight_decay}, {self.ema_decay}"
            )


def train_denoiser(
    net: nn.Module,
    data: Callable[[int, torch.Generator], torch.Tensor],
    scheduler,
    cfg: DenoiserTrainConfig,
    *,
    progress: bool = True,
    desc: str = "denoiser",
    loss_fn: Callable[..., torch.Tensor] | None = None,
    timesteps: torch.Tensor | None = None,
) -> tuple[nn.Module, float]:
    """Fit ``net`` with the DDPM ε-loss; returns (EMA copy of ``net``, mean loss of the last 5% of steps).

    ``data(batch_size, generator)`` returns clean examples x_0, shape ``(b, *shape)``.
    Loss: ‖ε − ε_θ(√ᾱ_t x_0 + √(1−ᾱ_t) ε, t)‖², t ~ U{0, …, T−1}; ``loss_fn(net, x_t, t, x_0,
    ε)`` replaces it (the sequence prior's token cross-entropy); ``timesteps`` ``(m,)``
    restricts t to those values (uniform over them), e.g. the sampler's own K timesteps.
    """
    device = next(net.parameters()).device
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    ab_all = scheduler.alphas_cumprod.float().to(device)
    T = len(ab_all)
    ema = copy.deepcopy(net).requires_grad_(False)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    warm = max(1, cfg.steps // 50)
    sched = torch.optim.lr_scheduler.SequentialLR(
        opt,
        [
            torch.optim.lr_scheduler.LinearLR(opt, 0.01, 1.0, total_iters=warm),
            torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, cfg.steps - warm)),
        ],
        milestones=[warm],
    )
    tail: list[float] = []
    net.train()
    bar = progress_bar(range(cfg.steps), progress=progress, desc=desc, leave=False)
    for step in bar:
        # 1. x_0 from the data, t uniform, ε standard normal.
        x0 = data(cfg.batch_size, gen)
        if timesteps is None:
            t = torch.randint(T, (x0.shape[0],), generator=gen)
        else:
            t = timesteps[torch.randint(len(timesteps), (x0.shape[0],), generator=gen)]
        eps = torch.randn(x0.shape, generator=gen)
        x0, t, eps = x0.to(device), t.to(device), eps.to(device)
        ab = ab_all[t].reshape(-1, *([1] * (x0.ndim - 1)))
        # 2. x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε, loss on ε.
        xt = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
        if loss_fn is None:
            loss = (call_denoiser(net, xt, t) - eps).pow(2).mean()
        else:
            loss = loss_fn(net, xt, t, x0, eps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        sched.step()
        # 3. EMA of the weights.
        with torch.no_grad():
            d = cfg.ema_decay if step > warm else 0.0
            for pe, p in zip(ema.parameters(), net.parameters()):
                pe.mul_(d).add_(p.detach(), alpha=1 - d)
            for be, b in zip(ema.buffers(), net.buffers()):
                be.copy_(b)
        if step >= cfg.steps * 0.95:
            tail.append(loss.item())
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}")
    ema.eval()
    return ema, sum(tail) / max(1, len(tail))
