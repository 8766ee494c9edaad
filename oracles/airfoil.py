"""Airfoils scored by NeuralFoil: Kulfan (CST) geometry and the :class:`NeuralFoilOracle`.

A design is an 18-number Kulfan vector k (:data:`sqdf_bbo.data.KULFAN_NAMES`: 8 upper
weights w_u, 8 lower weights w_l, the leading-edge weight a, the trailing-edge thickness
τ), or its standardized form z = (k − mean) / std when the oracle is given the airfoil
prior's :class:`~sqdf_bbo.data.KulfanStandardization`. Its surfaces at x ∈ [0, 1]:

    C(x)      = √x (1 − x)                                  (class function, N1 = ½, N2 = 1)
    B_i(x)    = binom(7, i) x^i (1 − x)^(7 − i)             (Bernstein basis, i = 0 … 7)
    y_u(x)    = C(x) Σ_i w_u,i B_i(x) + x τ / 2 + a x (1 − x)^8.5
    y_l(x)    = C(x) Σ_i w_l,i B_i(x) − x τ / 2 + a x (1 − x)^8.5
    t(x)      = y_u(x) − y_l(x),   t_max = max over x = 0, 0.01, …, 1 (101 points)

The oracle's value is NeuralFoil's lift-to-drag ratio CL / CD (``neuralfoil`` is a numpy
MLP trained on XFoil runs; the ``airfoil`` extra installs it). A point fails (NaN and a
reason in ``oracle.failures``, never an exception) when its design is not finite, when the
upper surface lies more than ``intersection_tol`` chord below the lower one anywhere
(self-intersection, including a negative trailing-edge gap), when t_max is below
``min_thickness``, or when any of NeuralFoil's CL, CD, CM is not finite (an infinite drag
would otherwise score L/D = ±0). Complex designs are refused (``TypeError``), as by every
oracle.

The same two geometry rules as known constraints for the optimizers
(:func:`airfoil_constraints`, torch, differentiable in the design, feasible where ≥ 0):

    thickness margin       t_max(k) − min_thickness
    intersection margin    min_x t(x) + intersection_tol

evaluated on the same stations, so a design is feasible for them exactly when the oracle
finds neither failure (tested on database airfoils and random designs).

NeuralFoil also returns ``analysis_confidence`` ∈ [0, 1]: it falls toward 0 away from its
training data, where its CL / CD can be fooled (an optimizer may find L/D that a larger
NeuralFoil model and XFoil disagree with). The oracle does not use it; benchmarks report it
(:meth:`NeuralFoilOracle.analyze`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from sqdf_bbo.config import Range, check_fields
from sqdf_bbo.constraints import Constraint
from sqdf_bbo.data import KULFAN_DIM, KulfanStandardization

from .base import Evaluation, Oracle

__all__ = [
    "NeuralFoilConfig",
    "NeuralFoilOracle",
    "MODEL_SIZES",
    "THICKNESS_GRID",
    "kulfan_surfaces",
    "kulfan_thickness",
    "kulfan_coordinates",
    "geometry_failures",
    "neuralfoil_aero",
    "kulfan_thickness_torch",
    "airfoil_constraints",
]

ModelSize = Literal[
    "xxsmall", "xsmall", "small", "medium", "large", "xlarge", "xxlarge", "xxxlarge"
]
MODEL_SIZES: tuple[str, ...] = (
    "xxsmall",
    "xsmall",
    "small",
    "medium",
    "large",
    "xlarge",
    "xxlarge",
    "xxxlarge",
)
#: x/c stations where thickness and self-intersection are checked (aerosandbox's default too).
THICKNESS_GRID = np.linspace(0.0, 1.0, 101)


# ---------------------------------------------------------------------------- geometry
def _as_kulfan(k: Any) -> np.ndarray:
    """Kulfan vectors as a float64 array ``(n, 18)`` (a single ``(18,)`` vector gets n = 1);
    ``TypeError`` for complex or non-numeric input (never silently cast)."""
    if isinstance(k, torch.Tensor):
        k = k.detach().cpu().numpy()
    arr = np.asarray(k)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"Kulfan vectors must be real numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != KULFAN_DIM:
        raise ValueError(f"Kulfan vectors must have shape (n, {KULFAN_DIM}), got {arr.shape}")
    return arr


def kulfan_surfaces(k: Any, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Upper and lower surface heights of Kulfan vectors at stations ``x``.

    Args:
        k: ``(n, 18)`` (or ``(18,)``) Kulfan vectors.
        x: ``(m,)`` x/c stations in [0, 1].

    Returns:
        ``(y_upper, y_lower)``, each ``(n, m)`` float64 (formulas in the module docstring).
    """
    kk = _as_kulfan(k)
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    # 1. Bernstein basis (8, m) and class function (m,).
    i = np.arange(8)
    binom = np.array([math.comb(7, int(j)) for j in i], dtype=np.float64)
    basis = binom[:, None] * x[None] ** i[:, None] * (1 - x[None]) ** (7 - i)[:, None]
    cls = np.sqrt(x) * (1 - x)
    # 2. Shape functions of each side, then the trailing-edge gap and the LE modification.
    le = kk[:, 16:17] * x[None] * (1 - x[None]) ** 8.5
    te = x[None] * kk[:, 17:18] / 2
    upper = cls[None] * (kk[:, :8] @ basis) + te + le
    lower = cls[None] * (kk[:, 8:16] @ basis) - te + le
    return upper, lower


