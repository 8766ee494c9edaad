"""A prior that never saw the hidden designs: the shipped recipe retrained on the visible
archive only (docs/offline.md, "the priors saw the hidden designs").

The shipped ``airfoil`` prior was trained on every training airfoil, the hidden best 10 %
included (designs only, no values). Design-Bench's generative methods train on the visible
data only; :func:`visible_prior` trains the same network with the same recipe
(:data:`benchmarks.train_priors.AIRFOIL_RECIPE`: denoiser, then its consistency model) on
the visible designs of an archive, in the same standardized coordinates, and saves it in a
folder that later runs load instead of training again.
"""

from __future__ import annotations

from pathlib import Path

import torch

from benchmarks.denoiser_training import train_denoiser
from benchmarks.offline.archives import Archive
from benchmarks.train_priors import (
    AIRFOIL_RECIPE,
    PriorRecipe,
    airfoil_mlp,
    attach_consistency,
    make_scheduler,
)
from sqdf_bbo.diffusion.prior import DiffusionPrior

__all__ = ["VISIBLE_PRIOR_TASKS", "visible_prior"]

VISIBLE_PRIOR_TASKS = ("airfoil-ld",)


def visible_prior(
    archive: Archive, folder: Path, progress: bool = False, recipe: PriorRecipe = AIRFOIL_RECIPE
) -> DiffusionPrior:
    """The ``airfoil`` recipe trained on ``archive``'s visible designs (failed ones included:
    they are real airfoils), loaded from ``folder`` when an earlier run saved it there
    (``recipe``: another one for smoke tests)."""
    if archive.task not in VISIBLE_PRIOR_TASKS:
        raise ValueError(
            f"no visible-only prior recipe for {archive.task!r}; accepted: "
            f"{', '.join(VISIBLE_PRIOR_TASKS)}"
        )
    folder = Path(folder)
    if (folder / "prior.json").exists():
        return DiffusionPrior.load(folder)
    x = archive.seen()[0].float()  # (n, 18)

    def draw(b: int, gen: torch.Generator) -> torch.Tensor:
        return x[torch.randint(x.shape[0], (b,), generator=gen)]

    net = airfoil_mlp(recipe.train.seed)
    ema, loss = train_denoiser(
        net, draw, make_scheduler(), recipe.train, progress=progress, desc="airfoil-visible"
    )
    print(f"[airfoil-visible] denoiser on {x.shape[0]} visible designs, final loss {loss:.4f}")
    prior = DiffusionPrior(
        ema,
        make_scheduler(),
        shape=(18,),
        eta=recipe.eta,
        num_inference_steps=recipe.num_inference_steps,
        value_range=None,
        name="airfoil-visible",
    )
    attach_consistency(prior, recipe, progress=progress)
    prior.save(folder)
    return prior
