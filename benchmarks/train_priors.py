"""Reproduce the priors and the classifier shipped in ``sqdf_bbo/embedded/``.

Usage::

    python -m benchmarks.train_priors                      # all four, into sqdf_bbo/embedded/
    python -m benchmarks.train_priors --only digits        # one of digits | rings | airfoil | classifier
    python -m benchmarks.train_priors --quick              # smoke run into a temporary folder

What it trains (deterministic: seeded generators, fixed thread count):

1. ``digits``: a diffusers ``UNet2DModel`` (1×8×8, block_out_channels (16, 32),
   2 layers per block, no attention) with the DDPM ε-loss on the 1437 training
   digits of :func:`sqdf_bbo.data.digits_split`, an EMA of its weights, and a
   ``DDIMScheduler`` (squaredcos_cap_v2 betas, 1000 train steps, leading
   timestep spacing, clip_sample=False); sampled with K = 20 steps, η = 1.
   Leading spacing (t = 950, 900, …, 0) on purpose: the cosine schedule clips
   β_999 at 0.999, so ᾱ_999 ≈ 1e-9 and a DDIM step from t = 999 ("trailing")
   multiplies any ε error by √(ᾱ_949/ᾱ_999) ≈ 2500; from t = 950 the factor is ≈ 2.
2. ``rings``: an :class:`~sqdf_bbo.diffusion.networks.MLPDenoiser` on fresh draws of
   :class:`~sqdf_bbo.data.RingsDistribution` each step, same scheduler family.
3. ``airfoil``: an :class:`~sqdf_bbo.diffusion.networks.MLPDenoiser` (18-D, hidden 256, depth 3) on
   the standardized Kulfan vectors z = (k − mean) / std of the 1739 training airfoils of
   :func:`sqdf_bbo.data.airfoil_split` (needs the ``airfoil`` extra), same scheduler
   family, K = 20, η = 1, no value range. The mean/std are written to
   ``standardization.json`` in the prior's folder (covered by its ``checksums.json``;
   :func:`sqdf_bbo.diffusion.priors.load_standardization` reads them back).
4. For each prior, a consistency model distilled from its deterministic DDIM ODE
   (:func:`sqdf_bbo.diffusion.consistency.distill_consistency`), and the per-noise-level
   error report against Tweedie's one-call estimate.
5. ``classifier``: :func:`sqdf_bbo.classifier.train_digits_classifier`.
6. ``ehrlich-…``: the sequence prior of an Ehrlich instance
   (:mod:`benchmarks.sequence_priors`; the shipped ones and any other instance name), with its
   evidence (feasible share, chain log-likelihood, diversity) on 1000 samples.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from benchmarks.denoiser_training import DenoiserTrainConfig, train_denoiser
from benchmarks.sequence_priors import (
    SEQUENCE_RECIPE,
    SHIPPED_SEQUENCE_PRIORS,
    ehrlich_oracle,
    sequence_prior_evidence,
    train_sequence_prior,
)
from sqdf_bbo.classifier import (
    ClassifierTrainConfig,
    save_digits_classifier,
    train_digits_classifier,
)
from sqdf_bbo.config import check_fields
from sqdf_bbo.data import (
    KULFAN_DIM,
    KulfanStandardization,
    RingsDistribution,
    airfoil_split,
    digits_split,
)
from sqdf_bbo.diffusion.consistency import consistency_error_report, distill_consistency
from sqdf_bbo.diffusion.networks import MLPDenoiser
from sqdf_bbo.diffusion.prior import DiffusionPrior
from sqdf_bbo.diffusion.priors import STANDARDIZATION_FILE

__all__ = [
    "DenoiserTrainConfig",
    "PriorRecipe",
    "DIGITS_RECIPE",
    "RINGS_RECIPE",
    "AIRFOIL_RECIPE",
    "make_scheduler",
    "digits_unet",
    "train_denoiser",
    "train_prior_denoiser",
    "attach_consistency",
    "state_error_report",
    "main",
]

EMBEDDED = Path(__file__).resolve().parents[1] / "sqdf_bbo" / "embedded"
NAMES = ("digits", "rings", "airfoil", "classifier", *SHIPPED_SEQUENCE_PRIORS)


def _prior_name(name: str) -> str:
    """``--only`` values: a name of :data:`NAMES` or any Ehrlich instance name."""
    if name in NAMES:
        return name
    try:
        ehrlich_oracle(name)
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"{name!r} is neither one of {', '.join(NAMES)} nor an Ehrlich instance: {err}"
        ) from None
    return name


@dataclass(frozen=True)
class PriorRecipe:
    """Everything that defines one shipped prior.

    Attributes:
        name: registry name.
        train: denoiser training settings.
        num_inference_steps: K of the shipped sampler.
        eta: DDIM η of the shipped sampler.
        cm_steps / cm_batch_size / cm_lr / cm_pool_size: consistency distillation settings.
    """

    name: str
    train: DenoiserTrainConfig
    num_inference_steps: int = 20
    eta: float = 1.0
    cm_steps: int = 2000
    cm_batch_size: int = 128
    cm_lr: float = 1e-3
    cm_pool_size: int = 4096

    def __post_init__(self) -> None:
        check_fields(self)


DIGITS_RECIPE = PriorRecipe(
    "digits", DenoiserTrainConfig(steps=4000, batch_size=128, lr=2e-3), cm_steps=3000, cm_lr=3e-4
)
RINGS_RECIPE = PriorRecipe(
    "rings", DenoiserTrainConfig(steps=6000, batch_size=512, lr=2e-3), cm_steps=3000
)
AIRFOIL_RECIPE = PriorRecipe(
    "airfoil",
    DenoiserTrainConfig(steps=8000, batch_size=256, lr=1e-3, weight_decay=1e-4),
    cm_steps=3000,
    cm_lr=3e-4,
)
RECIPES = {"digits": DIGITS_RECIPE, "rings": RINGS_RECIPE, "airfoil": AIRFOIL_RECIPE}


def make_scheduler():
    """The DDIM scheduler both shipped priors use (1000 train steps, cosine ᾱ, leading spacing)."""
    from diffusers import DDIMScheduler  # lazy: diffusers is slow to import

    return DDIMScheduler(
        num_train_timesteps=1000,
        beta_schedule="squaredcos_cap_v2",
        clip_sample=False,
        timestep_spacing="leading",
        set_alpha_to_one=True,
    )


def digits_unet(seed: int = 0) -> nn.Module:
    """The digits ε-network: ``UNet2DModel`` 1×8×8, channels (16, 32), 2 layers per block."""
    from diffusers import UNet2DModel  # lazy: diffusers is slow to import

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return UNet2DModel(
            sample_size=8,
            in_channels=1,
            out_channels=1,
            block_out_channels=(16, 32),
            layers_per_block=2,
            down_block_types=("DownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "UpBlock2D"),
            norm_num_groups=8,
        )


def rings_mlp(seed: int = 0) -> nn.Module:
    """The rings ε-network: ``MLPDenoiser(2, hidden=128, depth=3)``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MLPDenoiser(2, hidden=128, depth=3, time_dim=32)