def kulfan_thickness(k: Any, x: np.ndarray = THICKNESS_GRID) -> np.ndarray:
    """Local thickness t(x) = y_u − y_l, ``(n, m)`` for ``k (n, 18)`` and ``x (m,)``."""
    upper, lower = kulfan_surfaces(k, x)
    return upper - lower


def kulfan_coordinates(k: Any, n_points_per_side: int = 81) -> np.ndarray:
    """Closed outline of each airfoil, TE → upper → LE → lower → TE (the ``.dat`` order).

    Stations are cosine-spaced. Returns ``(n, 2 · n_points_per_side − 1, 2)`` (x, y) float64.
    """
    if int(n_points_per_side) < 2:
        raise ValueError(f"n_points_per_side must be >= 2, got {n_points_per_side}")
    x = (1 - np.cos(np.linspace(0.0, math.pi, int(n_points_per_side)))) / 2  # 0 … 1
    upper, lower = kulfan_surfaces(k, x)
    n = upper.shape[0]
    xs = np.concatenate([x[::-1], x[1:]])
    ys = np.concatenate([upper[:, ::-1], lower[:, 1:]], axis=1)
    return np.stack([np.broadcast_to(xs, (n, xs.size)), ys], axis=-1)


def geometry_failures(
    k: Any, min_thickness: float | None = 0.12, intersection_tol: float = 1e-3
) -> dict[int, str]:
    """``{row: reason}`` of the Kulfan vectors ``k (n, 18)`` that are not valid airfoils.

    Checks, in order: non-finite numbers; self-intersection (t(x) < −``intersection_tol``
    at any station of :data:`THICKNESS_GRID`, which includes a negative trailing-edge gap);
    t_max < ``min_thickness`` (skipped when ``None``).
    """
    kk = _as_kulfan(k)
    reasons: dict[int, str] = {}
    finite = np.isfinite(kk).all(1)
    for r in np.flatnonzero(~finite):
        reasons[int(r)] = "non-finite design"
    if not finite.any():
        return reasons
    rows = np.flatnonzero(finite)
    t = kulfan_thickness(kk[rows])
    t_min, t_max = t.min(1), t.max(1)
    for j, r in enumerate(rows):
        if t_min[j] < -intersection_tol:
            at = THICKNESS_GRID[int(t[j].argmin())]
            reasons[int(r)] = (
                f"self-intersecting: upper surface {-t_min[j]:.4f} chord below the lower "
                f"at x/c = {at:.2f}"
            )
        elif min_thickness is not None and t_max[j] < min_thickness:
            reasons[int(r)] = f"t_max {t_max[j]:.4f} < {min_thickness:g}"
    return reasons


def kulfan_thickness_torch(k: torch.Tensor, x: np.ndarray = THICKNESS_GRID) -> torch.Tensor:
    """t(x) = y_u − y_l of Kulfan vectors ``k (n, 18)`` at stations ``x (m,)``: ``(n, m)``,
    differentiable in ``k``, in ``k``'s dtype (the leading-edge terms cancel:
    t = C(x) Σ_i (w_u,i − w_l,i) B_i(x) + x τ)."""
    xs = torch.as_tensor(np.asarray(x, dtype=np.float64), dtype=k.dtype, device=k.device)
    i = torch.arange(8, dtype=k.dtype, device=k.device)
    binom = torch.tensor([math.comb(7, j) for j in range(8)], dtype=k.dtype, device=k.device)
    basis = binom[:, None] * xs[None] ** i[:, None] * (1 - xs[None]) ** (7 - i)[:, None]
    cls = torch.sqrt(xs) * (1 - xs)
    return cls[None] * ((k[:, :8] - k[:, 8:16]) @ basis) + xs[None] * k[:, 17:18]


