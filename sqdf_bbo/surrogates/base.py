"""The :class:`Surrogate` base: a regression model of the oracle with optimism.

Notation (docs/design.md §1): ``r̂(x)`` is the surrogate's optimistic value, the
reward SQDF fine-tunes against; ``μ(x)`` its plain mean.

The base does the bookkeeping every surrogate shares, so an implementation
only writes two private hooks:

1. ``_fit(z, y)`` — train on normalized features ``z (n, F)`` and standardized
   targets ``y (n,)`` (zero mean, unit variance);
2. ``_predict(z) -> (mean, bonus)`` — standardized mean ``(n,)`` and a
   non-negative optimism bonus ``(n,)``, both differentiable in ``z``.

The base maps designs ``x (n, *shape)`` through the feature map (identity
flatten by default), standardizes each feature with the training statistics,
undoes the target standardization, and returns ``mean = ȳ + s·m`` and
``optimistic = ȳ + s·(m + b)`` with ``b ≥ 0``, so ``optimistic ≥ mean`` always.

Degenerate data: with fewer than two points or no spread in ``y`` there is
nothing to learn; the surrogate is then the constant ``ȳ`` with no optimism
(``optimistic = mean = ȳ``), still differentiable in ``x`` (zero gradient).
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import torch

from sqdf_bbo.config import ConfigError, Range
from sqdf_bbo.registry import Registry

__all__ = [
    "Surrogate",
    "SurrogateConfig",
    "FeatureMap",
    "flatten_features",
    "feature_scales",
    "SurrogateState",
    "SURROGATES",
    "make_surrogate",
    "check_options",
    "check_config_options",
]

FeatureMap = Callable[[torch.Tensor], torch.Tensor]
"""Maps designs ``(n, *shape)`` to features ``(n, F)`` (or ``(n, ...)``, flattened after)."""

SurrogateState = dict[str, Any]
"""A flat dict whose values are tensors or JSON-able values (no pickle needed)."""

_STD_FLOOR = 1e-8


@dataclasses.dataclass(frozen=True)
class SurrogateConfig:
    """Options every surrogate shares (each surrogate's config extends this one).

    Attributes:
        feature_std_floor: each input feature is standardized with its training std, floored
            at this fraction of the mean feature std. Without a floor, near-constant
            features (e.g. background pixels: 14–16 of the 64 digit pixels have std < 0.05
            on prior samples) are amplified 20–200×, so a tiny in-domain change of a design
            moves the prediction by many target std and a fine-tuner exploits exactly that
            (one signed L∞ = 0.1 step raised the optimistic value by +9.3 std while the true
            reward rose +0.17 std). 0 disables the floor (v0.1 behaviour).
    """

    #: The sane range of each numeric setting (checked by ``check_fields`` in subclasses).
    LIMITS: ClassVar[dict[str, Range]] = {"feature_std_floor": Range(0, 100)}

    feature_std_floor: float = 0.25

    def __post_init__(self) -> None:
        value = self.feature_std_floor
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"feature_std_floor must be finite and >= 0, got {value}")


def feature_scales(z: torch.Tensor, std_floor: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and scale ``(F,)`` of training features ``z (n, F)``: each scale is the feature's
    std floored at ``std_floor`` × the mean std (see :class:`SurrogateConfig`); features
    without any spread keep scale 1."""
    z_mean = z.mean(0)
    z_std = z.std(0, unbiased=False) if z.shape[0] > 1 else torch.ones_like(z[0])
    z_std = z_std.clamp_min(float(std_floor) * float(z_std.mean()))
    return z_mean, torch.where(z_std > _STD_FLOOR, z_std, torch.ones_like(z_std))


def check_options(surrogate_class: type[Surrogate], options: Mapping[str, Any]) -> None:
    """``ConfigError`` unless ``options`` (keyword overrides of the surrogate's config, e.g. an
    optimizer's ``surrogate_options``) name fields of its config with valid values."""
    check_config_options(surrogate_class.config_class, options, "surrogate_options")


def check_config_options(config_class: type, options: Mapping[str, Any], label: str) -> None:
    """``ConfigError`` (its message starting with ``label``) unless ``options`` name fields of
    the dataclass ``config_class`` with values it accepts."""
    fields = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(options) - fields)
    if unknown:
        raise ConfigError(
            f"{label}: unknown {config_class.__name__} option(s) {unknown}; "
            f"valid: {', '.join(sorted(fields))}"
        )
    try:
        config_class(**options)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{label}: {err}") from None


