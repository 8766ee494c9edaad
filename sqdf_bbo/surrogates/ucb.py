"""Neural-linear UCB surrogate (SEIKO-UCB style).

1. Train one MLP on the (standardized) data.
2. Freeze it; take its penultimate features ``φ(x) ∈ R^h`` (plus a constant 1).
3. Bayesian linear (ridge) model on ``φ``: with ``Φ (n, h+1)`` the training
   features, ``Σ = ΦᵀΦ`` and ``A = Σ + λI``,

       w     = A⁻¹ Φᵀ y                       (posterior mean weights)
       μ(x)  = φ(x)ᵀ w
       b(x)  = min( β · √(φ(x)ᵀ A⁻¹ φ(x)), b_max )
       r̂(x) = μ(x) + b(x)

All in standardized target units (the base rescales by the target std), so
``b_max`` is a number of target standard deviations.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import check_fields
from ._nets import HeadsMLP, train_heads
from .base import Surrogate, check_positive

__all__ = ["UCBConfig", "UCBSurrogate"]


@dataclass(frozen=True)
class UCBConfig:
    """Options of :class:`UCBSurrogate`.

    Attributes:
        beta: exploration weight β of the bonus.
        ridge: λ, the prior precision of the linear weights (``A = ΦᵀΦ + λI``).
        bonus_max: clip of the bonus, in target standard deviations.
        hidden, depth, steps, batch_size, lr, weight_decay, progress: the MLP
            and its AdamW training (cosine decay), as in ``EnsembleConfig``.
    """

    beta: float = 1.0
    ridge: float = 1.0
    bonus_max: float = 3.0
    hidden: int = 64
    depth: int = 2
    steps: int = 600
    batch_size: int = 256
    lr: float = 3e-3
    weight_decay: float = 1e-4
    progress: bool = False

    def __post_init__(self) -> None:
        check_fields(self)
        for name in ("hidden", "depth", "steps", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"UCBConfig.{name} must be an int >= 1, got {value!r}")
        check_positive("UCBConfig.beta", self.beta, allow_zero=True)
        check_positive("UCBConfig.ridge", self.ridge)
        check_positive("UCBConfig.bonus_max", self.bonus_max, allow_zero=True)
        check_positive("UCBConfig.lr", self.lr)
        check_positive("UCBConfig.weight_decay", self.weight_decay, allow_zero=True)


class UCBSurrogate(Surrogate):
    """Neural-linear UCB: MLP features + Bayesian ridge; ``optimistic = μ + min(β·√(φᵀA⁻¹φ), b_max)``."""

    name = "ucb"
    config_class = UCBConfig
    config: UCBConfig

    def __init__(
        self, *, seed: int = 0, feature_map=None, config: UCBConfig | None = None, **overrides
    ) -> None:
        super().__init__(seed=seed, feature_map=feature_map, config=config, **overrides)
        self.net: HeadsMLP | None = None
        self.weights: torch.Tensor | None = None  # w (h+1,)
        self.precision_inv: torch.Tensor | None = None  # A⁻¹ (h+1, h+1)
        self.losses: list[float] = []

    def _phi(self, z: torch.Tensor) -> torch.Tensor:
        """Penultimate features with a constant 1 appended: ``(n, h + 1)``."""
        assert self.net is not None
        phi = self.net.features(z)[0]
        return torch.cat([phi, torch.ones_like(phi[:, :1])], dim=1)

    def _fit(self, z: torch.Tensor, y: torch.Tensor) -> None:
        c = self.config
        gen = self._new_generator(z.device)
        n = z.shape[0]
        # 1. one MLP on all rows
        self.net = HeadsMLP(1, z.shape[1], c.hidden, c.depth, gen, z.device, z.dtype)
        index = torch.arange(n, device=z.device)[None]
        self.losses = train_heads(
            self.net,
            z,
            y,
            index,
            steps=c.steps,
            batch_size=c.batch_size,
            lr=c.lr,
            weight_decay=c.weight_decay,
            generator=gen,
            progress=c.progress,
        )
        self.net.requires_grad_(False).eval()
        # 2–3. ridge posterior on φ, solved in float64: A = ΦᵀΦ + λI, w = A⁻¹Φᵀy
        with torch.no_grad():
            phi = self._phi(z).double()
            a = phi.T @ phi + c.ridge * torch.eye(phi.shape[1], dtype=phi.dtype, device=phi.device)
            chol = torch.linalg.cholesky(a)
            a_inv = torch.cholesky_inverse(chol)
            self.weights = (a_inv @ (phi.T @ y.double())).to(z.dtype)
            self.precision_inv = a_inv.to(z.dtype)

    def _predict(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.weights is not None and self.precision_inv is not None
        phi = self._phi(z)
        mean = phi @ self.weights.to(phi)
        quad = ((phi @ self.precision_inv.to(phi)) * phi).sum(1)
        # sqrt has an infinite derivative at 0: keep the argument away from 0
        bonus = self.config.beta * torch.sqrt(quad.clamp_min(1e-12))
        return mean, bonus.clamp(max=self.config.bonus_max)

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
