"""Train the shipped class-conditional latent prior of the digits (``digits-latent``).

Usage::

    python -m benchmarks.train_latent_digits              # into sqdf_bbo/embedded/digits-latent/
    python -m benchmarks.train_latent_digits --quick      # smoke run into a temporary folder

What it trains (deterministic: seeded generators, fixed thread count):

1. An autoencoder: a diffusers ``AutoencoderKL`` (1×8×8 ↔ 2×4×4 latents, block_out_channels
   (16, 32), one layer per block) on the 1437 training digits of
   :func:`sqdf_bbo.data.digits_split`, loss ‖x − decode(z)‖² + β·KL(q(z|x) ‖ N(0, I)) with
   β = 1e-4 (z sampled from the posterior), AdamW 1e-3 with cosine decay.
2. The scaling factor s = 1 / std of the posterior means of the training digits (Stable
   Diffusion's convention: latents z·s have unit spread).
3. A class-conditional ε-network: ``UNet2DModel`` on the 2×4×4 scaled latents, channels
   (32, 64), one layer per block, ``num_class_embeds=11`` (labels 0–9 and the null label
   10 for classifier-free guidance), trained with the DDPM ε-loss
   (:func:`benchmarks.denoiser_training.train_denoiser`) and 10 % of the labels replaced
   by the null label; the shipped prior's scheduler (:func:`benchmarks.train_priors.make_scheduler`).
4. The prior: ``DiffusionPrior(unet, shape=(2, 4, 4), decoder=LatentDecoder(vae, (1, 8, 8),
   scaling_factor=s, value_range=(-1, 1)), conditioning=Conditioning("labels",
   num_classes=10, null_label=10, guidance_scale=GUIDANCE))``, K = 20, η = 1, no value range
   on the latents, and its evidence (:func:`benchmarks.latent_evidence.prior_evidence`)
   written to ``evidence.json`` beside it.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from benchmarks.denoiser_training import DenoiserTrainConfig, train_denoiser
from benchmarks.latent_evidence import prior_evidence
from benchmarks.train_priors import make_scheduler
from sqdf_bbo.data import digits_split
from sqdf_bbo.diffusion.conditioning import Conditioning
from sqdf_bbo.diffusion.latent import LatentDecoder
from sqdf_bbo.diffusion.prior import DiffusionPrior
from sqdf_bbo.progress import progress_bar

__all__ = ["LatentRecipe", "RECIPE", "train_autoencoder", "train_latent_prior", "main"]

EMBEDDED = Path(__file__).resolve().parents[1] / "sqdf_bbo" / "embedded"
NAME = "digits-latent"
NUM_CLASSES = 10
NULL_LABEL = 10


@dataclass(frozen=True)
class LatentRecipe:
    """Everything that defines the shipped latent prior.

    Attributes:
        ae_steps, ae_batch_size, ae_lr, kl_weight: the autoencoder's training.
        train: the ε-network's training.
        label_dropout: share of training labels replaced by the null label.
        guidance_scale: the prior's classifier-free guidance scale w.
        num_inference_steps, eta: the shipped sampler.
    """

    ae_steps: int = 1500
    ae_batch_size: int = 64
    ae_lr: float = 1e-3
    kl_weight: float = 1e-4
    train: DenoiserTrainConfig = DenoiserTrainConfig(
        steps=4000, batch_size=64, lr=1e-3, weight_decay=1e-4
    )
    label_dropout: float = 0.1
    guidance_scale: float = 2.0
    num_inference_steps: int = 20
    eta: float = 1.0


RECIPE = LatentRecipe()


def make_autoencoder(seed: int = 0) -> nn.Module:
    """The digits autoencoder: ``AutoencoderKL`` 1×8×8 ↔ 2×4×4."""
    from diffusers import AutoencoderKL  # lazy: diffusers is slow to import

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AutoencoderKL(
            in_channels=1,
            out_channels=1,
            down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
            up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
            block_out_channels=(16, 32),
            layers_per_block=1,
            latent_channels=2,
            norm_num_groups=8,
            sample_size=8,
        )


def make_unet(seed: int = 0) -> nn.Module:
    """The class-conditional ε-network on 2×4×4 latents."""
    from diffusers import UNet2DModel  # lazy: diffusers is slow to import

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return UNet2DModel(
            sample_size=4,
            in_channels=2,
            out_channels=2,
            block_out_channels=(32, 64),
            layers_per_block=1,
            down_block_types=("DownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "UpBlock2D"),
            norm_num_groups=8,
            num_class_embeds=NUM_CLASSES + 1,
        )


def train_autoencoder(recipe: LatentRecipe, progress: bool = True) -> tuple[nn.Module, float]:
    """Fit the autoencoder; returns it (eval mode, frozen) and its held-out reconstruction
    RMSE (pixels in [-1, 1])."""
    split = digits_split()
    x = split.x_train
    vae = make_autoencoder(recipe.train.seed)
    gen = torch.Generator().manual_seed(recipe.train.seed + 11)
    opt = torch.optim.AdamW(vae.parameters(), lr=recipe.ae_lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=recipe.ae_steps)
    bar = progress_bar(range(recipe.ae_steps), progress=progress, desc="autoencoder", leave=False)
    vae.train()
    for step in bar:
        # 1. A batch, its posterior q(z|x) and one draw z ~ q (reparameterized).
        batch = x[torch.randint(x.shape[0], (recipe.ae_batch_size,), generator=gen)]
        post = vae.encode(batch).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=gen)
        # 2. Reconstruction error + β · KL(q ‖ N(0, I)) per image.
        rec = vae.decode(z).sample
        loss = (rec - batch).pow(2).mean() + recipe.kl_weight * post.kl().mean() / batch[0].numel()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}")
    vae.eval().requires_grad_(False)
    with torch.no_grad():
        held = split.x_heldout
        rec = vae.decode(vae.encode(held).latent_dist.mean).sample.clamp(-1, 1)
        rmse = float((rec - held).pow(2).mean().sqrt())
    return vae, rmse


def train_latent_prior(
    recipe: LatentRecipe = RECIPE, progress: bool = True
) -> tuple[DiffusionPrior, dict[str, float]]:
    """The whole recipe (module docstring); returns the prior and its training log."""
    t0 = time.perf_counter()
    vae, rmse = train_autoencoder(recipe, progress)
    split = digits_split()
    with torch.no_grad():
        mu = vae.encode(split.x_train).latent_dist.mean  # (1437, 2, 4, 4)
    scale = float(1.0 / mu.std())
    latents, labels = mu * scale, split.y_train
    drop = torch.Generator().manual_seed(recipe.train.seed + 23)
    drawn: dict[str, torch.Tensor] = {}

    def data(b: int, gen: torch.Generator) -> torch.Tensor:
        idx = torch.randint(latents.shape[0], (b,), generator=gen)
        y = labels[idx].clone()
        y[torch.rand(b, generator=drop) < recipe.label_dropout] = NULL_LABEL
        drawn["labels"] = y  # read by loss() right after, in the same step
        return latents[idx]

    def loss(net: nn.Module, xt: torch.Tensor, t: torch.Tensor, x0, eps) -> torch.Tensor:
        out = net(xt, t, class_labels=drawn["labels"].to(xt.device)).sample
        return (out - eps).pow(2).mean()

    scheduler = make_scheduler()
    t1 = time.perf_counter()
    ema, final = train_denoiser(
        make_unet(recipe.train.seed), data, scheduler, recipe.train, progress=progress,
        desc="latent unet", loss_fn=loss,
    )  # fmt: skip
    decoder = LatentDecoder(vae, (1, 8, 8), scaling_factor=scale, value_range=(-1.0, 1.0))
    conditioning = Conditioning(
        "labels",
        num_classes=NUM_CLASSES,
        null_label=NULL_LABEL,
        guidance_scale=recipe.guidance_scale,
    )
    prior = DiffusionPrior(
        ema,
        scheduler,
        shape=(2, 4, 4),
        eta=recipe.eta,
        num_inference_steps=recipe.num_inference_steps,
        value_range=None,
        decoder=decoder,
        conditioning=conditioning,
        name=NAME,
    )
    log = {
        "autoencoder_heldout_rmse": rmse,
        "scaling_factor": scale,
        "denoiser_final_loss": final,
        "autoencoder_s": t1 - t0,
        "denoiser_s": time.perf_counter() - t1,
    }
    return prior, log


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=None, help="folder (default: the package's)")
    p.add_argument("--quick", action="store_true", help="tiny smoke run into a temporary folder")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    recipe = RECIPE
    if args.quick:
        recipe = replace(recipe, ae_steps=20, train=replace(recipe.train, steps=20))
    out = args.out or (Path(tempfile.mkdtemp()) / NAME if args.quick else EMBEDDED / NAME)
    prior, log = train_latent_prior(recipe)
    prior.save(out)
    evidence = prior_evidence(prior, n_per_class=20 if args.quick else 200)
    (out / "evidence.json").write_text(json.dumps({"training": log, **evidence}, indent=2))
    prior.save(out)  # again: the checksums now cover evidence.json
    print(json.dumps({"training": log, **evidence}, indent=2))
    print(f"saved to {out}")


if __name__ == "__main__":
    main()
