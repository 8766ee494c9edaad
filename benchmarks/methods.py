"""The benchmark methods: how each name of ``bench --methods`` becomes an optimizer for a task.

:data:`METHODS` registers a factory per benchmark variant (``sqdf-ucb``, ``seiko-bootstrap``,
``cma-es`` from the task's start design, …; the table is in :mod:`benchmarks.suites`). Every
optimizer of the library's registry (:data:`sqdf_bbo.optimizers.registry.OPTIMIZERS`) is a
benchmark method too, under its ``method`` name: one without a factory here is built from the
task's prior (or its box) by :func:`sqdf_bbo.optimizers.registry.build`, as ``sqdf-bbo init``
builds it. So an optimizer registered once appears in ``bench --methods`` and ``sqdf-bbo init``
alike (``tests/test_bench.py`` registers one and runs it through ``bench``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from benchmarks.tasks import Task
from sqdf_bbo.diffusion.prior import DiffusionPrior
from sqdf_bbo.optimizers import (
    CMAES,
    GPBO,
    SEIKO,
    SQDF,
    GeneticAlgorithm,
    GPBOConfig,
    LaMBO2,
    PriorSampler,
    SEIKOConfig,
    SQDFOptimizerConfig,
)
from sqdf_bbo.optimizers.base import Optimizer
from sqdf_bbo.optimizers.registry import OPTIMIZERS, build
from sqdf_bbo.registry import Registry

__all__ = [
    "METHODS",
    "MethodRun",
    "method_names",
    "known_method",
    "method_base",
    "make_optimizer",
    "seiko_steps",
    "KNOWN",
]

KNOWN = "+known"  # suffix: the method with the task's known constraints


@dataclass(frozen=True)
class MethodRun:
    """What a method factory builds from: the task, its prior at the suite's K, the batch
    (the suite's first budget), the seed, the suite (``Any``: its settings, e.g.
    ``finetune_steps``), the KL weight to use (``None``: the config's default) and the task's
    known constraints (``None`` unless ``+known``)."""

    task: Task
    prior: DiffusionPrior
    batch: int
    seed: int
    suite: Any
    progress: bool = False
    kl_weight: float | None = None
    constraints: Any = None


METHODS: Registry[Callable[[MethodRun], Optimizer]] = Registry("benchmark method")
"""Factories of the benchmark variants, by name (:class:`MethodRun` → a fresh optimizer)."""


def method_base(method: str) -> tuple[str, bool]:
    """``(method without the +known suffix, whether it had it)``."""
    if method.endswith(KNOWN):
        return method[: -len(KNOWN)], True
    return method, False


def method_names() -> list[str]:
    """Every benchmark method: the variants, then the other registered optimizers."""
    return [*METHODS.names(), *(m for m in OPTIMIZERS.names() if m not in METHODS)]


def known_method(method: str) -> bool:
    """Whether ``method`` (maybe ``+known``) names a benchmark method."""
    base = method_base(method)[0]
    return base in METHODS or base in OPTIMIZERS


def seiko_steps(sqdf_steps: int) -> int:
    """SEIKO's gradient steps per round for a suite whose SQDF takes ``sqdf_steps``: the
    official codes' ratio, 10 SEIKO steps (5 epochs × 2) to 40 SQDF steps (20 epochs × 2).
    One SEIKO step back-propagates through a whole chain, so the ratio also roughly equalizes
    wall time on our priors."""
    return max(1, round(sqdf_steps / 4))


def make_optimizer(
    method: str,
    task: Task,
    seed: int,
    suite: Any,
    progress: bool = False,
    alpha_official: float | None = None,
) -> Optimizer:
    """A fresh optimizer of ``method`` for ``task`` (batch size = the suite's first budget).

    ``alpha_official`` (when given) replaces the KL weight (``finetune.kl_weight``, the
    official codes' α) of the ``sqdf*`` and ``seiko*`` methods (default: their config
    default); the others refuse it. ``<method>+known`` is ``<method>`` with the task's known
    constraints.
    """
    name, known = method_base(method)
    if alpha_official is not None and not name.startswith(("sqdf", "seiko")):
        raise ValueError(f"method {name!r} has no KL weight; alpha_official must be None")
    run = MethodRun(
        task=task,
        prior=suite.prior(task),  # at the suite's K
        batch=int(suite.budgets[0]),
        seed=seed,
        suite=suite,
        progress=progress,
        kl_weight=None if alpha_official is None else float(alpha_official),
        constraints=task.known_constraints() if known else None,
    )
    factory = METHODS.get(name, None)
    if factory is not None:
        return factory(run)
    if name in OPTIMIZERS:
        return build(
            OPTIMIZERS[name],
            run.prior,
            task.box,
            batch_size=run.batch,
            seed=seed,
            constraints=run.constraints,
        )
    raise ValueError(f"unknown method {method!r}; accepted values: {', '.join(method_names())}")


# ---------------------------------------------------------------------------- the variants
@METHODS.register("prior")
def _prior(run: MethodRun) -> Optimizer:
    return PriorSampler(run.prior, batch_size=run.batch, seed=run.seed, constraints=run.constraints)


def _sqdf(variant: dict[str, Any]) -> Callable[[MethodRun], Optimizer]:
    """A factory of SQDF with the suite's fine-tuning budget and ``variant``'s settings."""

    def make(run: MethodRun) -> Optimizer:
        suite, settings = run.suite, dict(variant)
        surrogate = settings.get("surrogate", "ensemble")
        finetune = {
            "steps": suite.finetune_steps,
            "transitions_per_step": suite.transitions_per_step,
            "rollouts_per_step": suite.rollouts_per_step,
            **settings.pop("finetune", {}),
            **({} if run.kl_weight is None else {"kl_weight": run.kl_weight}),
        }
        cfg = SQDFOptimizerConfig(
            surrogate_options={} if surrogate == "gp" else {"steps": suite.surrogate_steps},
            progress=run.progress,
            finetune=finetune,
            **settings,
        )
        return SQDF(
            run.prior, batch_size=run.batch, seed=run.seed, config=cfg, constraints=run.constraints
        )

    return make


for _name, _variant in {
    "sqdf": {},
    "sqdf-ucb": {"surrogate": "ucb"},
    "sqdf-gp": {"surrogate": "gp"},
    "sqdf-tweedie": {"finetune": {"x0_method": "tweedie"}},
    "sqdf-consistency": {"finetune": {"x0_method": "consistency"}},
    "sqdf-random-buffer": {"finetune": {"buffer_method": "random"}},
    "sqdf-gamma1": {"finetune": {"gamma": 1.0}},
    "sqdf-per50": {"finetune": {"gamma_rule": "per50"}},
    "sqdf-mean": {"surrogate_objective": "mean"},
    "sqdf-cap": {"reward_cap": 1.0},
    "sqdf-nofeas": {"learn_feasibility": False},
}.items():
    METHODS.register(_name, _sqdf(_variant))


def _seiko(surrogate: str, full_bp: bool = False) -> Callable[[MethodRun], Optimizer]:
    """A factory of SEIKO with ``surrogate`` (``full_bp``: every one of the K steps is
    differentiated through, bp = K always, instead of the official random truncation)."""

    def make(run: MethodRun) -> Optimizer:
        suite, K = run.suite, run.prior.num_inference_steps
        bp = {"truncation": "last-k", "bp_min": K, "bp_max": K} if full_bp else {}
        cfg = SEIKOConfig(
            surrogate=surrogate,
            surrogate_options={"steps": suite.surrogate_steps},
            progress=run.progress,
            finetune={
                "steps": seiko_steps(suite.finetune_steps),
                "chains_per_step": suite.chains_per_step,
                **bp,
                **({} if run.kl_weight is None else {"kl_weight": run.kl_weight}),
            },
        )
        return SEIKO(
            run.prior, batch_size=run.batch, seed=run.seed, config=cfg, constraints=run.constraints
        )

    return make


METHODS.register("seiko-ucb", _seiko("ucb"))
METHODS.register("seiko-bootstrap", _seiko("ensemble"))
METHODS.register("seiko-fullbp", _seiko("ensemble", full_bp=True))


@METHODS.register("gp-bo")
def _gp_bo(run: MethodRun) -> Optimizer:
    return GPBO(
        run.task.prior().shape,
        run.task.box,
        batch_size=run.batch,
        seed=run.seed,
        config=GPBOConfig(**run.suite.gp_options),
        constraints=run.constraints,
    )


@METHODS.register("cma-es")
def _cma_es(run: MethodRun) -> Optimizer:
    return CMAES(
        run.task.prior().shape,
        run.task.box,
        x0=run.task.start_design(),
        batch_size=run.batch,
        seed=run.seed,
        constraints=run.constraints,
    )


def _sequence_start(run: MethodRun, method: str) -> Any:
    task = run.task
    if task.natural is None or task.num_states is None:
        raise ValueError(f"method {method!r} needs a sequence task (ehrlich-…), got {task.name!r}")
    return task.natural(run.batch, run.seed)


@METHODS.register("ga")
def _ga(run: MethodRun) -> Optimizer:
    start = _sequence_start(run, "ga")
    return GeneticAlgorithm(start, run.task.num_states, batch_size=run.batch, seed=run.seed)


@METHODS.register("lambo2")
def _lambo2(run: MethodRun) -> Optimizer:
    start = _sequence_start(run, "lambo2")
    return LaMBO2(start, run.task.num_states, batch_size=run.batch, seed=run.seed)
