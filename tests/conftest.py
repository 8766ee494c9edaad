"""Tiny shared fixtures: random-weight priors that keep unit tests fast."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMScheduler, UNet2DModel

from sqdf_bbo.models import MLPDenoiser
from sqdf_bbo.prior import DiffusionPrior


def tiny_unet(seed: int = 0) -> UNet2DModel:
    """A random-weight 1×8×8 UNet2DModel with block_out_channels=(4, 8)."""
    torch.manual_seed(seed)
    return UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        block_out_channels=(4, 8),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
    )


@pytest.fixture
def image_prior() -> DiffusionPrior:
    return DiffusionPrior(
        tiny_unet(), DDIMScheduler(clip_sample=False), shape=(1, 8, 8), num_inference_steps=5
    )


@pytest.fixture
def flat_prior() -> DiffusionPrior:
    torch.manual_seed(0)
    return DiffusionPrior(
        MLPDenoiser(2, hidden=16, depth=2),
        DDIMScheduler(clip_sample=False),
        shape=(2,),
        num_inference_steps=6,
        value_range=None,
    )
