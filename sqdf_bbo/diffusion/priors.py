"""The priors shipped inside the package, loaded offline by name.

Each prior lives in ``sqdf_bbo/embedded/<name>/`` in the
:meth:`DiffusionPrior.save <sqdf_bbo.diffusion.prior.DiffusionPrior.save>` format, with
its distilled consistency model attached. Nothing is downloaded and no file
outside the package folder is read. Reproduce them with
``python -m benchmarks.train_priors``.

=========  ===========  =====================================================
name       shape        what
=========  ===========  =====================================================
digits     (1, 8, 8)    UNet2DModel on sklearn's 8×8 digits, values in [-1, 1]
rings      (2,)         MLPDenoiser on an 8-Gaussian ring (radius 2), unbounded
airfoil    (18,)        MLPDenoiser on standardized Kulfan vectors of the UIUC
                        airfoils (training split), unbounded
digits-…   (2, 4, 4)    ``digits-latent``: class-conditional UNet2DModel on AutoencoderKL
                        latents of the digits; designs decoded to (1, 8, 8) in [-1, 1];
                        conditions are labels 0–9 (docs/latent.md)
ehrlich-…  (L, 32)      SequenceDenoiser on one-hot sequences of an Ehrlich
                        instance's chain (L = 32 and 128; docs/sequences.md)
=========  ===========  =====================================================

The airfoil prior samples standardized vectors z = (k − mean) / std of 18-number Kulfan
vectors k. Its designs (what ``ask`` returns, what the oracle sees) are these z: the
prior has no ``value_range``, so :meth:`DiffusionPrior.to_design` is the identity, and
:func:`load_standardization` returns the shipped mean/std with ``to_kulfan(z)`` /
``from_kulfan(k)``. Why z rather than a prior whose design map de-standardizes: every
method then searches, fits its surrogate and measures diversity in coordinates where each
Kulfan number has unit spread over real airfoils (raw trailing-edge thicknesses vary by
0.007, weights by 0.2), and the one affine map to Kulfan vectors sits with the oracle
(``NeuralFoilOracle(standardization=...)``), so no prior code changes. Loading the prior
or its standardization needs neither aerosandbox nor neuralfoil. A lab reads Kulfan numbers,
not z: the loaded prior carries the standardization as its ``units``
(:class:`~sqdf_bbo.diffusion.units.DesignUnits`), so ``sqdf-bbo ask`` / ``export`` write the
18 Kulfan parameters under their names and ``tell`` / ``add`` read them back.
"""

from __future__ import annotations

from pathlib import Path

import torch

from sqdf_bbo.checksums import verify_checksums
from sqdf_bbo.data import KULFAN_NAMES, KulfanStandardization
from sqdf_bbo.diffusion.prior import DiffusionPrior
from sqdf_bbo.diffusion.units import DesignUnits
from sqdf_bbo.registry import Registry

__all__ = [
    "load_prior",
    "load_standardization",
    "available_priors",
    "PRIORS",
    "prior_path",
    "EMBEDDED_DIR",
    "STANDARDIZATION_FILE",
]

EMBEDDED_DIR = Path(__file__).resolve().parents[1] / "embedded"
PRIORS: Registry[str] = Registry("prior")
"""The shipped priors: name → one line of what it is (its weights: ``EMBEDDED_DIR/name``)."""
for _name, _what in {
    "digits": "UNet2DModel prior of sklearn's 8x8 digits, shape (1, 8, 8), values in [-1, 1]",
    "rings": "MLPDenoiser prior of an 8-component Gaussian ring of radius 2, shape (2,)",
    "airfoil": "MLPDenoiser prior of standardized Kulfan vectors of UIUC airfoils, shape (18,)",
    "digits-latent": "class-conditional latent prior of sklearn's 8x8 digits: UNet2DModel on "
    "2x4x4 AutoencoderKL latents, labels 0-9, decoded to (1, 8, 8)",
    "ehrlich-v32-l32-c4-k4-q4": "SequenceDenoiser prior of the chain of Ehrlich(32, 32, 4, 4, 4, "
    "seed 0): one-hot sequences (32, 32)",
    "ehrlich-v32-l128-c4-k4-q4": "SequenceDenoiser prior of the chain of Ehrlich(32, 128, 4, 4, 4, "
    "seed 0): one-hot sequences (128, 32)",
}.items():
    PRIORS.register(_name, _what)
#: File in a prior's folder holding the standardization its designs are expressed in.
STANDARDIZATION_FILE = "standardization.json"


def available_priors() -> list[str]:
    """Names accepted by :func:`load_prior`, sorted."""
    return sorted(PRIORS)


def prior_path(name: str) -> Path:
    """The package folder holding prior ``name`` (raises ``ValueError`` for unknown names)."""
    if not isinstance(name, str) or name not in PRIORS:
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
        name: one of :func:`available_priors` (``"airfoil"``, ``"digits"``, ``"rings"``).
        device: where to put the networks.

    Returns:
        A :class:`~sqdf_bbo.diffusion.prior.DiffusionPrior` with both networks in eval
        mode; the consistency model is frozen (``requires_grad=False``), the
        denoiser's parameters keep ``requires_grad=True`` so that
        ``prior.clone()`` is directly trainable (a fine-tuner freezes its own
        reference copy).
    """
    path = prior_path(name)
    prior = DiffusionPrior.load(path, device=device)
    if prior.units is None and (path / STANDARDIZATION_FILE).is_file():
        # the study's CSV files carry the Kulfan parameters, the optimizers keep z
        std = load_standardization(name)
        prior.units = DesignUnits(KULFAN_NAMES, std.mean, std.std)
    prior.denoiser.eval()
    if prior.consistency is not None:
        prior.consistency.eval()
        prior.consistency.requires_grad_(False)
    return prior


def load_standardization(name: str = "airfoil") -> KulfanStandardization:
    """The standardization shipped with prior ``name``: its designs are z = (k − mean) / std.

    ``load_standardization("airfoil").to_kulfan(z)`` maps airfoil prior samples ``(n, 18)``
    to Kulfan vectors. Verified against the prior's ``checksums.json``; needs no extra
    package. Raises ``ValueError`` for a prior without one.
    """
    path = prior_path(name)
    file = path / STANDARDIZATION_FILE
    if not file.is_file():
        raise ValueError(f"prior {name!r} has no {STANDARDIZATION_FILE}: its designs are raw")
    verify_checksums(path)
    return KulfanStandardization.load(file)
