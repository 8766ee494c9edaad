"""Offline data sets behind the shipped priors: 8×8 digits and a 2-D ring of Gaussians.

Digits: scikit-learn's bundled ``load_digits`` (1797 images of 8×8 pixels with
integer intensities 0…16, ten classes; no download). Pixels are scaled to
[-1, 1] by ``x / 8 − 1`` and shaped ``(n, 1, 8, 8)``. The split is a fixed
stratified 80/20 split (``train_test_split(test_size=0.2, stratify=y,
random_state=0)``): **1437 training images, 360 held-out images**, disjoint,
every class in both. The digits prior and the digits classifier are trained on
the training part only; the held-out part is what their evidence is measured on.

Rings: an equal-weight mixture of 8 isotropic Gaussians with std 0.15 whose
means sit evenly on a circle of radius 2 (angles 2πk/8, k = 0…7). Its density
is exact, so log-likelihoods of samples are a ground-truth naturalness score.

Airfoils: the UIUC airfoil coordinate database that ``aerosandbox`` (the ``airfoil``
extra) ships inside its package, 2174 ``.dat`` files, each fitted once by
``aerosandbox``'s ``get_kulfan_parameters(coords, n_weights_per_side=8)`` to an 18-number
Kulfan (CST) vector (:data:`KULFAN_NAMES`: 8 upper weights, 8 lower weights, the
leading-edge weight, the trailing-edge thickness). The split is a fixed permutation of
the sorted names (``numpy.random.default_rng(0)``): the first 20 %, **435 held-out
airfoils**, and **1739 training airfoils**. Only :func:`airfoil_split` needs
``aerosandbox``; :class:`KulfanStandardization` (the affine map between Kulfan vectors and
the standardized vectors the airfoil prior samples) is plain numpy/torch.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

__all__ = [
    "DigitsSplit",
    "digits_split",
    "DIGITS_SEED",
    "DIGITS_HELDOUT_FRACTION",
    "DIGITS_N_TRAIN",
    "DIGITS_N_HELDOUT",
    "RingsDistribution",
    "digits_to_unit",
    "AirfoilSplit",
    "airfoil_split",
    "airfoil_database_names",
    "kulfan_from_database",
    "KulfanStandardization",
    "KULFAN_NAMES",
    "KULFAN_DIM",
    "AIRFOIL_SEED",
    "AIRFOIL_N_DATABASE",
    "AIRFOIL_N_TRAIN",
    "AIRFOIL_N_HELDOUT",
]

DIGITS_SEED = 0
DIGITS_HELDOUT_FRACTION = 0.2
DIGITS_N_TRAIN = 1437
DIGITS_N_HELDOUT = 360


@dataclass(frozen=True)
class DigitsSplit:
    """The fixed digits split.

    Attributes:
        x_train: ``(1437, 1, 8, 8)`` float32 in [-1, 1].
        y_train: ``(1437,)`` long labels 0…9.
        x_heldout: ``(360, 1, 8, 8)`` float32 in [-1, 1].
        y_heldout: ``(360,)`` long labels 0…9.
        train_index: ``(1437,)`` row indices into ``load_digits()`` (for provenance).
        heldout_index: ``(360,)`` row indices into ``load_digits()``.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_heldout: torch.Tensor
    y_heldout: torch.Tensor
    train_index: torch.Tensor
    heldout_index: torch.Tensor


def digits_to_unit(images: torch.Tensor) -> torch.Tensor:
    """Map raw sklearn intensities 0…16 to [-1, 1] (``x / 8 − 1``); shape preserved."""
    return images / 8.0 - 1.0


@lru_cache(maxsize=1)
def _digits_split_cached() -> DigitsSplit:
    # lazy: scikit-learn is slow to import, and only the digits data set needs it
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split  # lazy

    data = load_digits()
    images = np.asarray(data.images, dtype=np.float32)  # (1797, 8, 8), values 0..16
    labels = np.asarray(data.target, dtype=np.int64)
    idx = np.arange(len(labels))
    tr, ho = train_test_split(
        idx, test_size=DIGITS_HELDOUT_FRACTION, stratify=labels, random_state=DIGITS_SEED
    )
    tr, ho = np.sort(tr), np.sort(ho)
    x = digits_to_unit(torch.from_numpy(images)).unsqueeze(1)
    y = torch.from_numpy(labels)
    tr_t, ho_t = torch.from_numpy(tr), torch.from_numpy(ho)
    split = DigitsSplit(x[tr_t], y[tr_t], x[ho_t], y[ho_t], tr_t, ho_t)
    if len(tr) != DIGITS_N_TRAIN or len(ho) != DIGITS_N_HELDOUT:
        raise RuntimeError(
            f"scikit-learn's digits split gave {len(tr)}/{len(ho)} images, "
            f"expected {DIGITS_N_TRAIN}/{DIGITS_N_HELDOUT}"
        )
    return split


