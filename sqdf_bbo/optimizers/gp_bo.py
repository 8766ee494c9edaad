"""GP-BO in the raw design box: what a user without a generative prior would run.

Round 0 (no observation yet): designs uniform in the box ``[low, high]^D`` (drawn from
``self.generator``). Later rounds (:func:`propose_qlogei`): the q-batch maximizing BoTorch's
``qLogExpectedImprovement`` of a ``SingleTaskGP``. The designs are flattened to D
coordinates and mapped to the unit cube u = (x − low) / (high − low); the GP (BoTorch
defaults: Matern-5/2 ARD kernel, ``Standardize`` outcome transform) is fit by marginal
likelihood on at most ``max_train`` observations (the best half by value plus a seeded
random draw of the rest), and the q-batch is optimized jointly with ``optimize_acqf``
(``num_restarts`` L-BFGS-B restarts from the best of ``raw_samples`` random starts,
``maxiter`` iterations each). Everything runs in float64. For digits the box is
[-1, 1]^64, for the 2-D toy [-4, 4]^2.

Known constraints (``constraints=``): the acquisition function is penalized with the same
log-barrier the fine-tuners use (BoTorch's ``PenalizedAcquisitionFunction``):

    α_c(X) = qLogEI(X) + Σ_{x ∈ X} Σ_j log σ(c_j(x) / τ_j)

i.e. log(EI × Π σ(c/τ)), the analogue of expected improvement times the probability of
feasibility (Gardner et al. 2014) for a constraint known exactly; τ_j is calibrated on the
told designs (:meth:`~sqdf_bbo.constraints.Constraints.temperatures`). The base then keeps
only feasible designs, redrawing (round 0: uniform designs in the box; later: another
acquisition optimization from new restarts) for the rows that still violate one.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from sqdf_bbo.config import Range, as_config, check_fields, config_to_dict
from sqdf_bbo.constraints import Constraints
from sqdf_bbo.optimizers.base import Optimizer, Proposal

__all__ = ["GPBO", "GPBOConfig", "select_training_set", "propose_qlogei", "BarrierPenalty"]


@dataclass(frozen=True)
class GPBOConfig:
    """Cost controls of GP-BO.

    Args:
        max_train: cap on GP training points (best half + random rest).
        num_restarts: ``optimize_acqf`` restarts.
        raw_samples: ``optimize_acqf`` raw samples for initialization.
        maxiter: L-BFGS-B iterations per restart.
        mc_samples: Sobol-QMC samples of the acquisition function.
        fit_maxiter: L-BFGS-B iterations of the marginal-likelihood fit.
    """

    #: The sane range of each numeric setting (checked by ``check_fields``).
    LIMITS: ClassVar[dict[str, Range]] = {
        "max_train": Range(2, 10_000),
        "num_restarts": Range(1, 1000),
        "raw_samples": Range(1, 100_000),
        "maxiter": Range(1, 1_000_000),
        "mc_samples": Range(1, 100_000),
        "fit_maxiter": Range(1, 1_000_000),
    }

    max_train: int = 128
    num_restarts: int = 1
    raw_samples: int = 32
    maxiter: int = 20
    mc_samples: int = 32
    fit_maxiter: int = 50

    def __post_init__(self) -> None:
        check_fields(self)
        for name in (
            "max_train",
            "num_restarts",
            "raw_samples",
            "maxiter",
            "mc_samples",
            "fit_maxiter",
        ):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"GPBOConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.max_train < 2:
            raise ValueError(f"GPBOConfig.max_train must be >= 2, got {self.max_train}")


def select_training_set(
    y: torch.Tensor, max_train: int, generator: torch.Generator
) -> torch.Tensor:
    """Indices ``(m,)`` of at most ``max_train`` points: the best half plus random others."""
    n = y.shape[0]
    if n <= max_train:
        return torch.arange(n)
    order = torch.argsort(y, descending=True)
    n_top = max_train // 2
    rest = order[n_top:]
    pick = rest[torch.randperm(rest.shape[0], generator=generator)[: max_train - n_top]]
    return torch.cat([order[:n_top], pick])


class BarrierPenalty(torch.nn.Module):
    """−Σ_{x ∈ X} Σ_j log σ(c_j(x)/τ_j) of unit-cube q-batches ``X (b, q, D)`` → ``(b,)``
    (the penalty of :class:`PenalizedAcquisitionFunction`; module docstring).

    Args:
        constraints: the known constraints, on designs of shape ``shape``.
        tau: their temperatures ``(m,)``.
        box: ``(low, high)`` of the design box the unit cube maps to.
        shape: design shape.
    """

    def __init__(
        self,
        constraints: Constraints,
        tau: torch.Tensor,
        box: tuple[float, float],
        shape: tuple[int, ...],
    ) -> None:
        super().__init__()
        self.constraints, self.tau, self.box, self.shape = constraints, tau, box, shape

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        low, high = self.box
        b, q, _ = X.shape
        x = (low + (high - low) * X).reshape(b * q, *self.shape)
        return -self.constraints.log_barrier(x, self.tau).reshape(b, q).sum(1)


def propose_qlogei(
    x: torch.Tensor,
    y: torch.Tensor,
    box: tuple[float, float],
    q: int,
    config: GPBOConfig,
    seed: int,
    penalty: torch.nn.Module | None = None,
) -> torch.Tensor:
    """Propose ``q`` points ``(q, D)`` in the box from observations x ``(n, D)``, y ``(n,)``.

    ``seed`` fixes the training-set draw, the QMC sampler and the restarts; ``penalty``
    (unit-cube ``(b, q, D) -> (b,)``, e.g. :class:`BarrierPenalty`) is subtracted from the
    acquisition value.
    """
    # lazy: botorch and gpytorch are slow to import, and only GP-BO needs them
    from botorch.acquisition.logei import qLogExpectedImprovement
    from botorch.acquisition.penalized import PenalizedAcquisitionFunction  # lazy
    from botorch.exceptions.errors import ModelFittingError  # lazy
    from botorch.fit import fit_gpytorch_mll  # lazy
    from botorch.models import SingleTaskGP  # lazy
    from botorch.models.transforms.outcome import Standardize  # lazy
    from botorch.optim import optimize_acqf  # lazy
    from botorch.sampling.normal import SobolQMCNormalSampler  # lazy
    from gpytorch.mlls import ExactMarginalLogLikelihood  # lazy

    low, high = float(box[0]), float(box[1])
    gen = torch.Generator().manual_seed(int(seed))
    idx = select_training_set(y.detach().cpu(), config.max_train, gen)
    # 1. Unit-cube inputs, float64.
    X = ((x.detach().cpu()[idx].double() - low) / (high - low)).clamp(0.0, 1.0)
    Y = y.detach().cpu()[idx].double().reshape(-1, 1)
    D = X.shape[1]
    # 2. GP fit by marginal likelihood (BoTorch defaults; botorch's own fitting may use the
    #    global torch RNG for restarts, so it runs under a fork seeded by ``seed``).
    with torch.random.fork_rng():
        torch.manual_seed(int(seed))
        model = SingleTaskGP(X, Y, outcome_transform=Standardize(m=1))
        mll = ExactMarginalLogLikelihood(model.likelihood, model)
        try:
            fit_gpytorch_mll(mll, optimizer_kwargs={"options": {"maxiter": config.fit_maxiter}})
        except ModelFittingError as err:  # keep the default hyper-parameters, say so
            warnings.warn(
                f"GP-BO: GP hyper-parameter fit failed ({err}); using defaults", stacklevel=2
            )
        # 3. qLogEI with Sobol-QMC samples, jointly optimized over the q-batch.
        acqf = qLogExpectedImprovement(
            model,
            best_f=Y.max(),
            sampler=SobolQMCNormalSampler(torch.Size([config.mc_samples]), seed=int(seed)),
        )
        if penalty is not None:  # known constraints: log(EI · Π σ(c/τ))
            acqf = PenalizedAcquisitionFunction(acqf, penalty, regularization_parameter=1.0)
        bounds = torch.stack([torch.zeros(D), torch.ones(D)]).double()
        cand, _ = optimize_acqf(
            acqf,
            bounds=bounds,
            q=int(q),
            num_restarts=config.num_restarts,
            raw_samples=config.raw_samples,
            options={"maxiter": config.maxiter, "seed": int(seed)},
        )
    # 4. Back to the design box.
    return (low + (high - low) * cand.detach()).float()


class GPBO(Optimizer):
    """BoTorch GP + qLogEI directly in a design box.

    Args:
        shape: design shape, e.g. ``(1, 8, 8)``.
        box: ``(low, high)`` bounds of every coordinate.
        batch_size: designs per ``ask()``.
        seed: seeds the random designs and the acquisition optimization.
        config: :class:`GPBOConfig` (cost controls).
        study: folder to write the study through to.
        constraints: known constraints (see :class:`~sqdf_bbo.optimizers.base.Optimizer`),
            a barrier on the acquisition function (module docstring).
    """

    method = "gp-bo"
    config_class: ClassVar[type[GPBOConfig]] = GPBOConfig

    def __init__(
        self,
        shape: Sequence[int],
        box: tuple[float, float] = (-1.0, 1.0),
        batch_size: int = 64,
        seed: int = 0,
        config: GPBOConfig | Mapping[str, Any] | None = None,
        study: str | Path | None = None,
        constraints: Any = None,
    ) -> None:
        low, high = (float(b) for b in box)
        if not low < high:
            raise ValueError(f"box must be (low, high) with low < high, got {box}")
        config = as_config(config, GPBOConfig)
        self.box = (low, high)
        self.config = config
        super().__init__(
            shape, batch_size=batch_size, seed=seed, study=study, constraints=constraints
        )

    def _propose(self, n: int) -> Proposal:
        low, high = self.box
        obs = self.observations()
        if len(obs) == 0:
            u = torch.rand((n, *self.shape), generator=self.generator, device=self.device)
            return Proposal((low + (high - low) * u).to(self.dtype))
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=self.generator))
        penalty = None
        if self.constraints is not None:
            tau = self.constraints.temperatures(obs.x)
            penalty = BarrierPenalty(self.constraints, tau, self.box, self.shape)
        flat = propose_qlogei(
            obs.x.reshape(len(obs), -1), obs.y, self.box, n, self.config, seed, penalty
        )
        x = flat.reshape(n, *self.shape).to(self.device, self.dtype).clamp(low, high)
        return Proposal(x)

    def _metrics(self) -> dict[str, float]:
        return {}

    def _spec(self) -> dict[str, Any]:
        return {
            "shape": list(self.shape),
            "box": list(self.box),
            "config": config_to_dict(self.config),
        }