def airfoil_mlp(seed: int = 0) -> nn.Module:
    """The airfoil ε-network: ``MLPDenoiser(18, hidden=256, depth=3)``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MLPDenoiser(KULFAN_DIM, hidden=256, depth=3, time_dim=32)


def airfoil_standardization():
    """The :class:`~sqdf_bbo.data.KulfanStandardization` of the training airfoils."""
    return KulfanStandardization.fit(airfoil_split().kulfan_train)


def _digits_data() -> Callable[[int, torch.Generator], torch.Tensor]:
    x = digits_split().x_train

    def draw(b: int, gen: torch.Generator) -> torch.Tensor:
        return x[torch.randint(x.shape[0], (b,), generator=gen)]

    return draw


def _rings_data() -> Callable[[int, torch.Generator], torch.Tensor]:
    dist = RingsDistribution()
    return lambda b, gen: dist.sample(b, gen)


def _airfoil_data() -> Callable[[int, torch.Generator], torch.Tensor]:
    z = airfoil_standardization().from_kulfan(airfoil_split().kulfan_train)
    x = torch.as_tensor(z, dtype=torch.float32)  # (1739, 18)

    def draw(b: int, gen: torch.Generator) -> torch.Tensor:
        return x[torch.randint(x.shape[0], (b,), generator=gen)]

    return draw


def train_prior_denoiser(
    recipe: PriorRecipe, *, device: str = "cpu", progress: bool = True
) -> DiffusionPrior:
    """Train the ε-network of one prior; returns the prior without a consistency model."""
    scheduler = make_scheduler()
    if recipe.name == "digits":
        net, data, shape, vr = (
            digits_unet(recipe.train.seed),
            _digits_data(),
            (1, 8, 8),
            (-1.0, 1.0),
        )
    elif recipe.name == "rings":
        net, data, shape, vr = rings_mlp(recipe.train.seed), _rings_data(), (2,), None
    elif recipe.name == "airfoil":
        net, data, shape, vr = airfoil_mlp(recipe.train.seed), _airfoil_data(), (18,), None
    else:
        raise ValueError(f"unknown prior recipe {recipe.name!r}; accepted: {', '.join(RECIPES)}")
    n_params = sum(p.numel() for p in net.parameters())
    t0 = time.perf_counter()
    ema, loss = train_denoiser(
        net.to(device), data, scheduler, recipe.train, progress=progress, desc=recipe.name
    )
    print(
        f"[{recipe.name}] denoiser: {n_params} parameters, {recipe.train.steps} steps, "
        f"final loss {loss:.4f}, {time.perf_counter() - t0:.1f} s"
    )
    return DiffusionPrior(
        ema,
        scheduler,
        shape=shape,
        eta=recipe.eta,
        num_inference_steps=recipe.num_inference_steps,
        value_range=vr,
        name=recipe.name,
    )


def state_error_report(prior: DiffusionPrior, *, n: int = 256, seed: int = 12345):
    """Per-state MSE of Tweedie and of the CM against the deterministic ODE end point.

    One row per state j = 0 … K−1 (columns ``j, t, tweedie_mse, consistency_mse``).
    SQDF evaluates its x0 estimate at states 1 … K−1 (after a transition), so
    row j = 1 is the noisiest state that matters for it.
    """
    K = prior.num_inference_steps
    gen = torch.Generator(device=prior.device).manual_seed(seed)
    traj = prior.with_settings(eta=0.0).sample(n, gen, return_trajectory=True).trajectory
    end = traj[:, K]
    rows = []
    with torch.no_grad():
        for j in range(K):
            x = traj[:, j]
            rows.append(
                (
                    j,
                    int(prior.timesteps[j]),
                    (prior.tweedie(x, j) - end).pow(2).mean().item(),
                    (prior.consistency_x0(x, j) - end).pow(2).mean().item(),
                )
            )
    return pd.DataFrame(rows, columns=["j", "t", "tweedie_mse", "consistency_mse"])


def attach_consistency(
    prior: DiffusionPrior, recipe: PriorRecipe, *, progress: bool = True
) -> DiffusionPrior:
    """Distill the prior's consistency model (in place) and print both error reports."""
    t0 = time.perf_counter()
    prior.denoiser.requires_grad_(False)
    prior.consistency = distill_consistency(
        prior,
        steps=recipe.cm_steps,
        batch_size=recipe.cm_batch_size,
        lr=recipe.cm_lr,
        pool_size=recipe.cm_pool_size,
        seed=recipe.train.seed + 100,
        # F_φ starts from the teacher's weights; the copy must be trainable (the teacher is frozen).
        net=copy.deepcopy(prior.denoiser).requires_grad_(True),
        progress=progress,
    )
    prior.denoiser.requires_grad_(True)
    print(
        f"[{recipe.name}] consistency distillation: {recipe.cm_steps} steps, "
        f"{time.perf_counter() - t0:.1f} s"
    )
    fmt = {"float_format": lambda v: f"{v:.4f}", "index": False}
    print(f"[{recipe.name}] x0-estimate MSE vs deterministic ODE end point, by t bucket:")
    print(consistency_error_report(prior, n=256).to_string(**fmt))
    print(f"[{recipe.name}] the same by state (SQDF uses states j >= 1):")
    print(state_error_report(prior, n=256).to_string(**fmt))
    return prior


