"""Benchmark suites (tasks × methods × seeds × per-round budgets) and the method factory.

Methods (registered in ``METHODS``, :mod:`benchmarks.methods`, with every optimizer of the
library's registry), all driven through the public ask/tell API:

====================  =====================================================================
``prior``             :class:`~sqdf_bbo.optimizers.PriorSampler` (no fine-tuning)
``sqdf``              :class:`sqdf_bbo.SQDF`, official BBO setup: bootstrap-ensemble
                      surrogate, ``x0_method="auto"`` (consistency model when the prior has
                      one), prioritized ``reward+gamma`` buffer, γ = 0.9, α_official = 2
``sqdf-ucb``          SQDF with the neural-linear UCB surrogate
``sqdf-gp``           SQDF with the GP surrogate
``sqdf-tweedie``      SQDF with Tweedie's x0 estimate instead of the consistency model
``sqdf-consistency``  SQDF with the consistency model forced
``sqdf-random-buffer``SQDF with uniform buffer sampling
``sqdf-gamma1``       ablation: SQDF with γ = 1 (no discount of the soft-Q estimate)
``sqdf-per50``        SQDF with ``gamma_rule="per50"``: γ_K = 0.9^(50/K), the official
                      weight profile over the chain at any K (= ``sqdf`` at K = 50)
``sqdf-mean``         guard: SQDF against the surrogate's mean (no optimism)
``sqdf-cap``          guard: SQDF with the reward capped 1 target std above the best value
``sqdf-nofeas``       SQDF without the feasibility model (failed points teach nothing:
                      the behaviour before issue 18)
``seiko-ucb``         :class:`~sqdf_bbo.optimizers.SEIKO` with the UCB surrogate
``seiko-bootstrap``   SEIKO with the bootstrap-ensemble surrogate
``seiko-fullbp``      ablation: SEIKO-Bootstrap back-propagating through all K steps
                      (no randomized truncation)
``gp-bo``             :class:`~sqdf_bbo.optimizers.GPBO` in the task's raw design box
``cma-es``            :class:`~sqdf_bbo.optimizers.CMAES` (pycma, ``airfoil`` extra) in the
                      task's box from ``task.start_design()``, σ0 = 0.15 × box width, one
                      population of the round's budget per round
``ga``                :class:`~sqdf_bbo.optimizers.GeneticAlgorithm` (sequence tasks): holo's
                      discrete evolution, the paper's settings, starting from the task's
                      natural sequences
``lambo2``            :class:`~sqdf_bbo.optimizers.LaMBO2` (sequence tasks): our LaMBO-2
                      variant, cortex's defaults, starting from the task's natural sequences
====================  =====================================================================

Any method followed by ``+known`` (``sqdf+known``, ``cma-es+known``, …) gets the task's known
constraints (:meth:`benchmarks.tasks.Task.known_constraints`: the airfoil tasks' thickness and
self-intersection rules): its asks are always feasible and the fine-tuners see the
constraints in their reward (docs/constraints.md).

The two ablations isolate why both methods barely move on ``rings`` (docs/benchmarks.md):
SQDF weights a transition k steps before x_0 by γ^k and SEIKO's reward gradient reaches only
the last 1–5 of K steps, so both down-weight the early, high-noise steps where a sample
chooses its ring mode. They are not in any suite's default grid; run them with
``--methods sqdf-gamma1,seiko-fullbp``.

Fairness: SQDF and SEIKO follow their official codes' settings where these differ: each
method's own α_official convention (SQDF: α = 2·a/D, no ½ in its KL; SEIKO: α = a/D, a =
kl_weight/loss_coeff), SEIKO's official per-step random truncation, and the official ratio of
gradient steps per round (SEIKO 10 : SQDF 40, :func:`seiko_steps`). They share the reward
standardization, the design map in the reward path, the surrogate training budget and the
batch of chains/transitions per step within a suite. Because one α is not comparable across
methods, the frontier benchmark (:mod:`benchmarks.frontier`) sweeps each method's α.

Suites (``SUITES``): ``smoke`` (tests; seconds), ``quick`` (every task × the five main
methods × 2 seeds, small budgets; ≤ 15 min on 2 CPU cores), ``paper`` (4 rounds with
budgets in the paper's ratio 1:2:4:8, 3 seeds), ``airfoil`` (the ``airfoil-ld`` task,
the main methods and ``cma-es``, 3 seeds, 2,000 queries in rounds of 250/250/500/1000; needs
the ``airfoil`` extra) and ``airfoil-es`` (``cma-es`` alone on ``airfoil-ld`` in rounds of 16:
the small-population, many-generation setting an evolution strategy is usually run in, at
the same 2,000 queries), ``airfoil-xfoil`` (``prior`` and ``sqdf`` on ``airfoil-xfoil``,
XFoil itself as the oracle on a Dask LocalCluster of 2 workers, 2 seeds, 320 queries in
rounds of 80; run it with ``--workers 1``: each run process starts its own cluster).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from benchmarks.methods import (
    KNOWN,
    METHODS,
    known_method,
    make_optimizer,
    method_base,
    method_names,
    seiko_steps,
)
from benchmarks.tasks import Task
from sqdf_bbo.config import check_fields
from sqdf_bbo.deprecation import deprecate
from sqdf_bbo.registry import Registry

__all__ = [
    "Suite",
    "SUITES",
    "METHODS",
    "MAIN_METHODS",
    "KNOWN",
    "get_suite",
    "make_optimizer",
    "method_base",
    "method_names",
    "seiko_steps",
]

MAIN_METHODS = ("prior", "sqdf", "seiko-ucb", "seiko-bootstrap", "gp-bo")


@dataclass(frozen=True)
class Suite:
    """One benchmark suite.

    Attributes:
        name: registry name.
        tasks, methods, seeds: the grid.
        budgets: designs asked in each round (round r asks ``budgets[r]``).
        finetune_steps: SQDF gradient steps per round (SEIKO: :func:`seiko_steps` of it).
        transitions_per_step: SQDF's transitions per gradient step.
        chains_per_step: SEIKO's sampling chains per gradient step.
        finetune_batch_size: deprecated (it fed both settings above): sets both, with a
            ``DeprecationWarning``.
        surrogate_steps: training steps of the neural surrogates per fit.
        rollouts_per_step: SQDF on-policy rollouts per step.
        num_inference_steps: K, the DDIM sampling steps of every prior-based method (the
            same trained networks: DDIM changes K at sampling time); ``None`` keeps the
            prior's (20 for the shipped priors).
        gp_options: :class:`~sqdf_bbo.optimizers.GPBOConfig` overrides.
        description: one line.
    """

    name: str
    tasks: tuple[str, ...]
    methods: tuple[str, ...]
    seeds: tuple[int, ...]
    budgets: tuple[int, ...]
    finetune_steps: int = 40
    transitions_per_step: int = 32
    chains_per_step: int = 32
    finetune_batch_size: int | None = None
    surrogate_steps: int = 300
    rollouts_per_step: int = 8
    num_inference_steps: int | None = None
    gp_options: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        check_fields(self)
        if self.finetune_batch_size is not None:
            deprecate("Suite(finetune_batch_size=...)", "transitions_per_step and chains_per_step")
            object.__setattr__(self, "transitions_per_step", self.finetune_batch_size)
            object.__setattr__(self, "chains_per_step", self.finetune_batch_size)
            object.__setattr__(self, "finetune_batch_size", None)
        if self.num_inference_steps is not None and self.num_inference_steps < 2:
            raise ValueError(
                f"num_inference_steps must be >= 2 (a stochastic chain), got "
                f"{self.num_inference_steps}"
            )
        unknown = [m for m in self.methods if not known_method(m)]
        if unknown:
            raise ValueError(
                f"unknown methods {unknown}; accepted values: {', '.join(method_names())}"
            )
        if not self.budgets or any(int(b) < 1 for b in self.budgets):
            raise ValueError(f"budgets must be positive ints, got {self.budgets}")
        if not self.seeds or not self.tasks or not self.methods:
            raise ValueError("a suite needs at least one task, method and seed")

    def restricted(
        self,
        tasks: list[str] | None = None,
        methods: list[str] | None = None,
        seeds: list[int] | None = None,
        num_inference_steps: int | None = None,
    ) -> Suite:
        """The same suite on a sub-grid (or other seeds / methods, or another K)."""
        return replace(
            self,
            tasks=tuple(tasks) if tasks else self.tasks,
            methods=tuple(methods) if methods else self.methods,
            seeds=tuple(int(s) for s in seeds) if seeds else self.seeds,
            num_inference_steps=int(num_inference_steps)
            if num_inference_steps
            else self.num_inference_steps,
        )

    def prior(self, task: Task):
        """``task``'s prior sampled with this suite's K (the task's own prior when unset)."""
        prior = task.prior()
        if (
            self.num_inference_steps is None
            or prior.num_inference_steps == self.num_inference_steps
        ):
            return prior
        return prior.with_settings(num_inference_steps=self.num_inference_steps)


_ALL_TASKS = ("rings", "digits-logit", "digits-ink")
AIRFOIL_BUDGETS = (250, 250, 500, 1000)

SUITES: Registry[Suite] = Registry("suite")
for _suite in (
    Suite(
        name="smoke",
        tasks=("rings",),
        methods=MAIN_METHODS,
        seeds=(0,),
        budgets=(8, 8),
        finetune_steps=2,
        transitions_per_step=8,
        chains_per_step=8,
        surrogate_steps=20,
        rollouts_per_step=2,
        gp_options={"max_train": 16, "raw_samples": 8, "maxiter": 5, "mc_samples": 8},
        description="end-to-end check in seconds (tests)",
    ),
    Suite(
        name="quick",
        tasks=_ALL_TASKS,
        methods=MAIN_METHODS,
        seeds=(0, 1),
        budgets=(32, 64, 128),
        finetune_steps=40,
        transitions_per_step=32,
        chains_per_step=32,
        surrogate_steps=200,
        rollouts_per_step=4,
        gp_options={"max_train": 96, "num_restarts": 1, "raw_samples": 32, "maxiter": 15},
        description="every task x main methods x 2 seeds, small budgets (<= 15 min on 2 cores)",
    ),
    Suite(
        name="paper",
        tasks=_ALL_TASKS,
        methods=MAIN_METHODS,
        seeds=(0, 1, 2),
        budgets=(64, 128, 256, 512),
        finetune_steps=40,
        transitions_per_step=64,
        chains_per_step=64,
        surrogate_steps=600,
        rollouts_per_step=8,
        gp_options={"max_train": 256, "num_restarts": 2, "raw_samples": 64, "maxiter": 30},
        description="4 rounds, budgets 1:2:4:8 as in the paper, 3 seeds",
    ),
):
    SUITES.register(_suite.name, _suite)


SUITES["airfoil"] = Suite(
    name="airfoil",
    tasks=("airfoil-ld",),
    methods=(*MAIN_METHODS, "cma-es"),
    seeds=(0, 1, 2),
    budgets=AIRFOIL_BUDGETS,
    finetune_steps=40,
    transitions_per_step=64,
    chains_per_step=64,
    surrogate_steps=600,
    rollouts_per_step=8,
    gp_options={"max_train": 256, "num_restarts": 1, "raw_samples": 32, "maxiter": 15},
    description="airfoil-ld (NeuralFoil L/D, t_max >= 0.12): main methods + cma-es, 3 seeds",
)


SUITES["airfoil-es"] = Suite(
    name="airfoil-es",
    tasks=("airfoil-ld",),
    methods=("cma-es",),
    seeds=(0, 1, 2),
    budgets=(16,) * 125,
    description=(
        "airfoil-ld: cma-es in its usual sequential setting at the same 2,000 queries "
        "(population 16, 125 generations)"
    ),
)


SUITES["airfoil-xfoil"] = Suite(
    name="airfoil-xfoil",
    tasks=("airfoil-xfoil",),
    methods=("prior", "sqdf"),
    seeds=(0, 1),
    budgets=(80, 80, 80, 80),
    finetune_steps=40,
    transitions_per_step=64,
    chains_per_step=64,
    surrogate_steps=600,
    rollouts_per_step=8,
    description=(
        "airfoil-xfoil: XFoil as the oracle on a Dask LocalCluster (2 workers), prior and "
        "sqdf, 320 queries (run with --workers 1)"
    ),
)


# Issue 18's grid (declared before it ran; docs/constraints.md reports it): both airfoil
# conditions, every constraint mechanism on and off, 3 seeds, 2,000 queries in 8 rounds of
# 250, so the feasibility model has rounds to learn in; CMA-ES also sequentially (16 × 125).
CONSTRAINT_METHODS = (
    "prior",
    "prior+known",
    "sqdf-nofeas",
    "sqdf",
    "sqdf-nofeas+known",
    "sqdf+known",
    "seiko-bootstrap",
    "seiko-bootstrap+known",
    "cma-es",
    "cma-es+known",
)
SUITES["airfoil-constraints"] = Suite(
    name="airfoil-constraints",
    tasks=("airfoil-ld", "airfoil-ld-a2"),
    methods=CONSTRAINT_METHODS,
    seeds=(0, 1, 2),
    budgets=(250,) * 8,
    finetune_steps=40,
    transitions_per_step=64,
    chains_per_step=64,
    surrogate_steps=600,
    rollouts_per_step=8,
    description=(
        "issue 18: both airfoil conditions, known / learned / no constraints, 3 seeds, "
        "2,000 queries in rounds of 250"
    ),
)
SUITES["airfoil-constraints-es"] = Suite(
    name="airfoil-constraints-es",
    tasks=("airfoil-ld", "airfoil-ld-a2"),
    methods=("cma-es", "cma-es+known"),
    seeds=(0, 1, 2),
    budgets=(16,) * 125,
    description="issue 18: cma-es sequentially (population 16) at the same 2,000 queries",
)


def get_suite(name: str) -> Suite:
    """The suite ``name`` (``ValueError`` listing the known ones)."""
    return SUITES.get(name)


SEQUENCE_METHODS = ("prior", "sqdf", "seiko-bootstrap", "ga", "lambo2")

SUITES["ehrlich-smoke"] = Suite(
    name="ehrlich-smoke",
    tasks=("ehrlich-v32-l32-c4-k4-q4",),
    methods=SEQUENCE_METHODS,
    seeds=(0,),
    budgets=(8, 8),
    finetune_steps=2,
    transitions_per_step=8,
    chains_per_step=8,
    surrogate_steps=20,
    rollouts_per_step=2,
    description="end-to-end check of the sequence methods in seconds (tests)",
)

SUITES["ehrlich"] = Suite(
    name="ehrlich",
    tasks=("ehrlich-v32-l32-c4-k4-q4", "ehrlich-v32-l128-c4-k4-q4"),
    methods=SEQUENCE_METHODS,
    seeds=(0, 1, 2, 3, 4),
    budgets=(128,) * 12,
    finetune_steps=40,
    transitions_per_step=32,
    chains_per_step=32,
    surrogate_steps=200,
    rollouts_per_step=4,
    description=(
        "Ehrlich (32, 32, 4, 4, 4) and (32, 128, 4, 4, 4): the sequence methods, 12 rounds x 128 "
        "(the published LaMBO-2 protocol), 5 seeds"
    ),
)
