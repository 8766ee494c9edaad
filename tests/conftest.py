"""Tiny shared fixtures: random-weight priors that keep unit tests fast."""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

import pytest
import torch
from diffusers import DDIMScheduler, UNet2DModel

from sqdf_bbo.diffusion.networks import MLPDenoiser
from sqdf_bbo.diffusion.prior import DiffusionPrior
from sqdf_bbo.registry import Registry


def tiny_unet(seed: int = 0, **extra: Any) -> UNet2DModel:
    """A random-weight 1×8×8 UNet2DModel with block_out_channels=(4, 8); ``extra`` goes to
    the constructor (e.g. ``num_class_embeds=4`` for a class-conditional one)."""
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
        **extra,
    )


@pytest.fixture
def image_prior() -> DiffusionPrior:
    return DiffusionPrior(
        tiny_unet(), DDIMScheduler(clip_sample=False), shape=(1, 8, 8), num_inference_steps=5
    )


def mlp_prior(
    steps: int = 6,
    hidden: int = 16,
    depth: int = 2,
    value_range: tuple[float, float] | None = None,
) -> DiffusionPrior:
    """A random-weight 2-D ``MLPDenoiser`` prior (weights from seed 0) with K = ``steps``."""
    torch.manual_seed(0)
    return DiffusionPrior(
        MLPDenoiser(2, hidden=hidden, depth=depth),
        DDIMScheduler(clip_sample=False),
        shape=(2,),
        num_inference_steps=steps,
        value_range=value_range,
    )


@pytest.fixture
def flat_prior() -> DiffusionPrior:
    return mlp_prior()


@pytest.fixture(autouse=True)
def _restore_registries():
    """Every registry (optimizers, surrogates, priors, networks, tasks, suites, methods) is
    as it was before the test: what a test registers leaves no trace."""
    with ExitStack() as stack:
        for registry in list(Registry.instances):
            stack.enter_context(registry.temporarily())
        yield