def airfoil_constraints(
    standardization: KulfanStandardization | None = None,
    min_thickness: float | None = 0.12,
    intersection_tol: float = 1e-3,
) -> list[Constraint]:
    """The oracle's geometry rules as known constraints on designs ``(n, 18)``.

    Args:
        standardization: designs are standardized vectors z (the airfoil prior's), mapped to
            Kulfan vectors first; ``None``: designs are Kulfan vectors.
        min_thickness: the thickness bound (``None``: no thickness constraint).
        intersection_tol: how far the upper surface may dip below the lower one.

    Returns ``[Constraint("no_self_intersection"), Constraint("t_max")]`` (the second only
    with a thickness bound), each mapping designs to ``(n,)`` margins in chord units,
    computed in float64 on :data:`THICKNESS_GRID`, ≥ 0 exactly where
    :func:`geometry_failures` finds no failure of that kind.
    """

    def thickness(z: torch.Tensor) -> torch.Tensor:
        k = z.double()
        if standardization is not None:
            k = standardization.to_kulfan(k)
        return kulfan_thickness_torch(k)

    def no_self_intersection(z: torch.Tensor) -> torch.Tensor:
        return thickness(z).min(1).values + intersection_tol

    out = [Constraint(no_self_intersection, "no_self_intersection")]
    if min_thickness is not None:
        bound = float(min_thickness)

        def t_max(z: torch.Tensor) -> torch.Tensor:
            return thickness(z).max(1).values - bound

        out.append(Constraint(t_max, "t_max"))
    return out


def neuralfoil_aero(
    k: Any,
    *,
    alpha: float = 5.0,
    Re: float = 1e6,
    n_crit: float = 9.0,
    model_size: str = "xlarge",
) -> dict[str, np.ndarray]:
    """NeuralFoil at one operating point for Kulfan vectors ``k (n, 18)``.

    Returns ``{"CL", "CD", "CM", "LD", "confidence"}``, each ``(n,)`` float64 (``LD`` =
    CL / CD, ``confidence`` = NeuralFoil's ``analysis_confidence``). Needs ``neuralfoil``.
    """
    try:
        import neuralfoil  # optional: the airfoil extra
    except ImportError as err:
        raise ImportError(
            'the NeuralFoil oracle needs neuralfoil; install the extra: pip install -e ".[airfoil]"'
        ) from err
    kk = _as_kulfan(k)
    params = {
        "upper_weights": kk[:, :8].T,  # NeuralFoil lays a batch out as (8, n)
        "lower_weights": kk[:, 8:16].T,
        "leading_edge_weight": kk[:, 16],
        "TE_thickness": kk[:, 17],
    }
    with np.errstate(all="ignore"):
        out = neuralfoil.get_aero_from_kulfan_parameters(
            params, alpha=alpha, Re=Re, n_crit=n_crit, model_size=model_size
        )
        cl = np.asarray(out["CL"], dtype=np.float64).reshape(-1)
        cd = np.asarray(out["CD"], dtype=np.float64).reshape(-1)
        ld = cl / cd
    return {
        "CL": cl,
        "CD": cd,
        "CM": np.asarray(out["CM"], dtype=np.float64).reshape(-1),
        "LD": ld,
        "confidence": np.asarray(out["analysis_confidence"], dtype=np.float64).reshape(-1),
    }


# ---------------------------------------------------------------------------- oracle
@dataclass(frozen=True)
class NeuralFoilConfig:
    """Operating point and validity rules of :class:`NeuralFoilOracle`.

    Attributes:
        model_size: NeuralFoil network (``xxsmall`` … ``xxxlarge``; larger = more accurate,
            slower: a batch of 256 takes ~10 ms at ``xlarge``, ~90 ms at ``xxxlarge``).
        alpha: angle of attack in degrees, in [-180, 180].
        Re: Reynolds number, in [1e2, 1e9] (NeuralFoil was trained around Re ≈ 3e5).
        n_crit: e^n transition amplification factor (9 = average wind tunnel), in (0, 100].
        min_thickness: smallest valid t_max in chord units; ``None`` disables the check.
        intersection_tol: how far (chord) the upper surface may dip below the lower one
            before the point counts as self-intersecting.
    """

    #: The sane range of each numeric setting (checked by ``check_fields``): angles of
    #: attack in degrees; NeuralFoil's training data are centred on ln Re = 12.5 ± 3.5.
    LIMITS: ClassVar[dict[str, Range]] = {
        "alpha": Range(-180, 180),
        "Re": Range(1e2, 1e9),
        "n_crit": Range(0, 100, low_open=True),
        "min_thickness": Range(0, 1, high_open=True),
        "intersection_tol": Range(0, 1),
    }

    model_size: ModelSize = "xlarge"
    alpha: float = 5.0
    Re: float = 1e6
    n_crit: float = 9.0
    min_thickness: float | None = 0.12
    intersection_tol: float = 1e-3

    def __post_init__(self) -> None:
        check_fields(self)  # types, and the ranges of LIMITS


