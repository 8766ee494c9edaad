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
* :class:`ViterbiDecoder` is the same map restricted to *allowed* sequences: the one-hot of the
  highest-scoring sequence whose every transition a → b is allowed (by default, observed in the
  prior's training data), found by Viterbi. On a chain with forbidden transitions (Ehrlich
  functions) every decoded design is feasible by construction.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from sqdf_bbo.diffusion.io import register_network
from sqdf_bbo.diffusion.networks import timestep_embedding

__all__ = ["SequenceDenoiser", "OneHotDecoder", "ViterbiDecoder", "allowed_transitions"]


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


def _straight_through(x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Hard {−1, +1} one-hot of ``tokens (n, L)`` with the gradient of ``clamp(x, −1, 1)``."""
    soft = x.clamp(-1.0, 1.0)
    hard = 2.0 * nn.functional.one_hot(tokens, x.shape[-1]).to(x.dtype) - 1.0
    return hard + (soft - soft.detach())


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
        return _straight_through(x, x.detach().argmax(-1))


def allowed_transitions(tokens: torch.Tensor, num_states: int) -> torch.Tensor:
    """``(v, v)`` bool: ``[a, b]`` is True iff some sequence of ``tokens (n, L)`` has a → b."""
    t = torch.as_tensor(tokens).long()
    if t.ndim != 2 or t.shape[1] < 2:
        raise ValueError(f"tokens must have shape (n, L) with L >= 2, got {tuple(t.shape)}")
    seen = torch.zeros(num_states * num_states, dtype=torch.bool)
    seen[(t[:, :-1] * num_states + t[:, 1:]).reshape(-1)] = True
    return seen.reshape(num_states, num_states)


@register_network
class ViterbiDecoder(nn.Module):
    """Design map of a sequence prior with forbidden transitions: the hard {−1, +1} one-hot of
    the highest-scoring allowed sequence, with the gradient of ``clamp(x, −1, 1)``.
    ``(n, L, v) → (n, L, v)``.

    The score of tokens s_1 … s_L is S(s) = Σ_l x[l, s_l]; the row-wise argmax (what
    :class:`OneHotDecoder` returns) maximizes S without constraints. This decoder maximizes S
    over sequences whose every transition s_{l−1} → s_l has ``allowed[s_{l−1}, s_l]``:

    1. δ_1(s) = x[1, s];
    2. δ_l(s) = x[l, s] + max_{s′ : allowed[s′, s]} δ_{l−1}(s′), keeping the arg max s′;
    3. s_L = argmax_s δ_L(s), then follow the kept arg maxes back to s_1.

    Where the argmax sequence is allowed, both decoders agree. ``allowed`` is a buffer, saved
    with the prior; every state needs at least one allowed successor, so a path always exists.

    Args:
        num_states: v.
        allowed: ``(v, v)`` bool (or 0/1) matrix; ``None`` allows everything (= argmax).
    """

    def __init__(self, num_states: int, allowed: torch.Tensor | None = None) -> None:
        super().__init__()
        if num_states < 2:
            raise ValueError(f"num_states must be >= 2, got {num_states}")
        a = torch.ones(num_states, num_states) if allowed is None else torch.as_tensor(allowed)
        if tuple(a.shape) != (num_states, num_states):
            raise ValueError(
                f"allowed must have shape ({num_states}, {num_states}), got {tuple(a.shape)}"
            )
        a = a.detach().float().cpu()
        if not bool(((a == 0) | (a == 1)).all()):
            raise ValueError("allowed must hold only 0/1 (False/True)")
        if not bool((a.sum(1) > 0).all()):
            dead = (a.sum(1) == 0).nonzero().reshape(-1).tolist()
            raise ValueError(f"every state needs an allowed successor; states {dead} have none")
        self.config: dict[str, Any] = {"num_states": num_states}
        self.register_buffer("allowed", a)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens ``(n, L)`` int64 of the best allowed sequence for scores ``x (n, L, v)``."""
        x = x.detach()
        n, length, v = x.shape
        penalty = torch.where(self.allowed.to(x.device) > 0, 0.0, -torch.inf).to(
            x.dtype
        )  # (v, v): 0 where a → b is allowed
        delta = x[:, 0, :]  # step 1: (n, v)
        back = []
        for pos in range(1, length):  # step 2
            cand = delta[:, :, None] + penalty  # (n, v_prev, v)
            delta, arg = cand.max(dim=1)
            delta = delta + x[:, pos, :]
            back.append(arg)
        out = torch.empty(n, length, dtype=torch.long, device=x.device)
        out[:, -1] = delta.argmax(dim=-1)  # step 3
        for pos in range(length - 1, 0, -1):
            out[:, pos - 1] = back[pos - 1].gather(1, out[:, pos : pos + 1]).squeeze(1)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (n, L, v)`` → designs ``(n, L, v)``: values of the hard one-hot of
        :meth:`tokens`, gradient of the clamp."""
        return _straight_through(x, self.tokens(x))
