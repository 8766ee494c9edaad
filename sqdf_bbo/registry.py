"""The priors shipped inside the package, loaded offline by name.

Each prior lives in ``sqdf_bbo/embedded/<name>/`` in the
:meth:`DiffusionPrior.save <sqdf_bbo.prior.DiffusionPrior.save>` format, with
its distilled consistency model attached. Nothing is downloaded and no file
outside the package folder is read. Reproduce them with
``python -m benchmarks.train_priors``.

=========  ===========  =====================================================
name       shape        what
=========  ===========  =====================================================
digits     (1, 8, 8)    UNet2DModel on sklearn's 8×8 digits, values in [-1, 1]
rings      (2,)         MLPDenoiser on an 8-Gaussian ring (radius 2), unbounded
=========  ===========  =====================================================
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .prior import DiffusionPrior

__all__ = ["load_prior", "available_priors", "prior_path", "EMBEDDED_DIR"]

EMBEDDED_DIR = Path(__file__).resolve().parent / "embedded"
_PRIORS: dict[str, str] = {
    "digits": "UNet2DModel prior of sklearn's 8x8 digits, shape (1, 8, 8), values in [-1, 1]",
    "rings": "MLPDenoiser prior of an 8-component Gaussian ring of radius 2, shape (2,)",
}


def available_priors() -> list[str]:
    """Names accepted by :func:`load_prior`, sorted."""
    return sorted(_PRIORS)


def prior_path(name: str) -> Path:
    """The package folder holding prior ``name`` (raises ``ValueError`` for unknown names)."""
    if not isinstance(name, str) or name not in _PRIORS:
        raise ValueError(f"unknown prior {name!r}; accepted names: {', '.join(available_priors())}")
    path = EMBEDDED_DIR / name
    if not (path / "prior.json").is_file():
        raise FileNotFoundError(
            f"the weights of prior {name!r} are missing from {path}; "
            f"rebuild them with `python -m benchmarks.train_priors --only {name}`"
        )
    return path


def load_prior(name: str, device: torch.device | str = "cpu") -> DiffusionPrior:
    """Load a shipped prior, with its consistency model, on ``device``; no network access.

    Args:
        name: one of :func:`available_priors` (``"digits"``, ``"rings"``).
        device: where to put the networks.

    Returns:
        A :class:`~sqdf_bbo.prior.DiffusionPrior` with both networks in eval
        mode; the consistency model is frozen (``requires_grad=False``), the
        denoiser's parameters keep ``requires_grad=True`` so that
        ``prior.clone()`` is directly trainable (a fine-tuner freezes its own
        reference copy).
    """
    from .prior import DiffusionPrior

    path = prior_path(name)
    prior = DiffusionPrior.load(path, device=device)
    prior.denoiser.eval()
    if prior.consistency is not None:
        prior.consistency.eval()
        prior.consistency.requires_grad_(False)
    return prior