def _quick(recipe: PriorRecipe) -> PriorRecipe:
    return replace(recipe, train=replace(recipe.train, steps=60), cm_steps=30, cm_pool_size=128)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only",
        type=_prior_name,
        action="append",
        help=f"train only these (repeatable): {', '.join(NAMES)} or any ehrlich-v..-l..-c..-k..-q.. instance",
    )
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (not for shipping)")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output root (default: sqdf_bbo/embedded, or a temp dir with --quick)",
    )
    parser.add_argument(
        "--threads", type=int, default=2, help="torch CPU threads (fixed for determinism)"
    )
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument(
        "--device",
        default="cpu",
        help="torch device to train on (cpu, cuda); weights are saved on cpu",
    )
    parser.add_argument(
        "--distill-only",
        action="store_true",
        help="keep the saved denoisers in --out and redo only their consistency models",
    )
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    out: Path = args.out or (
        Path(tempfile.mkdtemp(prefix="sqdf_priors_")) if args.quick else EMBEDDED
    )
    names = args.only or list(NAMES)
    progress = not args.no_progress
    start = time.perf_counter()
    for name in names:
        if name == "classifier":
            t0 = time.perf_counter()
            cfg = ClassifierTrainConfig(epochs=2) if args.quick else ClassifierTrainConfig()
            if args.distill_only:
                continue
            model, info = train_digits_classifier(cfg, progress=progress)
            save_digits_classifier(model, out / "classifier")
            print(
                f"[classifier] final loss {info['final_loss']:.4f}, train acc {info['train_accuracy']:.4f}, "
                f"held-out acc {info['heldout_accuracy']:.4f}, {time.perf_counter() - t0:.1f} s"
            )
            continue
        if name.startswith("ehrlich-"):
            if args.distill_only:
                continue  # sequence priors have no consistency model
            recipe = (
                replace(SEQUENCE_RECIPE, steps=60, pool_size=512) if args.quick else SEQUENCE_RECIPE
            )
            prior = train_sequence_prior(name, recipe, device=args.device, progress=progress)
            prior.save(out / name)
            ev = sequence_prior_evidence(prior, ehrlich_oracle(name), n=1000)
            print(
                f"[{name}] evidence on 1000 samples: "
                + ", ".join(f"{k} {v:.4g}" for k, v in ev.items())
            )
            continue
        recipe = RECIPES[name]
        recipe = _quick(recipe) if args.quick else recipe
        if name == "airfoil":
            # written first, so that the prior's checksums.json covers it
            (out / name).mkdir(parents=True, exist_ok=True)
            airfoil_standardization().save(out / name / STANDARDIZATION_FILE)
        if args.distill_only:
            prior = DiffusionPrior.load(out / name, device=args.device)
        else:
            prior = train_prior_denoiser(recipe, device=args.device, progress=progress)
            prior.save(out / name)  # stage 1 on disk: a CM-only rerun can start from it
        attach_consistency(prior, recipe, progress=progress)
        prior.to("cpu").save(out / name)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"saved to {out} ({size / 1e6:.2f} MB); total {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
