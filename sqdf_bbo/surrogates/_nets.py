"""Small MLPs trained as H independent heads at once (stacked weights, batched matmuls).

Used by the ``ensemble`` surrogate (H bootstrap heads) and the ``ucb``
surrogate (H = 1, penultimate features).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from sqdf_bbo.config import Range
from sqdf_bbo.progress import progress_bar

__all__ = ["HeadsMLP", "train_heads", "fit_heads", "HEAD_LIMITS"]

#: The sane ranges of the settings every config of MLP heads has (``LIMITS`` entries).
HEAD_LIMITS: dict[str, Range] = {
    "n_heads": Range(1, 1024),
    "hidden": Range(1, 65_536),
    "depth": Range(1, 64),
    "steps": Range(1, 1_000_000),
    "batch_size": Range(1, 1_000_000),
    "lr": Range(0, 1, low_open=True),
    "weight_decay": Range(0, 100),
}


class HeadsMLP(nn.Module):
    """``H`` MLPs with the same architecture and independent weights.

    Each head: ``depth`` hidden layers of width ``hidden`` with SiLU, then a
    linear output. ``forward(z (n, F)) -> (H, n)``; ``features(z) -> (H, n, hidden)``
    is the last hidden layer (the penultimate features φ).
    """

    def __init__(
        self,
        n_heads: int,
        in_features: int,
        hidden: int,
        depth: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.n_heads, self.in_features, self.hidden, self.depth = (
            n_heads,
            in_features,
            hidden,
            depth,
        )
        widths = [in_features] + [hidden] * depth + [1]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(widths[:-1], widths[1:]):
            # same scheme as nn.Linear: U(−1/√fan_in, 1/√fan_in), drawn from our generator
            bound = 1.0 / math.sqrt(fan_in)
            w = torch.rand(
                n_heads, fan_in, fan_out, generator=generator, device=device, dtype=dtype
            )
            b = torch.rand(n_heads, 1, fan_out, generator=generator, device=device, dtype=dtype)
            self.weights.append(nn.Parameter((2 * w - 1) * bound))
            self.biases.append(nn.Parameter((2 * b - 1) * bound))

    def features(self, z: torch.Tensor) -> torch.Tensor:
        """Penultimate features of ``z (n, F)`` (shared) or ``(H, n, F)`` (per head) → ``(H, n, hidden)``."""
        h = z.unsqueeze(0).expand(self.n_heads, -1, -1) if z.ndim == 2 else z
        for w, b in zip(self.weights[:-1], self.biases[:-1]):
            h = torch.nn.functional.silu(torch.baddbmm(b, h, w))
        return h

    def head(self, phi: torch.Tensor) -> torch.Tensor:
        """Output layer on features ``phi (H, n, hidden)`` → ``(H, n)``."""
        return torch.baddbmm(self.biases[-1], phi, self.weights[-1]).squeeze(-1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(z))


def train_heads(
    net: HeadsMLP,
    z: torch.Tensor,
    y: torch.Tensor,
    index: torch.Tensor,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    generator: torch.Generator,
    progress: bool = False,
    loss: str = "mse",
) -> list[float]:
    """Train every head on its own rows of ``(z (n, F), y (n,))`` with AdamW.

    Args:
        index: ``(H, m)`` long rows each head trains on (bootstrap resamples
            for an ensemble; ``arange(n)`` for a single net).
        steps: optimizer steps; cosine learning-rate decay to 0.
        batch_size: rows per head per step (all ``m`` rows if ``m ≤ batch_size``).
        loss: ``"mse"`` (regression) or ``"bce"`` (the heads output logits of 0/1 labels ``y``).

    Returns:
        The training loss (mean over heads) per step.
    """
    n_heads, m = index.shape
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1))
    losses: list[torch.Tensor] = []
    heads = torch.arange(n_heads, device=z.device)[:, None]
    for _ in progress_bar(range(steps), progress=progress, desc="surrogate fit", leave=False):
        if m <= batch_size:
            rows = index
        else:
            cols = torch.randint(m, (n_heads, batch_size), generator=generator, device=index.device)
            rows = index[heads, cols]
        pred = net(z[rows])  # (H, b)
        if loss == "bce":
            value = torch.nn.functional.binary_cross_entropy_with_logits(pred, y[rows])
        else:
            value = ((pred - y[rows]) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()
        sched.step()
        losses.append(value.detach())
    return torch.stack(losses).tolist() if losses else []


def fit_heads(
    config: Any,
    n_heads: int,
    z: torch.Tensor,
    y: torch.Tensor,
    index: torch.Tensor,
    generator: torch.Generator,
    loss: str = "mse",
) -> tuple[HeadsMLP, list[float]]:
    """A frozen :class:`HeadsMLP` of ``n_heads`` heads with ``config``'s ``hidden`` and
    ``depth``, trained by :func:`train_heads` with its ``steps``, ``batch_size``, ``lr``,
    ``weight_decay`` and ``progress`` on the rows ``index (H, m)`` of ``(z (n, F), y (n,))``
    with ``loss`` (``"mse"`` or ``"bce"``).

    Returns the network (no gradients, eval mode) and its training losses.
    """
    net = HeadsMLP(n_heads, z.shape[1], config.hidden, config.depth, generator, z.device, z.dtype)
    losses = train_heads(
        net,
        z,
        y,
        index,
        steps=config.steps,
        batch_size=config.batch_size,
        lr=config.lr,
        weight_decay=config.weight_decay,
        generator=generator,
        progress=config.progress,
        loss=loss,
    )
    return net.requires_grad_(False).eval(), losses
