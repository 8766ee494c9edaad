"""Gaussian-process surrogate (BoTorch ``SingleTaskGP``): ``r̂(x) = μ(x) + β·σ(x)``.

Scaling choice: an *exact* GP on a subset of at most ``max_points`` training
points. When there are more, the subset is the ``top_fraction`` best
observations (where the optimizer is heading, so that is where accuracy
matters) plus a uniformly random sample of the rest (global coverage), drawn
from the surrogate's own generator. Why not a variational/inducing-point GP:
an exact GP on 256 points fits in about a second on a CPU with L-BFGS, has no
extra optimization hyper-parameters (inducing locations, learning rate,
epochs), and its posterior is deterministic given the subset; the
fine-tuner only needs a smooth, calibrated-enough optimistic value near the
good region. Cost: O(N³) fit with N = ``max_points`` whatever the data size.

Model: BoTorch defaults for ``SingleTaskGP`` (RBF kernel with ARD
lengthscales and a dimension-scaled log-normal prior, Gaussian likelihood),
on the base's standardized targets and on features mapped affinely to the unit
cube by the training range (BoTorch's lengthscale prior assumes unit-cube
inputs; with standardized inputs the L-BFGS fit stalls at its initial
lengthscale in 64 dimensions), in float64; hyper-parameters
by maximizing the exact marginal log likelihood (``fit_gpytorch_mll``).
``σ(x)`` is the posterior std of the latent function (no observation noise).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

import torch

from sqdf_bbo.config import Range, check_fields
from sqdf_bbo.surrogates.base import Surrogate, SurrogateConfig, check_positive

__all__ = ["GPConfig", "GPSurrogate"]


@dataclass(frozen=True)
class GPConfig(SurrogateConfig):
    """Options of :class:`GPSurrogate`.

    Attributes (besides :class:`~sqdf_bbo.surrogates.base.SurrogateConfig`'s ``feature_std_floor``):
        beta: exploration weight β in ``μ + β·σ``.
        max_points: largest training subset of the exact GP.
        top_fraction: share of the subset taken from the best observations
            (the rest is a uniform random sample of the remaining points).
        min_std: floor of σ, in target standard deviations (keeps ``√`` smooth).
        max_iter: cap on L-BFGS iterations of the marginal-likelihood fit.
    """

    #: The sane range of each numeric setting (checked by ``check_fields``).
    LIMITS: ClassVar[dict[str, Range]] = {
        "beta": Range(0, 1e6),
        "max_points": Range(2, 10_000),
        "top_fraction": Range(0, 1),
        "min_std": Range(0, 1e3, low_open=True),
        "max_iter": Range(1, 1_000_000),
    }

    beta: float = 1.0
    max_points: int = 256
    top_fraction: float = 0.5
    min_std: float = 1e-6
    max_iter: int = 100

    def __post_init__(self) -> None:
        check_fields(self)
        super().__post_init__()
        check_positive("GPConfig.beta", self.beta, allow_zero=True)
        if not isinstance(self.max_points, int) or self.max_points < 2:
            raise ValueError(f"GPConfig.max_points must be an int >= 2, got {self.max_points!r}")
        if not 0.0 <= self.top_fraction <= 1.0:
            raise ValueError(f"GPConfig.top_fraction must be in [0, 1], got {self.top_fraction}")
        check_positive("GPConfig.min_std", self.min_std)
        if not isinstance(self.max_iter, int) or self.max_iter < 1:
            raise ValueError(f"GPConfig.max_iter must be an int >= 1, got {self.max_iter!r}")


@contextlib.contextmanager
def _private_rng(seed: int, device: torch.device) -> Iterator[None]:
    """Run code that draws from torch's global RNG on a forked, seeded copy (restored after)."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


class GPSurrogate(Surrogate):
    """Exact ``SingleTaskGP`` on a (top-y + random) subset; ``optimistic = μ + β·σ``."""

    name = "gp"
    config_class = GPConfig
    config: GPConfig

    def __init__(
        self, *, seed: int = 0, feature_map=None, config: GPConfig | None = None, **overrides
    ) -> None:
        super().__init__(seed=seed, feature_map=feature_map, config=config, **overrides)
        self.model = None  # botorch SingleTaskGP once fitted
        self.subset: torch.Tensor | None = None  # indices of the training rows used
        self.cube_lo: torch.Tensor | None = None  # (F,) training minimum of each feature
        self.cube_span: torch.Tensor | None = None  # (F,) training range (1 where constant)

    def _cube(self, z: torch.Tensor) -> torch.Tensor:
        assert self.cube_lo is not None and self.cube_span is not None
        z = z.double()
        return (z - self.cube_lo.to(z)) / self.cube_span.to(z)

    def _select(self, y: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Indices of at most ``max_points`` rows: the best ``top_fraction`` + random rest."""
        n, cap = y.shape[0], self.config.max_points
        if n <= cap:
            return torch.arange(n, device=y.device)
        n_top = int(round(cap * self.config.top_fraction))
        order = torch.argsort(y, descending=True, stable=True)
        top, rest = order[:n_top], order[n_top:]
        pick = torch.randperm(rest.numel(), generator=gen, device=y.device)[: cap - n_top]
        return torch.sort(torch.cat([top, rest[pick]])).values

    def _build(self, train_x: torch.Tensor, train_y: torch.Tensor):
        from botorch.models import SingleTaskGP  # lazy: botorch is slow to import

        return SingleTaskGP(train_x, train_y, outcome_transform=None, input_transform=None)

    def _fit(self, z: torch.Tensor, y: torch.Tensor) -> None:
        # lazy: botorch and gpytorch are slow to import, and only the gp surrogate needs them
        from botorch.exceptions.warnings import InputDataWarning, OptimizationWarning
        from botorch.fit import fit_gpytorch_mll  # lazy
        from gpytorch.mlls import ExactMarginalLogLikelihood  # lazy

        gen = self._new_generator(z.device)
        # 1. training subset (top-y + random), fixed by the seed
        self.subset = self._select(y, gen)
        # 2. unit-cube inputs from the full training range
        self.cube_lo = z.min(0).values.double()
        span = z.max(0).values.double() - self.cube_lo
        self.cube_span = torch.where(span > 1e-8, span, torch.ones_like(span))
        train_x = self._cube(z[self.subset])
        train_y = y[self.subset].double().unsqueeze(-1)
        # 3. exact GP, hyper-parameters by maximum marginal likelihood
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", InputDataWarning)
            warnings.simplefilter("ignore", OptimizationWarning)
            model = self._build(train_x, train_y)
            mll = ExactMarginalLogLikelihood(model.likelihood, model)
            seed = int(torch.randint(2**31 - 1, (1,), generator=gen, device=z.device))
            with _private_rng(seed, z.device):
                fit_gpytorch_mll(
                    mll, optimizer_kwargs={"options": {"maxiter": self.config.max_iter}}
                )
        model.eval()
        model.requires_grad_(False)
        self.model = model

    def _predict(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.model is not None
        post = self.model.posterior(self._cube(z))
        mean = post.mean.squeeze(-1)
        std = post.variance.squeeze(-1).clamp_min(self.config.min_std**2).sqrt()
        return mean.to(z.dtype), (self.config.beta * std).to(z.dtype)

    def _model_state(self) -> dict[str, torch.Tensor]:
        assert self.model is not None and self.subset is not None
        state = {f"gp.{k}": v for k, v in self.model.state_dict().items()}
        state["train_x"] = self.model.train_inputs[0]
        state["train_y"] = self.model.train_targets.unsqueeze(-1)
        state["subset"] = self.subset
        state["cube_lo"] = self.cube_lo
        state["cube_span"] = self.cube_span
        return state

    def _load_model_state(self, tensors: dict[str, torch.Tensor], n_features: int) -> None:
        from botorch.exceptions.warnings import InputDataWarning  # lazy: slow to import

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", InputDataWarning)
            model = self._build(tensors["train_x"], tensors["train_y"])
        model.load_state_dict({k[3:]: v for k, v in tensors.items() if k.startswith("gp.")})
        model.eval()
        model.requires_grad_(False)
        self.model = model
        self.subset = tensors["subset"].clone()
        self.cube_lo = tensors["cube_lo"].clone()
        self.cube_span = tensors["cube_span"].clone()

    def _to(self, device: torch.device) -> None:
        if self.model is not None:
            self.model.to(device)
        for attr in ("subset", "cube_lo", "cube_span"):
            value = getattr(self, attr)
            if value is not None:
                setattr(self, attr, value.to(device))
