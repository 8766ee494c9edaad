"""Neural UCB surrogate (SEIKO-UCB / SQDF-UCB).

1. Train one MLP on the (standardized) data.
2. Freeze it; take its penultimate features ``φ(x) ∈ R^h``.
3. Add an exploration bonus from the spread of the training features. Two forms:

``bonus="official"`` (default; the official SEIKO and SQDF code, ``aesthetic_scorer.py``)::

    C     = cov(Φ)                                centered covariance of the n training
                                                  features, divided by n − 1
    μ(x)  = the MLP's own output
    b(x)  = min( β · √(φ(x)ᵀ (C + λI)⁻¹ φ(x)), b_max )      β = 0.01, λ = 1e-3,
                                                  b_max = 10, in raw reward units
    r̂(x) = μ(x) + b(x)

``bonus="ridge"`` (v0.1's neural-linear form)::

    A     = ΦᵀΦ + λI  (Φ with a constant 1 column)
    w     = A⁻¹ Φᵀ y,   μ(x) = φ(x)ᵀ w
    b(x)  = min( β · √(φ(x)ᵀ A⁻¹ φ(x)), b_max )             β = 1, λ = 1, b_max = 3
                                                  target standard deviations

The official bonus is in raw reward units, so it is divided by the target std before it
is added to the standardized mean (the base rescales back). With β = 0.01 it is small: for
points like the training data √(φᵀ(C+λI)⁻¹φ) is about √h, so the bonus is ~0.01·√h raw
units — the official UCB is nearly the plain mean, where the v0.1 ridge form put a
10–100× larger bonus on the same features.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from sqdf_bbo.config import Range, check_fields
from sqdf_bbo.surrogates._nets import HEAD_LIMITS, HeadsMLP, fit_heads
from sqdf_bbo.surrogates.base import Surrogate, SurrogateConfig, check_positive

__all__ = ["UCBConfig", "UCBSurrogate", "BONUS_FORMS", "official_ucb_bonus"]

BONUS_FORMS: tuple[str, ...] = ("official", "ridge")
_DEFAULTS = {  # (β, λ, b_max) per bonus form
    "official": (0.01, 1e-3, 10.0),
    "ridge": (1.0, 1.0, 3.0),
}


def official_ucb_bonus(
    phi: torch.Tensor, train_phi: torch.Tensor, beta: float, ridge: float, bonus_max: float
) -> torch.Tensor:
    """The official UCB bonus ``min(β·√(φᵀ(cov(Φ) + λI)⁻¹φ), b_max)``.

    Args:
        phi: query features ``(n, h)`` (not centered).
        train_phi: training features Φ ``(m, h)``, m ≥ 2; cov(Φ) is centered and divided
            by m − 1 (``torch.cov``).
        beta, ridge, bonus_max: β, λ and b_max.

    Returns:
        The bonus ``(n,)``, differentiable in ``phi``.
    """
    cov = torch.cov(train_phi.T.double())
    a_inv = torch.linalg.inv(cov + ridge * torch.eye(cov.shape[0], dtype=cov.dtype))
    return _bonus(phi, a_inv.to(phi), beta, bonus_max)


def _bonus(phi: torch.Tensor, a_inv: torch.Tensor, beta: float, bonus_max: float) -> torch.Tensor:
    """``min(β·√(φᵀA⁻¹φ), b_max)`` for features ``(n, h)`` and ``A⁻¹ (h, h)``."""
    quad = ((phi @ a_inv) * phi).sum(1)
    # sqrt has an infinite derivative at 0: keep the argument away from 0
    return (beta * torch.sqrt(quad.clamp_min(1e-12))).clamp(max=bonus_max)


@dataclass(frozen=True)
class UCBConfig(SurrogateConfig):
    """Options of :class:`UCBSurrogate`.

    Attributes (besides :class:`~sqdf_bbo.surrogates.base.SurrogateConfig`'s ``feature_std_floor``):
        bonus: ``"official"`` (centered feature covariance, MLP mean, raw-unit clip) or
            ``"ridge"`` (v0.1 neural-linear ridge posterior); see the module docstring.
        beta: exploration weight β; ``None``: 0.01 (official) / 1.0 (ridge).
        ridge: λ added to the covariance (official) or the Gram matrix (ridge); ``None``:
            1e-3 / 1.0.
        bonus_max: clip of the bonus; raw reward units for ``official`` (``None``: 10),
            target standard deviations for ``ridge`` (``None``: 3).
        hidden, depth, steps, batch_size, lr, weight_decay, progress: the MLP
            and its AdamW training (cosine decay), as in ``EnsembleConfig``.
    """

    #: The sane range of each numeric setting (checked by ``check_fields``).
    LIMITS: ClassVar[dict[str, Range]] = {
        "beta": Range(0, 1e6),
        "ridge": Range(0, 1e6, low_open=True),
        "bonus_max": Range(0, 1e6),
        **{k: v for k, v in HEAD_LIMITS.items() if k != "n_heads"},
    }

    bonus: str = "official"
    beta: float | None = None
    ridge: float | None = None
    bonus_max: float | None = None
    hidden: int = 64
    depth: int = 2
    steps: int = 600
    batch_size: int = 256
    lr: float = 3e-3
    weight_decay: float = 1e-4
    progress: bool = False

    def __post_init__(self) -> None:
        check_fields(self)
        super().__post_init__()
        if self.bonus not in BONUS_FORMS:
            raise ValueError(
                f"UCBConfig.bonus {self.bonus!r} is unknown; accepted: {', '.join(BONUS_FORMS)}"
            )
        for name in ("hidden", "depth", "steps", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"UCBConfig.{name} must be an int >= 1, got {value!r}")
        beta, ridge, bonus_max = self.resolved()
        check_positive("UCBConfig.beta", beta, allow_zero=True)
        check_positive("UCBConfig.ridge", ridge)
        check_positive("UCBConfig.bonus_max", bonus_max, allow_zero=True)
        check_positive("UCBConfig.lr", self.lr)
        check_positive("UCBConfig.weight_decay", self.weight_decay, allow_zero=True)

    def resolved(self) -> tuple[float, float, float]:
        """(β, λ, b_max) with the bonus form's defaults filled in."""
        d_beta, d_ridge, d_max = _DEFAULTS[self.bonus]
        return (
            d_beta if self.beta is None else float(self.beta),
            d_ridge if self.ridge is None else float(self.ridge),
            d_max if self.bonus_max is None else float(self.bonus_max),
        )


class UCBSurrogate(Surrogate):
    """Neural UCB: MLP features + an exploration bonus on them (see the module docstring)."""

    name = "ucb"
    config_class = UCBConfig
    config: UCBConfig

    def __init__(
        self, *, seed: int = 0, feature_map=None, config: UCBConfig | None = None, **overrides
    ) -> None:
        super().__init__(seed=seed, feature_map=feature_map, config=config, **overrides)
        self.net: HeadsMLP | None = None
        self.weights: torch.Tensor | None = None  # ridge: w (h+1,); official: unused (empty)
        self.precision_inv: torch.Tensor | None = None  # A⁻¹: (C + λI)⁻¹ or (ΦᵀΦ + λI)⁻¹
        self.losses: list[float] = []

    @classmethod
    def _config_from_state(cls, fields: dict) -> UCBConfig:
        # states saved before the official form existed used the ridge form
        return UCBConfig(**{"bonus": "ridge", **fields})

    def _phi(self, z: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``(n, h)``, with a constant 1 appended for ``ridge``."""
        assert self.net is not None
        phi = self.net.features(z)[0]
        if self.config.bonus == "ridge":
            phi = torch.cat([phi, torch.ones_like(phi[:, :1])], dim=1)
        return phi

    def _fit(self, z: torch.Tensor, y: torch.Tensor) -> None:
        c = self.config
        _, ridge, _ = c.resolved()
        gen = self._new_generator(z.device)
        n = z.shape[0]
        # 1. one MLP on all rows
        index = torch.arange(n, device=z.device)[None]
        self.net, self.losses = fit_heads(c, 1, z, y, index, gen)
        with torch.no_grad():
            phi = self._phi(z).double()
            eye = torch.eye(phi.shape[1], dtype=phi.dtype, device=phi.device)
            if c.bonus == "official":
                # 2. A = cov(Φ) + λI (centered, / (n − 1)); the mean is the MLP's output
                a_inv = torch.linalg.inv(torch.cov(phi.T) + ridge * eye)
                self.weights = torch.zeros(0, dtype=z.dtype, device=z.device)
            else:
                # 2–3. ridge posterior on φ: A = ΦᵀΦ + λI, w = A⁻¹Φᵀy
                a_inv = torch.cholesky_inverse(torch.linalg.cholesky(phi.T @ phi + ridge * eye))
                self.weights = (a_inv @ (phi.T @ y.double())).to(z.dtype)
            self.precision_inv = a_inv.to(z.dtype)

    def _predict(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.weights is not None and self.precision_inv is not None
        assert self.net is not None
        beta, _, bonus_max = self.config.resolved()
        phi = self._phi(z)
        a_inv = self.precision_inv.to(phi)
        if self.config.bonus == "official":
            mean = self.net.head(phi[None])[0]
            # the bonus and its clip are in raw reward units: divide by the target std
            return mean, _bonus(phi, a_inv, beta, bonus_max) / self._y_std
        mean = phi @ self.weights.to(phi)
        return mean, _bonus(phi, a_inv, beta, bonus_max)

    def _model_state(self) -> dict[str, torch.Tensor]:
        assert self.net is not None and self.weights is not None
        assert self.precision_inv is not None
        state = {f"net.{k}": v for k, v in self.net.state_dict().items()}
        state["ridge_weights"] = self.weights
        state["precision_inv"] = self.precision_inv
        return state

    def _load_model_state(self, tensors: dict[str, torch.Tensor], n_features: int) -> None:
        c = self.config
        dtype = tensors["net.weights.0"].dtype
        self.net = HeadsMLP(1, n_features, c.hidden, c.depth, dtype=dtype)
        self.net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
        self.net.requires_grad_(False).eval()
        self.weights = tensors["ridge_weights"].clone()
        self.precision_inv = tensors["precision_inv"].clone()

    def _to(self, device: torch.device) -> None:
        if self.net is not None:
            self.net.to(device)
        if self.weights is not None and self.precision_inv is not None:
            self.weights = self.weights.to(device)
            self.precision_inv = self.precision_inv.to(device)
