"""The ``prior`` baseline: sample the pretrained diffusion prior, never fine-tune."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqdf_bbo.diffusion.prior import DiffusionPrior
from sqdf_bbo.optimizers.base import Optimizer, Proposal
from sqdf_bbo.optimizers.batch import sample_proposal

__all__ = ["PriorSampler"]


class PriorSampler(Optimizer):
    """Every batch is a fresh draw of the pretrained prior (observations are ignored).

    Args:
        prior: the pretrained :class:`~sqdf_bbo.diffusion.prior.DiffusionPrior`.
        batch_size: designs per ``ask()``.
        seed: seeds the sampling generator.
        clip_designs: clamp designs to the prior's ``value_range`` (as SQDF does).
        study: folder to write the study through to.
        constraints: known constraints: the batches are prior samples that satisfy them
            (rejection sampling; see :class:`~sqdf_bbo.optimizers.base.Optimizer`).
    """

    method = "prior"

    def __init__(
        self,
        prior: DiffusionPrior,
        batch_size: int = 64,
        seed: int = 0,
        clip_designs: bool = True,
        study: str | Path | None = None,
        constraints: Any = None,
    ) -> None:
        if not isinstance(prior, DiffusionPrior):
            raise TypeError(f"prior must be a DiffusionPrior, got {type(prior).__name__}")
        self.prior = prior
        self.clip_designs = bool(clip_designs)
        super().__init__(
            prior.shape,
            batch_size=batch_size,
            seed=seed,
            study=study,
            device=prior.device,
            dtype=prior.dtype,
            constraints=constraints,
        )

    def _propose(self, n: int) -> Proposal:
        return sample_proposal(self.prior, n, self.generator, self.clip_designs)

    def _metrics(self) -> dict[str, float]:
        """The sampler IS the prior: KL 0."""
        return {"kl_to_prior": 0.0}

    def _spec(self) -> dict[str, Any]:
        return {"prior": self.prior, "clip_designs": self.clip_designs}
