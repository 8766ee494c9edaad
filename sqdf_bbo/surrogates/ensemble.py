"""Bootstrap ensemble surrogate: optimistic value = max over heads (SEIKO / SQDF official).

Each of ``H`` small MLP heads ``f_h`` is trained on its own bootstrap resample
of the data (n rows drawn with replacement). Then

    μ(x)  = (1/H) Σ_h f_h(x)
    r̂(x) = max_h f_h(x)          (≥ μ(x); a subgradient flows to the arg-max head)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from sqdf_bbo.config import Range, check_fields
from sqdf_bbo.surrogates._nets import HEAD_LIMITS, HeadsMLP, fit_heads
from sqdf_bbo.surrogates.base import Surrogate, SurrogateConfig, check_positive

__all__ = ["EnsembleConfig", "EnsembleSurrogate"]


@dataclass(frozen=True)
class EnsembleConfig(SurrogateConfig):
    """Options of :class:`EnsembleSurrogate`.

    Attributes (besides :class:`~sqdf_bbo.surrogates.base.SurrogateConfig`'s ``feature_std_floor``):
        n_heads: number of bootstrap heads H.
        hidden: width of each hidden layer.
        depth: number of hidden layers.
        steps: AdamW steps (all heads train together).
        batch_size: rows per head per step.
        lr: peak learning rate (cosine decay to 0).
        weight_decay: AdamW weight decay.
        bootstrap: resample rows with replacement per head (``False``: every
            head sees all rows and differs only by its initialization).
        progress: show a tqdm bar while training.
    """

    #: The sane range of each numeric setting (checked by ``check_fields``).
    LIMITS: ClassVar[dict[str, Range]] = HEAD_LIMITS

    n_heads: int = 4
    hidden: int = 64
    depth: int = 2
    steps: int = 600
    batch_size: int = 256
    lr: float = 3e-3
    weight_decay: float = 1e-4
    bootstrap: bool = True
    progress: bool = False

    def __post_init__(self) -> None:
        check_fields(self)
        super().__post_init__()
        for name in ("n_heads", "hidden", "depth", "steps", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"EnsembleConfig.{name} must be an int >= 1, got {value!r}")
        check_positive("EnsembleConfig.lr", self.lr)
        check_positive("EnsembleConfig.weight_decay", self.weight_decay, allow_zero=True)


class EnsembleSurrogate(Surrogate):
    """Bootstrap MLP ensemble; ``optimistic = max over heads``, ``mean = mean over heads``.

    Example:
        >>> sur = EnsembleSurrogate(seed=0, n_heads=4).fit(x, y)
        >>> r = sur.optimistic(x_new)   # (n,), differentiable in x_new
    """

    name = "ensemble"
    config_class = EnsembleConfig
    config: EnsembleConfig

    def __init__(
        self, *, seed: int = 0, feature_map=None, config: EnsembleConfig | None = None, **overrides
    ) -> None:
        super().__init__(seed=seed, feature_map=feature_map, config=config, **overrides)
        self.net: HeadsMLP | None = None
        self.losses: list[float] = []

    def _fit(self, z: torch.Tensor, y: torch.Tensor) -> None:
        c = self.config
        gen = self._new_generator(z.device)
        n = z.shape[0]
        # 1. H bootstrap resamples of the n rows (with replacement)
        if c.bootstrap:
            index = torch.randint(n, (c.n_heads, n), generator=gen, device=z.device)
        else:
            index = torch.arange(n, device=z.device).expand(c.n_heads, n)
        # 2. independent heads, trained together
        self.net, self.losses = fit_heads(c, c.n_heads, z, y, index, gen)

    def heads(self, x: torch.Tensor) -> torch.Tensor:
        """Per-head predictions in the data's units, shape ``(H, n)``."""
        if not self.fitted:
            raise RuntimeError("EnsembleSurrogate is not fitted: call fit(x, y) first")
        x = self._check_x(x)
        if self._degenerate or self.net is None:
            return self.mean(x).unsqueeze(0)
        return self._y_mean + self._y_std * self.net(self._normalized(x))

    def _predict(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.net is not None
        f = self.net(z)  # (H, n)
        mean = f.mean(0)
        # 3. bonus = max_h f_h − mean ≥ 0, so optimistic = max over heads
        return mean, f.max(0).values - mean

    def _model_state(self) -> dict[str, torch.Tensor]:
        assert self.net is not None
        return dict(self.net.state_dict())

    def _load_model_state(self, tensors: dict[str, torch.Tensor], n_features: int) -> None:
        c = self.config
        dtype = tensors["weights.0"].dtype
        self.net = HeadsMLP(c.n_heads, n_features, c.hidden, c.depth, dtype=dtype)
        self.net.load_state_dict(tensors)
        self.net.requires_grad_(False).eval()

    def _to(self, device: torch.device) -> None:
        if self.net is not None:
            self.net.to(device)
