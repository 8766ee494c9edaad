"""A learned feasibility model: P(feasible | x) from told points (unknown constraints).

Real oracles fail on some designs (a simulator does not converge, a molecule cannot be made,
a shape self-intersects) and nobody can write the rule down. Every told point is a label:
complete = feasible (1), failed for a reason that concerns the design = infeasible (0);
transient failures (a dead worker, a dropped sample) say nothing about the design and are
left out by the caller. The model is an ensemble of H bootstrap MLP classifiers on the
surrogate's standardized features:

    p_h(x) = σ(f_h(x)),      p̂(x) = (1/H) Σ_h p_h(x),      s(x) = std_h p_h(x)

``objective="mean"`` uses p̂, ``"optimistic"`` the largest head, max_h p_h (an optimistic
classifier tries the uncertain regions: more information, more failed queries). The
fine-tuners add ``α · log max(p, floor)`` to their reward, so their KL-regularized target
becomes p(x) · p̂(x) · exp(r̂(x)/α) (docs/constraints.md); the floor bounds the penalty of
a design the model is sure about at α · log(floor).

Degenerate data: without both labels there is nothing to separate; the model is then the
constant share of feasible labels (still differentiable in x, zero gradient).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from sqdf_bbo.config import Range, check_fields
from sqdf_bbo.surrogates._nets import HEAD_LIMITS, HeadsMLP, fit_heads
from sqdf_bbo.surrogates.base import (
    FeatureMap,
    SurrogateConfig,
    check_config_options,
    feature_scales,
    flatten_features,
)

__all__ = [
    "FeasibilityConfig",
    "FeasibilityModel",
    "FEASIBILITY_OBJECTIVES",
    "check_feasibility_options",
]

FEASIBILITY_OBJECTIVES: tuple[str, ...] = ("mean", "optimistic")


@dataclass(frozen=True)
class FeasibilityConfig(SurrogateConfig):
    """Options of :class:`FeasibilityModel` (``feature_std_floor`` as in
    :class:`~sqdf_bbo.surrogates.base.SurrogateConfig`).

    Attributes:
        n_heads: bootstrap classifiers H.
        hidden, depth: width and number of hidden layers of each head.
        steps, batch_size, lr, weight_decay: AdamW training (cosine decay), binary
            cross-entropy.
        objective: ``"mean"`` (p̂, the default) or ``"optimistic"`` (max over heads).
        floor: p is clamped to [floor, 1] before the log (bounded penalty).
        progress: tqdm bar while training.
    """

    #: The sane range of each numeric setting (checked by ``check_fields``).
    LIMITS: ClassVar[dict[str, Range]] = {
        **HEAD_LIMITS,
        "floor": Range(0, 1, low_open=True, high_open=True),
    }

    n_heads: int = 4
    hidden: int = 64
    depth: int = 2
    steps: int = 400
    batch_size: int = 256
    lr: float = 3e-3
    weight_decay: float = 1e-4
    objective: str = "mean"
    floor: float = 1e-3
    progress: bool = False

    def __post_init__(self) -> None:
        check_fields(self)
        super().__post_init__()
        if self.objective not in FEASIBILITY_OBJECTIVES:
            raise ValueError(
                f"FeasibilityConfig.objective {self.objective!r} is unknown; accepted values: "
                f"{', '.join(FEASIBILITY_OBJECTIVES)}"
            )


def check_feasibility_options(options: dict[str, Any]) -> None:
    """``ConfigError`` unless ``options`` (an optimizer's ``feasibility_options``) name fields of
    :class:`FeasibilityConfig` with valid values."""
    check_config_options(FeasibilityConfig, options, "feasibility_options")


class FeasibilityModel:
    """P(feasible | x) by an ensemble of bootstrap MLP classifiers (module docstring).

    Args:
        seed: seed of the generator it owns (initialization, bootstrap, minibatches).
        feature_map: ``(n, *shape) -> (n, F)`` features (``None``: flattened designs); the
            same one the reward surrogate uses. Not saved: pass it again when loading.
        config: :class:`FeasibilityConfig`; keyword overrides replace its fields.

    Example:
        >>> model = FeasibilityModel(seed=0).fit(x, feasible)   # x (n, *shape), feasible (n,)
        >>> model.log_feasibility(x_new)                          # (n,), differentiable
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        feature_map: FeatureMap | None = None,
        config: FeasibilityConfig | None = None,
        **overrides: Any,
    ) -> None:
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise TypeError(f"seed must be an int, got {type(seed).__name__}")
        config = config if config is not None else FeasibilityConfig()
        if not isinstance(config, FeasibilityConfig):
            raise TypeError(f"config must be a FeasibilityConfig, got {type(config).__name__}")
        if overrides:
            fields = {f.name for f in dataclasses.fields(FeasibilityConfig)}
            unknown = sorted(set(overrides) - fields)
            if unknown:
                raise TypeError(
                    f"FeasibilityModel got unknown option(s) {unknown}; accepted: {sorted(fields)}"
                )
            config = dataclasses.replace(config, **overrides)
        self.config = config
        self.seed = seed
        self.feature_map = feature_map
        self.net: HeadsMLP | None = None
        self.fitted = False
        self.n_train = 0
        self.n_feasible = 0
        self._constant: float | None = None  # degenerate data: P = this share
        self._z_mean: torch.Tensor | None = None
        self._z_std: torch.Tensor | None = None

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        z = flatten_features(x) if self.feature_map is None else self.feature_map(x)
        return z.reshape(z.shape[0], -1)

    # ------------------------------------------------------------------ fit
    def fit(self, x: torch.Tensor, feasible: torch.Tensor) -> FeasibilityModel:
        """Fit on designs ``x (n, *shape)`` and labels ``feasible (n,)`` (bool or 0/1);
        refits from scratch (same seed: same model). Returns ``self``."""
        if not isinstance(x, torch.Tensor) or x.ndim < 2:
            raise ValueError("x must be a tensor of designs (n, *shape)")
        labels = torch.as_tensor(feasible).reshape(-1)
        if labels.shape[0] != x.shape[0] or x.shape[0] < 1:
            raise ValueError(
                f"need one label per design and at least one design; got {x.shape[0]} designs "
                f"and {labels.shape[0]} labels"
            )
        x = x.float() if not x.is_floating_point() else x
        with torch.no_grad():
            z = self._features(x).detach()
            if not torch.isfinite(z).all():
                raise ValueError("x (or its features) contains non-finite values")
            y = labels.to(device=z.device, dtype=z.dtype).clamp(0, 1)
            z_mean, z_std = feature_scales(z, self.config.feature_std_floor)
        self.fitted = False
        self._z_mean, self._z_std = z_mean, z_std
        self.n_train, self.n_feasible = int(y.shape[0]), int((y > 0.5).sum())
        self.net = None
        self._constant = None
        if 0 < self.n_feasible < self.n_train:
            c = self.config
            gen = torch.Generator(device=z.device).manual_seed(self.seed)
            n = z.shape[0]
            index = torch.randint(n, (c.n_heads, n), generator=gen, device=z.device)
            self.net, _ = fit_heads(c, c.n_heads, (z - z_mean) / z_std, y, index, gen, loss="bce")
        else:
            self._constant = self.n_feasible / self.n_train
        self.fitted = True
        return self

    # ------------------------------------------------------------------ predictions
    def head_probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """p_h(x) of every head, ``(H, n)`` (``(1, n)`` for degenerate data); differentiable."""
        if not self.fitted:
            raise RuntimeError("FeasibilityModel is not fitted: call fit(x, feasible) first")
        z = self._features(x)
        if self.net is None:
            assert self._constant is not None
            return (z.sum(1) * 0.0 + self._constant).unsqueeze(0)
        assert self._z_mean is not None and self._z_std is not None
        zn = (z - self._z_mean.to(z)) / self._z_std.to(z)
        return torch.sigmoid(self.net(zn))

    def probability(self, x: torch.Tensor) -> torch.Tensor:
        """p̂(x) = mean over heads, ``(n,)``."""
        return self.head_probabilities(x).mean(0)

    def log_feasibility(self, x: torch.Tensor) -> torch.Tensor:
        """log max(p(x), floor) with p the configured objective, ``(n,)``, differentiable."""
        p = self.head_probabilities(x)
        p = p.max(0).values if self.config.objective == "optimistic" else p.mean(0)
        return torch.log(p.clamp(min=self.config.floor, max=1.0))

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, Any]:
        """Tensors and JSON values (no pickle); the feature map is not included."""
        state: dict[str, Any] = {
            "seed": self.seed,
            "config": dataclasses.asdict(self.config),
            "fitted": self.fitted,
            "n_train": self.n_train,
            "n_feasible": self.n_feasible,
            "constant": self._constant,
        }
        if self.fitted:
            assert self._z_mean is not None and self._z_std is not None
            state["z_mean"] = self._z_mean.detach().cpu().clone()
            state["z_std"] = self._z_std.detach().cpu().clone()
        if self.net is not None:
            for k, v in self.net.state_dict().items():
                state[f"model.{k}"] = v.detach().cpu().clone().contiguous()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> FeasibilityModel:
        """Restore :meth:`state_dict` output; returns ``self``."""
        self.seed = int(state["seed"])
        self.config = FeasibilityConfig(**dict(state["config"]))
        self.fitted = bool(state["fitted"])
        self.n_train, self.n_feasible = int(state["n_train"]), int(state["n_feasible"])
        constant = state.get("constant")
        self._constant = None if constant is None else float(constant)
        self._z_mean = state["z_mean"].clone() if self.fitted else None
        self._z_std = state["z_std"].clone() if self.fitted else None
        tensors = {k[6:]: v for k, v in state.items() if k.startswith("model.")}
        self.net = None
        if tensors:
            c = self.config
            n_features = int(tensors["weights.0"].shape[1])
            self.net = HeadsMLP(
                c.n_heads, n_features, c.hidden, c.depth, dtype=tensors["weights.0"].dtype
            )
            self.net.load_state_dict(tensors)
            self.net.requires_grad_(False).eval()
        return self

    def to(self, device: torch.device | str) -> FeasibilityModel:
        """Move the fitted statistics and heads to ``device``; returns ``self``."""
        if self._z_mean is not None and self._z_std is not None:
            self._z_mean, self._z_std = self._z_mean.to(device), self._z_std.to(device)
        if self.net is not None:
            self.net.to(device)
        return self

    def __repr__(self) -> str:
        status = (
            f"fitted on {self.n_train} ({self.n_feasible} feasible)" if self.fitted else "unfitted"
        )
        return f"FeasibilityModel({self.config}, seed={self.seed}, {status})"
