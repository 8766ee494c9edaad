"""GP-BO in the raw design box: what a user without a generative prior would run.

Round 0 (no observation yet): designs uniform in the box ``[low, high]^D`` (drawn from
``self.generator``). Later rounds: the q-batch maximizing ``qLogExpectedImprovement`` of a
``SingleTaskGP`` fit on (at most ``config.max_train``) observations, see
:mod:`sqdf_bbo.optimizers.gp_bo_core`. For digits the box is [-1, 1]^64, for the 2-D toy
[-4, 4]^2.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from sqdf_bbo.config import as_config
from sqdf_bbo.optimizers.base import Optimizer, Proposal
from sqdf_bbo.optimizers.gp_bo_core import GPBOConfig, propose_qlogei

__all__ = ["GPBO"]


class GPBO(Optimizer):
    """BoTorch GP + qLogEI directly in a design box.

    Args:
        shape: design shape, e.g. ``(1, 8, 8)``.
        box: ``(low, high)`` bounds of every coordinate.
        batch_size: designs per ``ask()``.
        seed: seeds the random designs and the acquisition optimization.
        config: :class:`~sqdf_bbo.optimizers.gp_bo_core.GPBOConfig` (cost controls).
        study: folder to write the study through to.
    """

    method = "gp-bo"

    def __init__(
        self,
        shape: Sequence[int],
        box: tuple[float, float] = (-1.0, 1.0),
        batch_size: int = 64,
        seed: int = 0,
        config: GPBOConfig | Mapping[str, Any] | None = None,
        study: str | Path | None = None,
    ) -> None:
        low, high = (float(b) for b in box)
        if not low < high:
            raise ValueError(f"box must be (low, high) with low < high, got {box}")
        config = as_config(config, GPBOConfig)
        self.box = (low, high)
        self.config = config
        super().__init__(shape, batch_size=batch_size, seed=seed, study=study)

    def _propose(self, n: int) -> Proposal:
        low, high = self.box
        obs = self.observations()
        if len(obs) == 0:
            u = torch.rand((n, *self.shape), generator=self.generator, device=self.device)
            return Proposal((low + (high - low) * u).to(self.dtype))
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=self.generator))
        flat = propose_qlogei(obs.x.reshape(len(obs), -1), obs.y, self.box, n, self.config, seed)
        x = flat.reshape(n, *self.shape).to(self.device, self.dtype).clamp(low, high)
        return Proposal(x)

    def _metrics(self) -> dict[str, float]:
        return {}

    def _spec(self) -> dict[str, Any]:
        return {"shape": list(self.shape), "box": list(self.box), "config": asdict(self.config)}
