"""The frontier grids: :class:`FrontierSuite` (every regularized method at every α of a grid, at
one suite's budgets) and the registry ``FRONTIER_SUITES`` (``smoke``, ``quick``, ``full``,
``airfoil``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from benchmarks.layout import Cell
from benchmarks.suites import SUITES, Suite, known_method, method_names
from sqdf_bbo.config import check_fields

__all__ = [
    "FULL_ALPHAS",
    "QUICK_ALPHAS",
    "FrontierSuite",
    "FRONTIER_SUITES",
    "get_frontier_suite",
    "is_regularized",
]

FULL_ALPHAS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)


def is_regularized(method: str) -> bool:
    """True for methods with a KL weight α_official (``sqdf*``, ``seiko-*``)."""
    return method.startswith(("sqdf", "seiko-"))


@dataclass(frozen=True)
class FrontierSuite:
    """One frontier grid: every regularized method at every α, at one suite's budgets.

    Attributes:
        name: registry name.
        suite: the :class:`~benchmarks.suites.Suite` whose budgets and fine-tuning /
            surrogate settings every run uses (its own tasks/methods/seeds are ignored).
        tasks, methods, seeds: the grid; ``methods`` run on every task.
        alphas: the α_official values of the regularized methods (:func:`is_regularized`).
        task_methods: extra methods run on one task only (``{"rings": ("sqdf-gamma1",)}``).
        task_alphas: a task's own α grid replacing ``alphas`` on that task (declared grids
            reduced to fit a CPU budget, e.g. issue 19's ``steps50``).
        description: one line.
    """

    name: str
    suite: Suite
    tasks: tuple[str, ...]
    methods: tuple[str, ...]
    alphas: tuple[float, ...]
    seeds: tuple[int, ...]
    task_methods: dict[str, tuple[str, ...]] = field(default_factory=dict)
    task_alphas: dict[str, tuple[float, ...]] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        check_fields(self)
        extra = [m for ms in self.task_methods.values() for m in ms]
        unknown = [m for m in (*self.methods, *extra) if not known_method(m)]
        if unknown:
            raise ValueError(
                f"unknown methods {unknown}; accepted values: {', '.join(method_names())}"
            )
        if not self.tasks or not self.methods or not self.seeds or not self.alphas:
            raise ValueError("a frontier suite needs at least one task, method, seed and alpha")
        for grid in (self.alphas, *self.task_alphas.values()):
            if not grid or any(not (math.isfinite(a) and a > 0) for a in grid):
                raise ValueError(f"alphas must be finite and > 0, got {grid}")
            if len(set(grid)) != len(grid):
                raise ValueError(f"alphas must be distinct, got {grid}")

    def alphas_for(self, task: str) -> tuple[float, ...]:
        """The α grid of ``task``: its ``task_alphas`` entry, else ``alphas``."""
        return tuple(self.task_alphas.get(task, self.alphas))

    def methods_for(self, task: str) -> tuple[str, ...]:
        """The methods run on ``task``: ``methods`` then its ``task_methods``."""
        return tuple(dict.fromkeys((*self.methods, *self.task_methods.get(task, ()))))

    def cells(self) -> list[Cell]:
        """Every run ``(task, method, seed, alpha_official)``; α is ``None`` for α-free methods."""
        out: list[Cell] = []
        for task in self.tasks:
            for method in self.methods_for(task):
                alphas = self.alphas_for(task) if is_regularized(method) else (None,)
                out += [(task, method, s, a) for a in alphas for s in self.seeds]
        return out

    def restricted(
        self,
        tasks: Sequence[str] | None = None,
        methods: Sequence[str] | None = None,
        seeds: Sequence[int] | None = None,
        alphas: Sequence[float] | None = None,
        num_inference_steps: int | None = None,
    ) -> FrontierSuite:
        """The same frontier on a sub-grid (or at another sampler K); explicit ``methods``
        replace ``task_methods`` and explicit ``alphas`` replace ``task_alphas``."""
        return replace(
            self,
            suite=self.suite.restricted(num_inference_steps=num_inference_steps),
            tasks=tuple(tasks) if tasks else self.tasks,
            methods=tuple(methods) if methods else self.methods,
            seeds=tuple(int(s) for s in seeds) if seeds else self.seeds,
            alphas=tuple(float(a) for a in alphas) if alphas else self.alphas,
            task_methods={} if methods else self.task_methods,
            task_alphas={} if alphas else self.task_alphas,
        )


_FRONTIER_METHODS = ("prior", "sqdf", "seiko-ucb", "seiko-bootstrap", "gp-bo")
_RINGS_EXTRA = {"rings": ("sqdf-gamma1",)}
_ALL_TASKS = ("rings", "digits-logit", "digits-ink")
QUICK_ALPHAS = (0.25, 1.0, 4.0, 16.0)

FRONTIER_SUITES: dict[str, FrontierSuite] = {
    "smoke": FrontierSuite(
        name="smoke",
        suite=SUITES["smoke"],
        tasks=("rings",),
        methods=_FRONTIER_METHODS,
        alphas=(0.25, 4.0),
        seeds=(0,),
        task_methods=_RINGS_EXTRA,
        description="rings, 2 alphas, 1 seed, the smoke suite's tiny budgets (tests; seconds)",
    ),
    "quick": FrontierSuite(
        name="quick",
        suite=SUITES["quick"],
        tasks=_ALL_TASKS,
        methods=_FRONTIER_METHODS,
        alphas=QUICK_ALPHAS,
        seeds=(0, 1, 2),
        task_methods=_RINGS_EXTRA,
        description="3 tasks, 3 seeds, the quick suite's budgets 32/64/128 (<= 30 min, 2 cores)",
    ),
    "full": FrontierSuite(
        name="full",
        suite=SUITES["paper"],
        tasks=_ALL_TASKS,
        methods=_FRONTIER_METHODS,
        alphas=FULL_ALPHAS,
        seeds=(0, 1, 2),
        task_methods=_RINGS_EXTRA,
        description="3 tasks, all 7 alphas, 3 seeds, the paper suite's budgets 64..512",
    ),
    "airfoil": FrontierSuite(
        name="airfoil",
        suite=SUITES["airfoil"],
        tasks=("airfoil-ld",),
        methods=(*_FRONTIER_METHODS, "cma-es"),
        alphas=FULL_ALPHAS,
        seeds=(0, 1, 2),
        description="airfoil-ld (the airfoil extra), all 7 alphas, 3 seeds, 2,000 queries",
    ),
}


def get_frontier_suite(name: str) -> FrontierSuite:
    """The frontier suite ``name``."""
    if name not in FRONTIER_SUITES:
        raise ValueError(
            f"unknown frontier suite {name!r}; accepted values: {', '.join(FRONTIER_SUITES)}"
        )
    return FRONTIER_SUITES[name]


# Issue 19: the sampler's K (20 shipped, 50 in the paper) and the γ rule, declared in
# docs/benchmarks.md ("K and the discount") before it ran. The same trained networks, sampled
# with K DDIM steps (Suite.num_inference_steps); SQDF with the official constant γ = 0.9
# (``sqdf``) and with γ_K = 0.9^(50/K) (``sqdf-per50``, which is ``sqdf`` itself at K = 50),
# and both SEIKOs at the same K. Reduced α grids (one process on 2 shared cores): per task the
# α values where a method's constrained reward lay on the 7-α K = 20 frontier of 2026-11-27
# (docs/results/frontier, docs/results/airfoil/frontier), plus one neighbour on digits-logit.
STEPS_TASK_ALPHAS: dict[str, tuple[float, ...]] = {
    "digits-logit": (0.25, 1.0),
    "digits-ink": (2.0, 8.0),
    "rings": QUICK_ALPHAS,
    "airfoil-ld": (2.0, 16.0),
}
_STEPS_TASKS = ("digits-logit", "digits-ink", "rings")
for _K in (20, 50):
    _methods = ("prior", "sqdf", "seiko-ucb", "seiko-bootstrap")
    if _K != 50:
        _methods = ("prior", "sqdf", "sqdf-per50", "seiko-ucb", "seiko-bootstrap")
    FRONTIER_SUITES[f"steps{_K}"] = FrontierSuite(
        name=f"steps{_K}",
        suite=SUITES["quick"].restricted(num_inference_steps=_K),
        tasks=_STEPS_TASKS,
        methods=_methods,
        alphas=QUICK_ALPHAS,
        seeds=(0, 1, 2),
        task_alphas={t: STEPS_TASK_ALPHAS[t] for t in _STEPS_TASKS},
        description=f"issue 19: K = {_K}, the quick budgets, reduced alpha grids, 3 seeds",
    )
    FRONTIER_SUITES[f"airfoil-steps{_K}"] = FrontierSuite(
        name=f"airfoil-steps{_K}",
        suite=SUITES["airfoil"].restricted(num_inference_steps=_K),
        tasks=("airfoil-ld",),
        methods=_methods,
        alphas=STEPS_TASK_ALPHAS["airfoil-ld"],
        seeds=(0, 1, 2),
        description=f"issue 19: airfoil-ld at K = {_K}, 2,000 queries, alpha 2 and 16, 3 seeds",
    )
