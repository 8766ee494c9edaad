"""Networks of the sequence prior: an x0-predicting convolutional denoiser and the one-hot decoder.

A sequence of L tokens over v states is the design ``(L, v)`` of :mod:`sqdf_bbo.sequences`
(one-hot rows in {−1, +1}). The prior is Gaussian diffusion on that relaxation (docs/sequences.md):

* :class:`SequenceDenoiser` predicts x0 (the scheduler's ``prediction_type="sample"``): per
  position a softmax p over the v states, x̂0 = 2p − 1, i.e. the posterior mean of the
  {−1, +1} one-hot row when p is the posterior of the token. Trained with the cross-entropy
  of the token (``benchmarks/train_priors.py``), not the ε-MSE. Convolutions only, no
  position embedding: the natural sequences (a stationary Markov chain) look the same at
  every position, so one network serves any length.
* :class:`OneHotDecoder` is the prior's design map (``DiffusionPrior(decoder=...)``): the hard
  one-hot row of the argmax in the forward pass — exactly the sequence the oracle reads — with
  the gradient of ``clamp(x, −1, 1)`` (straight-through), so a reward on designs stays
  differentiable in the sampler's output.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from sqdf_bbo.diffusion.io import register_network
from sqdf_bbo.diffusion.networks import timestep_embedding

__all__ = ["SequenceDenoiser", "OneHotDecoder"]


class _Block(nn.Module):
    """Residual block: GroupNorm → SiLU → Conv1d, plus a per-channel time shift."""

    def __init__(self, width: int, kernel: int, dilation: int, time_width: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(8, width)
        self.conv = nn.Conv1d(
            width, width, kernel, padding=dilation * (kernel // 2), dilation=dilation
        )
        self.time = nn.Linear(time_width, width)

    def forward(self, h: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        """h: ``(n, width, L)``; temb: ``(n, time_width)`` → ``(n, width, L)``."""
        z = nn.functional.silu(self.norm(h)) + self.time(temb)[:, :, None]
        return h + self.conv(z)


@register_network
class SequenceDenoiser(nn.Module):
    """x0-network for designs ``(n, L, v)``: returns x̂0 = 2·softmax(logits) − 1, shape ``(n, L, v)``.

    Args:
        num_states: v.
        width: channels of the convolutional trunk.
        depth: residual blocks (dilations cycle through 1, 2, 4).
        kernel: convolution width (odd).
        time_dim: width of the sinusoidal timestep embedding.
    """

    def __init__(
        self, num_states: int, width: int = 64, depth: int = 4, kernel: int = 5, time_dim: int = 64
    ) -> None:
        super().__init__()
        if num_states < 2 or width < 8 or width % 8 or depth < 1 or kernel < 1 or kernel % 2 == 0:
            raise ValueError(
                "SequenceDenoiser needs num_states >= 2, width a multiple of 8, depth >= 1 and an "
                f"odd kernel; got {num_states}, {width}, {depth}, {kernel}"
            )
        if time_dim < 2 or time_dim % 2:
            raise ValueError(f"time_dim must be even and >= 2, got {time_dim}")
        self.config: dict[str, Any] = {
            "num_states": num_states,
            "width": width,
            "depth": depth,
            "kernel": kernel,
            "time_dim": time_dim,
        }
        self.time_dim = time_dim
        self.time_mlp = nn.Sequential(
            nn.Linear(time_dim, width), nn.SiLU(), nn.Linear(width, width)
        )
        self.inp = nn.Conv1d(num_states, width, 1)
        self.blocks = nn.ModuleList(
            _Block(width, kernel, (1, 2, 4)[i % 3], width) for i in range(depth)
        )
        self.out_norm = nn.GroupNorm(8, width)
        self.out = nn.Conv1d(width, num_states, 1)

    def logits(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Token logits ``(n, L, v)`` of x0 given x_t = x ``(n, L, v)`` at timesteps t ``(n,)``."""
        temb = self.time_mlp(timestep_embedding(t.reshape(-1).expand(x.shape[0]), self.time_dim))
        h = self.inp(x.transpose(1, 2))
        for block in self.blocks:
            h = block(h, temb.to(h.dtype))
        return self.out(nn.functional.silu(self.out_norm(h))).transpose(1, 2)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x̂0 ``(n, L, v)`` in [−1, 1] of x_t = x ``(n, L, v)`` at timesteps t ``(n,)``."""
        return 2.0 * self.logits(x, t).softmax(dim=-1) - 1.0


@register_network
class OneHotDecoder(nn.Module):
    """Design map of a sequence prior: hard {−1, +1} one-hot of the row-wise argmax, with the
    gradient of ``clamp(x, −1, 1)`` (straight-through). ``(n, L, v) → (n, L, v)``; no weights."""

    def __init__(self, num_states: int) -> None:
        super().__init__()
        if num_states < 2:
            raise ValueError(f"num_states must be >= 2, got {num_states}")
        self.config: dict[str, Any] = {"num_states": num_states}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (n, L, v)`` → designs ``(n, L, v)``: values of the hard one-hot, gradient of the clamp."""
        soft = x.clamp(-1.0, 1.0)
        hard = 2.0 * nn.functional.one_hot(x.argmax(-1), x.shape[-1]).to(x.dtype) - 1.0
        return hard + (soft - soft.detach())
