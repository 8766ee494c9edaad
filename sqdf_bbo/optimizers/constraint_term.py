"""What a fine-tuned-prior optimizer's reward knows of feasibility: the constraint term h.

    h(x) = α · Σ_j log σ( c_j(x) / τ_j )  +  α · log max(p̂(x), floor)

with c the known constraints (when given; τ_j calibrated on the told designs each round)
and p̂ the feasibility model fit on the told points (once a design has failed; complete = 1,
design failure = 0, transient failures left out). The reward is r̂ + h, so the fine-tuner's
KL-regularized target becomes p(x) · Π_j σ(c_j/τ_j) · p̂(x) · exp(r̂(x)/α)
(docs/constraints.md). :class:`ConstraintTerm` owns both parts, their refits and their state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from sqdf_bbo.constraints import Constraints
from sqdf_bbo.study.points import Observations
from sqdf_bbo.surrogates.feasibility import FeasibilityModel

__all__ = ["ConstraintTerm"]


class ConstraintTerm:
    """The constraint term h of a fine-tuned-prior optimizer's reward (module docstring).

    Args:
        constraints: the optimizer's known constraints, or ``None``.
        learn: whether to learn P(feasible | x) from design failures.
        options: :class:`~sqdf_bbo.surrogates.feasibility.FeasibilityConfig` overrides.
        seed: the feasibility model's seed.
        feature_map: the features the surrogate sees (``None``: flattened designs).

    Attributes:
        feasibility: the :class:`FeasibilityModel`.
        use_feasibility: whether h holds the learned term (design failures were told).
        fitted_failures: design failures the last fit learned from (``None``: a study saved
            before failures taught anything, resolved at the next check).
        tau: the known constraints' temperatures ``(m,)`` (``None`` before the first fit).
    """

    def __init__(
        self,
        constraints: Constraints | None,
        learn: bool,
        options: Mapping[str, Any],
        seed: int,
        feature_map: Callable[[torch.Tensor], torch.Tensor] | None,
    ) -> None:
        self.constraints = constraints
        self.learn = bool(learn)
        self.feasibility = FeasibilityModel(seed=seed, feature_map=feature_map, **dict(options))
        self.use_feasibility = False
        self.fitted_failures: int | None = 0
        self.tau: torch.Tensor | None = None

    @property
    def active(self) -> bool:
        """Whether h has any part yet (after the first fit with constraints or failures)."""
        return (self.constraints is not None and self.tau is not None) or self.use_feasibility

    def __call__(self, d: torch.Tensor, alpha: float) -> torch.Tensor:
        """h of designs ``d (n, *shape)`` for KL weight ``alpha``: ``(n,)``, differentiable."""
        h = torch.zeros(d.shape[0], device=d.device, dtype=d.dtype)
        if self.constraints is not None and self.tau is not None:
            h = h + alpha * self.constraints.log_barrier(d, self.tau).to(d.dtype)
        if self.use_feasibility:
            h = h + alpha * self.feasibility.log_feasibility(d).to(d.dtype)
        return h

    def refit_needed(self, design_failures: int) -> bool:
        """Whether ``design_failures`` (told so far) holds failures the model has not seen."""
        if self.fitted_failures is None:  # a study saved before failures taught: as then
            self.fitted_failures = design_failures
        return self.learn and design_failures != self.fitted_failures

    def fit(
        self, told: Observations, designs: Callable[[torch.Tensor], torch.Tensor]
    ) -> dict[str, float]:
        """Refit on every told point (``observations(include_failed=True)``); ``designs``
        maps stored points to the designs the oracle saw. Returns the round-log entries."""
        failed = [s == "failed" and not t for s, t in zip(told.states, told.transient)]
        n_failed = sum(failed)
        # 1. Learned feasibility: complete = 1, design failure = 0 (transient ones left out).
        self.use_feasibility = self.learn and n_failed > 0
        self.fitted_failures = n_failed
        if self.use_feasibility:
            keep = [s == "complete" or f for s, f in zip(told.states, failed)]
            rows = torch.tensor(keep, device=told.x.device)
            labels = torch.tensor([s == "complete" for s, k in zip(told.states, keep) if k])
            self.feasibility.fit(designs(told.x[rows]), labels)
        # 2. Known constraints: τ_j from the spread of c_j over every told design.
        if self.constraints is not None:
            self.tau = self.constraints.temperatures(told.x)
        return {"n_design_failures": float(n_failed)}

    def state_dict(self) -> dict[str, Any]:
        return {
            "feasibility": self.feasibility.state_dict(),
            "use_feasibility": self.use_feasibility,
            "fitted_failures": self.fitted_failures,
            "constraint_tau": self.tau,
        }

    def load_state_dict(self, state: Mapping[str, Any], device: torch.device) -> None:
        """Restore :meth:`state_dict` output; a state saved before failures taught anything
        (no ``feasibility`` entry) leaves the term empty."""
        if "feasibility" in state:
            self.feasibility.load_state_dict(dict(state["feasibility"])).to(device)
        self.use_feasibility = bool(state.get("use_feasibility", False))
        fitted = state.get("fitted_failures")
        self.fitted_failures = None if fitted is None else int(fitted)
        tau = state.get("constraint_tau")
        self.tau = None if tau is None else torch.as_tensor(tau, dtype=torch.float64)