def digits_split() -> DigitsSplit:
    """The fixed stratified 80/20 split of sklearn's 8×8 digits (1437 train / 360 held-out).

    Returns clones, so callers may modify the tensors freely.
    """
    s = _digits_split_cached()
    return DigitsSplit(
        *(
            t.clone()
            for t in (
                s.x_train,
                s.y_train,
                s.x_heldout,
                s.y_heldout,
                s.train_index,
                s.heldout_index,
            )
        )
    )


class RingsDistribution:
    """Equal-weight mixture of ``n_components`` isotropic 2-D Gaussians on a circle.

    p(x) = (1/C) Σ_c N(x; μ_c, s² I),  μ_c = R (cos 2πc/C, sin 2πc/C).

    Args:
        n_components: C (default 8).
        radius: R (default 2.0).
        std: s (default 0.15).
    """

    def __init__(self, n_components: int = 8, radius: float = 2.0, std: float = 0.15) -> None:
        if int(n_components) < 1 or not radius > 0 or not std > 0:
            raise ValueError(
                "RingsDistribution needs n_components >= 1, radius > 0 and std > 0; "
                f"got n_components={n_components}, radius={radius}, std={std}"
            )
        self.n_components = int(n_components)
        self.radius = float(radius)
        self.std = float(std)
        angles = 2 * math.pi * torch.arange(self.n_components, dtype=torch.float64)
        angles = angles / self.n_components
        self.means = self.radius * torch.stack([angles.cos(), angles.sin()], dim=-1)  # (C, 2)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` draws, shape ``(n, 2)`` float32, all randomness from ``generator``."""
        if int(n) < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if not isinstance(generator, torch.Generator):
            raise TypeError("generator must be a torch.Generator (seeded by the caller)")
        comp = torch.randint(self.n_components, (int(n),), generator=generator)
        z = torch.randn(int(n), 2, generator=generator, dtype=torch.float64)
        return (self.means[comp] + self.std * z).float()

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log-density, x: ``(n, 2)`` → ``(n,)`` (computed in float64, returned in x's dtype)."""
        if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[1] != 2:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must have shape (n, 2), got {got}")
        xd = x.to(torch.float64)
        means = self.means.to(xd.device)
        # 1. log N(x; μ_c, s² I) = −|x − μ_c|² / (2 s²) − log(2π s²) for each component.
        sq = (xd[:, None, :] - means[None]).pow(2).sum(-1)  # (n, C)
        log_comp = -sq / (2 * self.std**2) - math.log(2 * math.pi * self.std**2)
        # 2. Mix with equal weights 1/C.
        out = torch.logsumexp(log_comp, dim=1) - math.log(self.n_components)
        return out.to(x.dtype if x.is_floating_point() else torch.float64)

    def __repr__(self) -> str:
        return (
            f"RingsDistribution(n_components={self.n_components}, radius={self.radius}, "
            f"std={self.std})"
        )


# ---------------------------------------------------------------------------- airfoils
KULFAN_NAMES: tuple[str, ...] = (
    *(f"upper_{i}" for i in range(8)),
    *(f"lower_{i}" for i in range(8)),
    "leading_edge_weight",
    "TE_thickness",
)
KULFAN_DIM = len(KULFAN_NAMES)  # 18
AIRFOIL_SEED = 0
AIRFOIL_N_DATABASE = 2174
AIRFOIL_N_HELDOUT = 435
AIRFOIL_N_TRAIN = AIRFOIL_N_DATABASE - AIRFOIL_N_HELDOUT  # 1739

_Array = TypeVar("_Array", torch.Tensor, np.ndarray)


@dataclass(frozen=True)
class KulfanStandardization:
    """The affine map between Kulfan vectors k and standardized vectors z = (k − mean) / std.

    The airfoil prior samples z (shape ``(n, 18)``, every coordinate of unit variance over
    the training airfoils); :meth:`to_kulfan` gives the Kulfan vectors an aerodynamic
    model reads. Both maps take and return a ``torch.Tensor`` or a ``numpy.ndarray`` of
    shape ``(n, 18)`` (or ``(18,)``), in the input's type.

    Attributes:
        mean: per-coordinate mean of the training Kulfan vectors, 18 floats.
        std: per-coordinate standard deviation (> 0), 18 floats.
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        mean = tuple(float(v) for v in self.mean)
        std = tuple(float(v) for v in self.std)
        if len(mean) != KULFAN_DIM or len(std) != KULFAN_DIM:
            raise ValueError(
                f"mean and std need {KULFAN_DIM} numbers each, got {len(mean)} and {len(std)}"
            )
        if not all(math.isfinite(v) for v in mean) or not all(
            math.isfinite(v) and v > 0 for v in std
        ):
            raise ValueError("mean must be finite and std finite and > 0")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    @classmethod
    def fit(cls, kulfan: np.ndarray | torch.Tensor) -> KulfanStandardization:
        """Mean and (population) std of Kulfan vectors ``(n, 18)``."""
        k = np.asarray(kulfan, dtype=np.float64)
        if k.ndim != 2 or k.shape[1] != KULFAN_DIM or k.shape[0] < 2:
            raise ValueError(f"need Kulfan vectors of shape (n >= 2, {KULFAN_DIM}), got {k.shape}")
        return cls(tuple(k.mean(0)), tuple(k.std(0)))

    def _params(self, like: _Array) -> tuple[Any, Any]:
        if isinstance(like, torch.Tensor):
            kw = {"dtype": like.dtype, "device": like.device}
            return torch.tensor(self.mean, **kw), torch.tensor(self.std, **kw)
        return np.asarray(self.mean), np.asarray(self.std)

    def to_kulfan(self, z: _Array) -> _Array:
        """k = mean + std · z; ``(n, 18)`` or ``(18,)``, same type as ``z``."""
        mean, std = self._params(z)
        return mean + std * z

    def from_kulfan(self, k: _Array) -> _Array:
        """z = (k − mean) / std; ``(n, 18)`` or ``(18,)``, same type as ``k``."""
        mean, std = self._params(k)
        return (k - mean) / std

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready ``{"format", "names", "mean", "std"}``."""
        return {
            "format": "sqdf-bbo-kulfan-standardization",
            "names": list(KULFAN_NAMES),
            "mean": list(self.mean),
            "std": list(self.std),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> KulfanStandardization:
        """Inverse of :meth:`to_dict` (the names must be :data:`KULFAN_NAMES`)."""
        if not isinstance(d, dict) or d.get("format") != "sqdf-bbo-kulfan-standardization":
            raise ValueError("not a Kulfan standardization record")
        if tuple(d.get("names", ())) != KULFAN_NAMES:
            raise ValueError(f"coordinate names differ from {KULFAN_NAMES}")
        return cls(tuple(d["mean"]), tuple(d["std"]))

    def save(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as JSON to ``path``; returns it."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> KulfanStandardization:
        """Read a file written by :meth:`save`."""
        return cls.from_dict(json.loads(Path(path).read_text()))


@dataclass(frozen=True)
class AirfoilSplit:
    """The fixed split of the UIUC database in Kulfan coordinates.

    Attributes:
        names_train: 1739 database names (``.dat`` stems), sorted.
        kulfan_train: ``(1739, 18)`` float64 Kulfan vectors (:data:`KULFAN_NAMES` order).
        names_heldout: 435 names, sorted.
        kulfan_heldout: ``(435, 18)`` float64.
    """

    names_train: tuple[str, ...]
    kulfan_train: np.ndarray
    names_heldout: tuple[str, ...]
    kulfan_heldout: np.ndarray


def _require_aerosandbox() -> Any:
    try:
        from aerosandbox.geometry.airfoil import airfoil_families  # optional: airfoil extra
    except ImportError as err:
        raise ImportError(
            "the airfoil data set needs aerosandbox (the UIUC database ships inside it); "
            'install the extra: pip install -e ".[airfoil]"'
        ) from err
    return airfoil_families


def airfoil_database_names() -> list[str]:
    """Sorted names (``.dat`` stems) of the UIUC database inside the installed aerosandbox."""
    _require_aerosandbox()
    import aerosandbox  # optional: the airfoil extra

    root = Path(aerosandbox.__file__).resolve().parent / "geometry" / "airfoil"
    return sorted(p.stem for p in (root / "airfoil_database").glob("*.dat"))


def kulfan_from_database(name: str) -> np.ndarray:
    """The 18-number Kulfan vector of database airfoil ``name`` (8 weights per side)."""
    families = _require_aerosandbox()
    coords = families.get_UIUC_coordinates(name)
    kp = families.get_kulfan_parameters(coords, n_weights_per_side=8)
    return np.concatenate(
        [
            np.asarray(kp["upper_weights"], dtype=np.float64).reshape(8),
            np.asarray(kp["lower_weights"], dtype=np.float64).reshape(8),
            [float(kp["leading_edge_weight"]), float(kp["TE_thickness"])],
        ]
    )


@lru_cache(maxsize=1)
def _airfoil_split_cached() -> AirfoilSplit:
    names = airfoil_database_names()
    if len(names) != AIRFOIL_N_DATABASE:
        raise RuntimeError(
            f"the installed aerosandbox ships {len(names)} airfoils, expected "
            f"{AIRFOIL_N_DATABASE} (aerosandbox 4.2.x); the split would differ"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kulfan = np.stack([kulfan_from_database(n) for n in names])  # (2174, 18)
    order = np.random.default_rng(AIRFOIL_SEED).permutation(len(names))
    ho = np.sort(order[:AIRFOIL_N_HELDOUT])
    tr = np.sort(order[AIRFOIL_N_HELDOUT:])
    return AirfoilSplit(
        tuple(names[i] for i in tr), kulfan[tr], tuple(names[i] for i in ho), kulfan[ho]
    )


def airfoil_split() -> AirfoilSplit:
    """The fixed split of the UIUC database (1739 train / 435 held-out Kulfan vectors).

    Needs the ``airfoil`` extra (aerosandbox). Fitting all 2174 airfoils takes a few
    seconds; the result is cached per process and returned as copies.
    """
    s = _airfoil_split_cached()
    return AirfoilSplit(
        s.names_train, s.kulfan_train.copy(), s.names_heldout, s.kulfan_heldout.copy()
    )
