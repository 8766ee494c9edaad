"""Latent priors: a decoder between the diffusion state and the design.

A latent diffusion model (Stable Diffusion, a latent model of molecules or backbones) samples
latents z; the design the oracle sees is ``decode(z)``. :class:`LatentDecoder` is that map,
the prior's ``decoder`` (:meth:`DiffusionPrior.to_design <sqdf_bbo.diffusion.prior.DiffusionPrior.to_design>`):

    design = clamp( vae.decode(z / s).sample )        s: the VAE's scaling factor

(SD 1.5: s = 0.18215, as the official SQDF code decodes ``x_0 / 0.18215``), or ``f(z)`` for
any network f. It is differentiable in z: every reward path (SQDF's soft-Q estimate
r̂(decode(f(x_prev))), rollouts, the asked batch) decodes, so the fine-tuner is rewarded for
the designs the oracle will see. The decoder's weights are frozen; gradients pass through.

Memory: decoding a batch of x0 estimates with gradient keeps every activation of the
decoder until the backward pass. ``chunk_size`` decodes that many latents per call, and
``checkpoint=True`` recomputes each chunk's activations in the backward pass instead of
storing them (``torch.utils.checkpoint``), so the memory of the decoding is that of one
chunk whatever the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint as activation_checkpoint

from sqdf_bbo.diffusion.io import load_module, register_network, save_module

__all__ = ["LatentDecoder"]


@register_network
class LatentDecoder(nn.Module):
    """Latents ``(n, *latent_shape)`` → designs ``(n, *design_shape)``.

    Args:
        decoder: a diffusers ``AutoencoderKL`` (its ``decode(z).sample`` is used) or any
            ``nn.Module`` mapping latents to designs.
        design_shape: the shape of one decoded design, e.g. ``(3, 512, 512)``.
        scaling_factor: s: latents are divided by it before decoding (default: the
            autoencoder's ``config.scaling_factor``, else 1).
        value_range: clamp decoded designs to ``(low, high)`` (images: ``(-1, 1)``), or
            ``None``.
        chunk_size: latents decoded per call (``None``: all at once).
        checkpoint: recompute each chunk's activations in the backward pass (gradient
            checkpointing) instead of storing them.
    """

    def __init__(
        self,
        decoder: nn.Module,
        design_shape: Sequence[int],
        *,
        scaling_factor: float | None = None,
        value_range: tuple[float, float] | None = (-1.0, 1.0),
        chunk_size: int | None = 8,
        checkpoint: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(decoder, nn.Module):
            raise TypeError(f"decoder must be an nn.Module, got {type(decoder).__name__}")
        if scaling_factor is None:
            scaling_factor = getattr(getattr(decoder, "config", None), "scaling_factor", None)
        scaling_factor = 1.0 if scaling_factor is None else float(scaling_factor)
        if not scaling_factor > 0:
            raise ValueError(f"scaling_factor must be > 0, got {scaling_factor}")
        if chunk_size is not None and int(chunk_size) < 1:
            raise ValueError(f"chunk_size must be >= 1 or None, got {chunk_size}")
        if value_range is not None and not float(value_range[0]) < float(value_range[1]):
            raise ValueError(f"value_range must be (low, high) with low < high, got {value_range}")
        self.decoder = decoder.eval().requires_grad_(False)
        self.design_shape = tuple(int(s) for s in design_shape)
        self.scaling_factor = scaling_factor
        self.value_range = None if value_range is None else tuple(map(float, value_range))
        self.chunk_size = None if chunk_size is None else int(chunk_size)
        self.checkpoint = bool(checkpoint)
        self.config: dict[str, Any] = {
            "design_shape": list(self.design_shape),
            "scaling_factor": self.scaling_factor,
            "value_range": None if self.value_range is None else list(self.value_range),
            "chunk_size": self.chunk_size,
            "checkpoint": self.checkpoint,
        }

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        z = z / self.scaling_factor
        decode = getattr(self.decoder, "decode", None)
        out = decode(z) if callable(decode) else self.decoder(z)
        out = getattr(out, "sample", out)
        if self.value_range is not None:
            out = out.clamp(*self.value_range)
        return out

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Decoded designs ``(n, *design_shape)`` of latents ``z (n, *latent_shape)``,
        differentiable in ``z``."""
        step = self.chunk_size or max(1, z.shape[0])
        parts = []
        for s in range(0, z.shape[0], step):
            chunk = z[s : s + step]
            if self.checkpoint and torch.is_grad_enabled() and chunk.requires_grad:
                parts.append(activation_checkpoint(self._decode, chunk, use_reentrant=False))
            else:
                parts.append(self._decode(chunk))
        if not parts:
            return z.new_zeros((0, *self.design_shape))
        out = torch.cat(parts)
        if tuple(out.shape[1:]) != self.design_shape:
            raise ValueError(
                f"the decoder returned designs of shape {tuple(out.shape[1:])}; "
                f"LatentDecoder(design_shape={self.design_shape})"
            )
        return out

    # ------------------------------------------------------------------ save / load
    def save_parts(self, directory: Path) -> dict[str, Any]:
        """Write the wrapped decoder (diffusers format, or weights) under ``directory``."""
        return {**self.config, "decoder": save_module(self.decoder, Path(directory) / "decoder")}

    @classmethod
    def load_parts(cls, config: dict[str, Any], directory: Path) -> LatentDecoder:
        config = dict(config)
        decoder = load_module(config.pop("decoder"), Path(directory) / "decoder")
        vr = config.pop("value_range")
        return cls(decoder, value_range=None if vr is None else (vr[0], vr[1]), **config)
