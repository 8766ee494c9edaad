"""Oracles on 8×8 digits designs ``(n, 1, 8, 8)`` in [-1, 1] (pixel = intensity / 8 − 1).

- :class:`DigitsClassOracle` — logit (or log-probability) of a target class
  under the shipped frozen classifier (``sqdf_bbo.classifier``).
- :class:`DigitsMarginOracle` — the target logit minus the best other logit.
- :class:`DigitsInkOracle` — stroke thickness: the mean ink of the image,
  classifier-free. Maximum 1 at an all-ink image, far off the digits manifold,
  so an unregularized maximizer leaves it.

All three are :class:`~oracles.base.DifferentiableOracle` s: ``true_value(x)``
is differentiable in ``x``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from sqdf_bbo.classifier import load_digits_classifier

from .base import DifferentiableOracle

__all__ = ["DigitsClassOracle", "DigitsMarginOracle", "DigitsInkOracle"]

_OUTPUTS = ("logit", "log_prob")


class _ClassifierOracle(DifferentiableOracle):
    shape = (1, 8, 8)
    bounds = (-1.0, 1.0)

    def __init__(
        self, target: int, classifier: nn.Module | None = None, device: Any = "cpu", **kwargs: Any
    ) -> None:
        if isinstance(target, bool) or not isinstance(target, int) or not 0 <= target <= 9:
            raise ValueError(f"target must be a digit class 0..9, got {target!r}")
        self.target = target
        self.device = torch.device(device)
        self._classifier = classifier
        self._shipped = classifier is None
        super().__init__(**kwargs)

    @property
    def classifier(self) -> nn.Module:
        """The frozen classifier (the shipped one is loaded on first use)."""
        if self._classifier is None:
            self._classifier = load_digits_classifier(device=self.device)
        return self._classifier

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        if self._shipped:
            state["_classifier"] = None  # reloaded from the package in the worker
        return state

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Classifier logits ``(n, 10)`` of ``x (n, 1, 8, 8)``, differentiable in ``x``."""
        net = self.classifier
        param = next(iter(net.parameters()), None)
        if param is not None:
            x = x.to(device=param.device, dtype=param.dtype)
        return net(x)


class DigitsClassOracle(_ClassifierOracle):
    """Reward = logit (default) or log-probability of class ``target`` under the digits classifier.

    Args:
        target: the digit class k (0..9).
        output: ``"logit"`` (unbounded above, so a maximizer ignoring the prior
            leaves the manifold) or ``"log_prob"`` (≤ 0).
        classifier: a module ``(n, 1, 8, 8) -> (n, 10)`` to use instead of the
            shipped one (``sqdf_bbo.classifier.load_digits_classifier()``).
        device: where the shipped classifier is loaded.
        noise_std, negate, seed, executor, chunk_size: see :class:`~oracles.base.Oracle`.
    """

    def __init__(
        self,
        target: int = 0,
        *,
        output: str = "logit",
        classifier: nn.Module | None = None,
        device: Any = "cpu",
        **kwargs: Any,
    ) -> None:
        if output not in _OUTPUTS:
            raise ValueError(f"output must be one of {_OUTPUTS}, got {output!r}")
        self.output = output
        self.name = f"digits-{output.replace('_', '')}-{target}"
        self._optimal_value = 0.0 if output == "log_prob" else None
        super().__init__(target, classifier, device, **kwargs)

    def evaluate_true(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.logits(x)
        if self.output == "log_prob":
            logits = torch.log_softmax(logits, dim=-1)
        return logits[:, self.target]


class DigitsMarginOracle(_ClassifierOracle):
    """Reward = logit of ``target`` minus the largest other logit (> 0 iff classified as ``target``)."""

    def __init__(
        self,
        target: int = 0,
        *,
        classifier: nn.Module | None = None,
        device: Any = "cpu",
        **kwargs: Any,
    ) -> None:
        self.name = f"digits-margin-{target}"
        super().__init__(target, classifier, device, **kwargs)

    def evaluate_true(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.logits(x)
        others = torch.cat([logits[:, : self.target], logits[:, self.target + 1 :]], dim=1)
        return logits[:, self.target] - others.max(dim=1).values


class DigitsInkOracle(DifferentiableOracle):
    """Stroke thickness: ``r(x) = mean_pixels((clip(x, −1, 1) + 1) / 2)`` ∈ [0, 1].

    0 for a blank image, 1 for an all-ink one (the maximum, not a digit). Real
    digits of the sklearn set score about 0.3.
    """

    name = "digits-ink"
    shape = (1, 8, 8)
    bounds = (-1.0, 1.0)
    _optimal_value = 1.0

    def evaluate_true(self, x: torch.Tensor) -> torch.Tensor:
        ink = (x.clamp(-1.0, 1.0) + 1.0) / 2.0
        return ink.reshape(x.shape[0], -1).mean(dim=1)