def flatten_features(x: torch.Tensor) -> torch.Tensor:
    """The default feature map: ``(n, *shape) -> (n, prod(shape))``."""
    return x.reshape(x.shape[0], -1)


class Surrogate(ABC):
    """A differentiable regression model of a black-box oracle with an optimistic value.

    Args:
        seed: seed of the generator this surrogate owns (initialization,
            bootstrap resamples, minibatches, GP subsets).
        feature_map: callable ``(n, *shape) -> (n, F)``; ``None`` flattens the
            design. It must be differentiable for ``optimistic`` to be
            differentiable in ``x``. It is not saved by :meth:`state_dict`:
            pass the same one again when loading.
        config: the surrogate's frozen config dataclass; keyword ``overrides``
            replace its fields (unknown names raise ``TypeError``).

    Public API: :meth:`fit`, :meth:`mean`, :meth:`optimistic`,
    :meth:`state_dict`, :meth:`load_state_dict`, :meth:`from_state_dict`.
    """

    name: ClassVar[str] = "surrogate"
    config_class: ClassVar[type]

    def __init__(
        self,
        *,
        seed: int = 0,
        feature_map: FeatureMap | None = None,
        config: Any | None = None,
        **overrides: Any,
    ) -> None:
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise TypeError(f"seed must be an int, got {type(seed).__name__}")
        if feature_map is not None and not callable(feature_map):
            raise TypeError(
                f"feature_map must be callable or None, got {type(feature_map).__name__}"
            )
        if config is None:
            config = self.config_class()
        elif not isinstance(config, self.config_class):
            raise TypeError(
                f"{type(self).__name__} expects config of type {self.config_class.__name__}, "
                f"got {type(config).__name__}"
            )
        if overrides:
            fields = {f.name for f in dataclasses.fields(self.config_class)}
            unknown = sorted(set(overrides) - fields)
            if unknown:
                raise TypeError(
                    f"{type(self).__name__} got unknown option(s) {unknown}; "
                    f"accepted: {sorted(fields | {'seed', 'feature_map', 'config'})}"
                )
            config = dataclasses.replace(config, **overrides)
        self.config = config
        self.seed = seed
        self.feature_map = feature_map
        self._fitted = False
        self._degenerate = False
        self._design_shape: tuple[int, ...] | None = None
        self._z_mean: torch.Tensor | None = None
        self._z_std: torch.Tensor | None = None
        self._y_mean = 0.0
        self._y_std = 1.0
        self.n_train = 0

    # ------------------------------------------------------------------ helpers
    def _new_generator(self, device: torch.device) -> torch.Generator:
        """A fresh generator seeded by ``seed`` (each fit restarts from the seed: deterministic)."""
        return torch.Generator(device=device).manual_seed(self.seed)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        z = flatten_features(x) if self.feature_map is None else self.feature_map(x)
        if not isinstance(z, torch.Tensor) or z.ndim < 1 or z.shape[0] != x.shape[0]:
            got = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise ValueError(
                f"feature_map must return a tensor with one row per design ({x.shape[0]}), got {got}"
            )
        return z.reshape(z.shape[0], -1)

    def _check_x(self, x: torch.Tensor, what: str = "x", fitting: bool = False) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(
                f"{what} must be a torch.Tensor of shape (n, *shape), got {type(x).__name__}"
            )
        if x.ndim < 2 and self.feature_map is None:
            raise ValueError(
                f"{what} must have shape (n, *shape) with at least 2 dimensions, got {tuple(x.shape)}"
            )
        if (
            not fitting
            and self._design_shape is not None
            and tuple(x.shape[1:]) != self._design_shape
        ):
            raise ValueError(
                f"{what} has design shape {tuple(x.shape[1:])}, but the surrogate was fitted on "
                f"designs of shape {self._design_shape}"
            )
        if not x.is_floating_point():
            x = x.float()
        return x

    def _normalized(self, x: torch.Tensor) -> torch.Tensor:
        z = self._features(x)
        assert self._z_mean is not None and self._z_std is not None
        return (z - self._z_mean.to(z)) / self._z_std.to(z)

    # ---------------------------------------------------------------- public API
    def fit(self, x: torch.Tensor, y: torch.Tensor) -> Surrogate:
        """Fit on designs ``x (n, *shape)`` and observed values ``y (n,)``; returns ``self``.

        Refits from scratch (same seed: same result). ``y`` must be finite: drop
        failed (NaN) observations before fitting.
        """
        x = self._check_x(x, fitting=True)
        if not isinstance(y, torch.Tensor):
            y = torch.as_tensor(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1 or y.shape[0] != x.shape[0]:
            raise ValueError(
                f"y must have shape (n,) = ({x.shape[0]},) matching x of shape {tuple(x.shape)}, "
                f"got {tuple(y.shape)}"
            )
        if x.shape[0] < 1:
            raise ValueError("cannot fit a surrogate on an empty dataset (n = 0)")
        y = y.to(device=x.device, dtype=x.dtype if x.dtype != torch.float16 else torch.float32)
        bad = (~torch.isfinite(y)).nonzero().flatten()
        if bad.numel():
            raise ValueError(
                f"y has {bad.numel()} non-finite value(s) (first at index {int(bad[0])}: "
                f"{float(y[bad[0]])}); drop failed observations before fitting"
            )
        with torch.no_grad():
            z = self._features(x).detach()
            if not torch.isfinite(z).all():
                raise ValueError("x (or its features) contains non-finite values")
            # 1. standardize features with the training statistics; each scale is floored at
            #    feature_std_floor × the mean scale (near-constant features are not blown
            #    up), and all-constant features keep scale 1
            z_mean, z_std = feature_scales(z, self.config.feature_std_floor)
            # 2. standardize targets: y_s = (y − ȳ) / s
            y64 = y.double()
            y_mean = float(y64.mean())
            spread = float(y64.std(unbiased=False)) if y.shape[0] > 1 else 0.0
            degenerate = y.shape[0] < 2 or spread <= _STD_FLOOR * max(1.0, abs(y_mean))
            y_std = 1.0 if degenerate else spread
            zn = (z - z_mean) / z_std
            ys = ((y64 - y_mean) / y_std).to(zn.dtype)
        # the inputs are valid: replace the previous fit
        self._fitted = False
        self._z_mean, self._z_std = z_mean, z_std
        self._y_mean, self._y_std, self._degenerate = y_mean, y_std, degenerate
        self._design_shape = tuple(x.shape[1:])
        self.n_train = int(x.shape[0])
        if not degenerate:
            self._fit(zn, ys)
        self._fitted = True
        return self

    def _both(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self._fitted:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(x, y) first")
        x = self._check_x(x)
        if self._degenerate:
            # constant ȳ, kept in the autograd graph of x (zero gradient)
            zero = flatten_features(x).sum(1) * 0.0
            const = zero + self._y_mean
            return const, const
        z = self._normalized(x)
        m, b = self._predict(z)
        mean = self._y_mean + self._y_std * m
        return mean, mean + self._y_std * b.clamp_min(0.0)

    def mean_and_optimistic(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(μ(x), r̂(x))`` in one pass, each ``(n,)``."""
        return self._both(x)

    def mean(self, x: torch.Tensor) -> torch.Tensor:
        """Posterior/ensemble mean ``μ(x)`` of designs ``x (n, *shape)``; shape ``(n,)``."""
        return self._both(x)[0]

    def optimistic(self, x: torch.Tensor) -> torch.Tensor:
        """Optimistic value ``r̂(x) ≥ μ(x)``, differentiable in ``x``; shape ``(n,)``."""
        return self._both(x)[1]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Alias of :meth:`optimistic` (the reward SQDF fine-tunes against)."""
        return self.optimistic(x)

    @property
    def fitted(self) -> bool:
        return self._fitted

    # ------------------------------------------------------------------- hooks
    @abstractmethod
    def _fit(self, z: torch.Tensor, y: torch.Tensor) -> None:
        """Train on normalized features ``z (n, F)`` and standardized targets ``y (n,)``."""

    @abstractmethod
    def _predict(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Standardized ``(mean (n,), bonus (n,) ≥ 0)`` of normalized features ``z (n, F)``."""

    def _model_state(self) -> dict[str, torch.Tensor]:
        """Tensors of the fitted model (prefixless; the base prefixes them with ``model.``)."""
        return {}

    def _load_model_state(self, tensors: dict[str, torch.Tensor], n_features: int) -> None:
        """Rebuild the fitted model from :meth:`_model_state`'s tensors."""
        if tensors:
            raise NotImplementedError(
                f"{type(self).__name__} saves model tensors but does not implement _load_model_state"
            )

    # ------------------------------------------------------------- persistence
    def state_dict(self) -> SurrogateState:
        """A flat dict of tensors and JSON-able values (safetensors + JSON; no pickle).

        The feature map is not included; pass the same one when loading.
        """
        state: SurrogateState = {
            "surrogate": self.name,
            "seed": self.seed,
            "config": dataclasses.asdict(self.config),
            "fitted": self._fitted,
        }
        if not self._fitted:
            return state
        state.update(
            degenerate=self._degenerate,
            design_shape=list(self._design_shape or ()),
            y_mean=self._y_mean,
            y_std=self._y_std,
            n_train=self.n_train,
        )
        assert self._z_mean is not None and self._z_std is not None
        state["z_mean"] = self._z_mean.detach().cpu().clone()
        state["z_std"] = self._z_std.detach().cpu().clone()
        if not self._degenerate:
            for k, v in self._model_state().items():
                state[f"model.{k}"] = v.detach().cpu().clone().contiguous()
        return state

    def load_state_dict(self, state: SurrogateState) -> Surrogate:
        """Restore a :meth:`state_dict` (same surrogate kind); returns ``self``."""
        kind = state.get("surrogate")
        if kind != self.name:
            raise ValueError(f"state_dict is for surrogate {kind!r}, not {self.name!r}")
        self.seed = int(state["seed"])
        self.config = self._config_from_state(dict(state["config"]))
        self._fitted = bool(state["fitted"])
        if not self._fitted:
            return self
        self._degenerate = bool(state["degenerate"])
        self._design_shape = tuple(int(s) for s in state["design_shape"])
        self._y_mean = float(state["y_mean"])
        self._y_std = float(state["y_std"])
        self.n_train = int(state["n_train"])
        self._z_mean = state["z_mean"].clone()
        self._z_std = state["z_std"].clone()
        if not self._degenerate:
            tensors = {k[6:]: v for k, v in state.items() if k.startswith("model.")}
            self._load_model_state(tensors, int(self._z_mean.numel()))
        return self

    @classmethod
    def _config_from_state(cls, fields: dict[str, Any]) -> Any:
        """The config saved in a state dict (override to read older saved forms)."""
        return cls.config_class(**fields)

    @classmethod
    def from_state_dict(
        cls, state: SurrogateState, feature_map: FeatureMap | None = None
    ) -> Surrogate:
        """Rebuild any surrogate from its :meth:`state_dict` (the kind is read from it)."""
        sur = make_surrogate(
            str(state.get("surrogate")), seed=int(state.get("seed", 0)), feature_map=feature_map
        )
        return sur.load_state_dict(state)

    def to(self, device: torch.device | str) -> Surrogate:
        """Move the fitted statistics and model to ``device`` (returns ``self``)."""
        if self._z_mean is not None and self._z_std is not None:
            self._z_mean = self._z_mean.to(device)
            self._z_std = self._z_std.to(device)
        self._to(torch.device(device))
        return self

    def _to(self, device: torch.device) -> None:
        """Move model tensors (override when the model holds tensors)."""
        return None

    def __repr__(self) -> str:
        status = f"fitted on {self.n_train}" if self._fitted else "unfitted"
        return f"{type(self).__name__}({self.config}, seed={self.seed}, {status})"


def check_positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    """Raise ``ValueError`` unless ``value`` is finite and positive (or zero when allowed)."""
    ok = math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {bound}, got {value}")


SURROGATES: Registry[type[Surrogate]] = Registry("surrogate")
"""The surrogate registry: accepted names of :func:`make_surrogate` (each built-in class
registers itself with ``@SURROGATES.register(name)``: ``ensemble``, ``ucb``, ``gp``)."""


def make_surrogate(name: str, **kwargs: Any) -> Surrogate:
    """Build a surrogate by name: ``"ensemble"``, ``"ucb"`` or ``"gp"``.

    ``kwargs`` are ``seed``, ``feature_map``, ``config`` and any field of the
    surrogate's config (e.g. ``make_surrogate("ucb", seed=1, beta=2.0)``).
    """
    cls = SURROGATES.get(str(name).lower(), None) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(f"unknown surrogate {name!r}; accepted names: {sorted(SURROGATES)}")
    return cls(**kwargs)