class NeuralFoilOracle(Oracle):
    """Lift-to-drag ratio CL / CD of an airfoil by NeuralFoil, in process and batched.

    Designs have shape ``(n, 18)``: Kulfan vectors, or standardized vectors when
    ``standardization`` is given (then k = mean + std · z first; the airfoil prior's
    samples are such z, see :func:`sqdf_bbo.diffusion.priors.load_standardization`). Invalid
    geometry and non-finite outputs are failed points (module docstring).

    Args:
        model_size, alpha, Re, n_crit, min_thickness, intersection_tol: see
            :class:`NeuralFoilConfig`.
        standardization: map from designs to Kulfan vectors, or ``None`` (designs are
            Kulfan vectors).
        noise_std, negate, seed, executor, chunk_size, progress: see
            :class:`~oracles.base.Oracle`.
    """

    name = "neuralfoil"
    shape = (KULFAN_DIM,)

    def __init__(
        self,
        *,
        model_size: str = "xlarge",
        alpha: float = 5.0,
        Re: float = 1e6,
        n_crit: float = 9.0,
        min_thickness: float | None = 0.12,
        intersection_tol: float = 1e-3,
        standardization: KulfanStandardization | None = None,
        **kwargs: Any,
    ) -> None:
        self.config = NeuralFoilConfig(
            model_size=model_size,  # type: ignore[arg-type]
            alpha=alpha,
            Re=Re,
            n_crit=n_crit,
            min_thickness=min_thickness,
            intersection_tol=intersection_tol,
        )
        if standardization is not None and not isinstance(standardization, KulfanStandardization):
            raise TypeError(
                "standardization must be a KulfanStandardization or None, "
                f"got {type(standardization).__name__}"
            )
        self.standardization = standardization
        super().__init__(**kwargs)

    def kulfan(self, x: torch.Tensor | np.ndarray) -> np.ndarray:
        """Kulfan vectors ``(n, 18)`` float64 of designs ``x (n, 18)``."""
        arr = _as_kulfan(x)
        return arr if self.standardization is None else self.standardization.to_kulfan(arr)

    def analyze(
        self, x: torch.Tensor | np.ndarray, model_size: str | None = None
    ) -> dict[str, Any]:
        """Everything known about designs ``x (n, 18)`` at this oracle's operating point.

        Returns ``{"CL", "CD", "CM", "LD", "confidence", "t_max"}`` (each ``(n,)`` float64,
        NaN where the geometry is invalid) and ``"failure"`` (``(n,)`` object array: the
        reason, or ``""``). ``model_size`` overrides the network (e.g. ``"xxxlarge"`` to
        check the oracle's values with a larger model).
        """
        k = self.kulfan(x)
        n = k.shape[0]
        failures = geometry_failures(k, self.config.min_thickness, self.config.intersection_tol)
        out: dict[str, Any] = {
            key: np.full(n, np.nan) for key in ("CL", "CD", "CM", "LD", "confidence", "t_max")
        }
        finite = np.isfinite(k).all(1)
        if finite.any():
            out["t_max"][finite] = kulfan_thickness(k[finite]).max(1)
        ok = np.array([i not in failures for i in range(n)], dtype=bool)
        if ok.any():
            c = self.config
            aero = neuralfoil_aero(
                k[ok],
                alpha=c.alpha,
                Re=c.Re,
                n_crit=c.n_crit,
                model_size=model_size or c.model_size,
            )
            for key, v in aero.items():
                out[key][ok] = v
        outputs = np.stack([out[key] for key in ("CL", "CD", "CM", "LD")])
        for i in np.flatnonzero(ok & ~np.isfinite(outputs).all(0)):
            failures[int(i)] = (
                f"non-finite NeuralFoil output (CL={out['CL'][i]}, CD={out['CD'][i]}, "
                f"CM={out['CM'][i]})"
            )
        out["failure"] = np.array([failures.get(i, "") for i in range(n)], dtype=object)
        return out

    def _evaluate(self, x: torch.Tensor) -> Evaluation:
        """L/D of ``x (m, 18)``; failed points as NaN with their reasons."""
        res = self.analyze(x)
        reasons = {i: str(r) for i, r in enumerate(res["failure"]) if r}
        values = res["LD"].copy()
        values[list(reasons)] = np.nan
        return Evaluation(values, reasons)

    def __repr__(self) -> str:
        c = self.config
        return (
            f"NeuralFoilOracle(model_size={c.model_size!r}, alpha={c.alpha}, Re={c.Re:g}, "
            f"n_crit={c.n_crit}, min_thickness={c.min_thickness}, "
            f"standardized={self.standardization is not None}, noise_std={self.noise_std}, "
            f"seed={self.seed})"
        )
