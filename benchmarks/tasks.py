"""Benchmark tasks: prior + oracle + naturalness measure + diversity feature map, by name.

A :class:`Task` bundles what a benchmark run needs:

* ``prior()`` — the pretrained diffusion prior the generative methods start from;
* ``oracle(seed)`` — the black box (the only source of rewards);
* ``naturalness`` — a calibrated :class:`~benchmarks.naturalness.NaturalnessModel`
  that no method optimizes (fit on training data only, thresholded on held-out data);
* ``features(x)`` and a fixed RBF ``bandwidth`` — the space diversity is measured in;
* ``box`` — the design box a method without a generative prior searches (GP-BO);
* ``heldout_designs`` — held-out real designs (naturalness and diversity references);
* ``score_designs(x)`` — naturalness, natural_frac, Vendi and mean pairwise distance of a batch;
* ``extra_scores(x)`` — the task's own named numbers for a batch (optional hook
  ``extra_metrics``; the runner writes them as extra rounds.csv columns);
* ``final_scores(x, y)`` — the task's own named numbers for a whole run, from every told
  design and its value (optional hook ``final_metrics``; the runner adds them to the last
  round's row, e.g. the airfoil tasks' XFoil judgement, :mod:`benchmarks.xfoil_judge`);
* ``start_design()`` — where a local search (CMA-ES) starts (optional hook ``start``;
  default the center of ``box``);
* ``known_constraints()`` — the rules of the task a user could state exactly, as
  :class:`~sqdf_bbo.constraints.Constraint` objects (optional hook ``constraints``; the
  methods ``<method>+known`` of :mod:`benchmarks.suites` receive them).

Registered tasks (``available_tasks()``):

==================  ==========================================================
``rings``           2-D ring of 8 Gaussians; oracle ``RingsOracle`` (its maximum
                    lies off the data manifold); naturalness = exact log p(x);
                    diversity in R² with h = median distance of real samples;
                    box [-4, 4]².
``digits-logit``    8×8 digits; reward = the frozen classifier's logit of a
                    target class, 3 (``DigitsClassOracle``); naturalness = PCA×GMM
                    log-density of train digits; diversity in pixel space.
``digits-ink``      8×8 digits; reward = stroke thickness, the mean ink of the
                    image (``DigitsInkOracle``, ∈ [0, 1]; real digits ≈ 0.3, the
                    maximum is an all-ink square — not a digit); same
                    naturalness and diversity as ``digits-logit``.
``ehrlich-v32-l32-c4-k4-q4``, ``ehrlich-v32-l128-c4-k4-q4``
                    Ehrlich functions (instance seed 0) over sequences as one-hot
                    designs (L, v); naturalness = exact chain log-likelihood
                    (NaN when infeasible); extra columns ``feasible_frac``,
                    ``hamming``, ``vendi_onehot`` (:mod:`benchmarks.sequence_tasks`).
``airfoil-ld``      UIUC airfoils as standardized 18-D Kulfan vectors (the
                    ``airfoil`` prior); reward = NeuralFoil xlarge L/D at α = 5°,
                    Re = 1e6, n_crit = 9, failed when t_max < 0.12 or the shape
                    self-intersects; naturalness = PCA×GMM log-density of the
                    training Kulfan vectors; extra columns ``valid_frac``,
                    ``conf_frac`` and the validated L/D (see
                    :func:`airfoil_extra_metrics`); box [-3, 3]^18 (mean ± 3 std
                    of every Kulfan number); CMA-ES starts at NACA 2412; after
                    the run, the 10 best designs judged by XFoil at α 5° / Re 1e6
                    and α 2° / Re 5e5 (:mod:`benchmarks.xfoil_judge`). Needs the
                    ``airfoil`` extra (and the ``xfoil`` program for the judge).
``airfoil-ld-a2``   the same at α = 2°, Re = 5e5 (NeuralFoil and its validation
                    at that condition; judged at both).
``airfoil-xfoil``   the same designs, prior and rules, but XFoil itself is the
                    oracle (α 5°, Re 1e6; :class:`~oracles.xfoil.XFoilOracle`),
                    each design one job on a Dask ``LocalCluster`` of 2 worker
                    processes started on first use in this process (the
                    expensive-simulator workflow; ``dask`` extra, ``xfoil``).
==================  ==========================================================

Tasks are cached per process (``get_task``): priors, density fits and bandwidths
are computed once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property, lru_cache, partial

import numpy as np
import pandas as pd
import torch

from benchmarks import sequence_tasks
from benchmarks.airfoil_tasks import (
    airfoil_extra_metrics,
    airfoil_naturalness,
    airfoil_oracle,
    airfoil_standardized,
    airfoil_start,
    airfoil_task_constraints,
    airfoil_xfoil_judge,
    xfoil_oracle,
)
from benchmarks.metrics import mean_pairwise_distance, median_pairwise_distance, vendi_score
from benchmarks.naturalness import ExactLogDensity, NaturalnessModel, PCAGMMDensity
from benchmarks.xfoil_judge import CONDITIONS, Condition
from oracles.digits import DigitsClassOracle, DigitsInkOracle
from oracles.toy import RingsOracle
from sqdf_bbo import load_prior
from sqdf_bbo.constraints import Constraint
from sqdf_bbo.data import RingsDistribution, airfoil_split, digits_split
from sqdf_bbo.registry import Registry

__all__ = [
    "Task",
    "register_task",
    "TASKS",
    "get_task",
    "available_tasks",
    "DIGITS_TARGET",
    "naturalness_reference",
    "airfoil_extra_metrics",
]

DIGITS_TARGET = 3  # target class of the digits-logit task
_REFERENCE_SEED = 12345  # draws of reference samples (rings held-out set)


@dataclass
class Task:
    """One benchmark task (see module docstring).

    Args:
        name: registry name.
        description: one line for reports.
        make_prior: ``() → DiffusionPrior``.
        make_oracle: ``(seed) → Oracle``.
        make_naturalness: ``() → NaturalnessModel`` fit on training data (not calibrated).
        make_heldout: ``() → (m, *shape)`` held-out real designs.
        feature_fn: ``(n, *shape) → (n, F)`` features for diversity.
        box: ``(low, high)`` per-coordinate design box for prior-free methods.
        is_image: designs are images (sample grids are drawn).
        extra_metrics: optional ``(n, *shape) → {name: float}``, the task's own numbers
            for a batch (written as extra rounds.csv columns); ``None``: none.
        start: optional ``() → (*shape)``, the design a local search starts from;
            ``None``: the center of ``box``.
        final_metrics: optional ``(x (N, *shape), y (N,)) → {name: float}`` of every design
            a run told and its value (NaN = failed), after the last round; ``None``: none.
        constraints: optional ``() → [Constraint, ...]``, the task's known constraints
            (``None``: it has none).
        natural: optional ``(n, seed) → (n, L)`` integer tokens, natural sequences for the
            sequence methods that start from sequences instead of a prior (GA, LaMBO-2);
            ``None`` for tasks whose designs are not sequences.
        num_states: v of a sequence task (designs ``(L, v)``); ``None`` otherwise.
    """

    name: str
    description: str
    make_prior: Callable[[], object]
    make_oracle: Callable[[int], object]
    make_naturalness: Callable[[], NaturalnessModel]
    make_heldout: Callable[[], torch.Tensor]
    feature_fn: Callable[[torch.Tensor], torch.Tensor]
    box: tuple[float, float]
    is_image: bool = False
    extra_metrics: Callable[[torch.Tensor], dict[str, float]] | None = None
    start: Callable[[], torch.Tensor] | None = None
    final_metrics: Callable[[torch.Tensor, np.ndarray], dict[str, float]] | None = None
    constraints: Callable[[], list[Constraint]] | None = None
    natural: Callable[[int, int], torch.Tensor] | None = None
    num_states: int | None = None
    _prior: object | None = field(default=None, repr=False)

    def prior(self):
        """The pretrained prior (loaded once; methods clone it before fine-tuning)."""
        if self._prior is None:
            self._prior = self.make_prior()
        return self._prior

    def oracle(self, seed: int = 0):
        """A fresh oracle whose observation noise is seeded by ``seed``."""
        return self.make_oracle(int(seed))

    @cached_property
    def heldout_designs(self) -> torch.Tensor:
        """Held-out real designs ``(m, *shape)``."""
        return self.make_heldout()

    @cached_property
    def naturalness(self) -> NaturalnessModel:
        """The naturalness model, calibrated on :attr:`heldout_designs` (5th percentile)."""
        return self.make_naturalness().calibrate(self.heldout_designs, 5.0)

    @cached_property
    def bandwidth(self) -> float:
        """RBF bandwidth h = median pairwise feature distance of held-out real designs."""
        return median_pairwise_distance(self.features(self.heldout_designs))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Diversity features ``(n, F)`` of designs ``(n, *shape)``."""
        with torch.no_grad():
            return self.feature_fn(torch.as_tensor(x).detach().cpu().float())

    def score_designs(self, x: torch.Tensor) -> dict[str, float]:
        """Naturalness and diversity of one batch ``(n, *shape)`` (finite designs only)."""
        x = torch.as_tensor(x).detach().cpu().float()
        ok = torch.isfinite(x.reshape(x.shape[0], -1)).all(1)
        lq = self.naturalness.log_density(x)
        f = self.features(x[ok]) if bool(ok.any()) else None
        return {
            "naturalness": float(torch.as_tensor(lq).nanmean()),
            "natural_frac": self.naturalness.fraction_natural(x),
            "vendi": vendi_score(f, "rbf", self.bandwidth) if f is not None else float("nan"),
            "pairwise_dist": mean_pairwise_distance(f) if f is not None else float("nan"),
        }

    def extra_scores(self, x: torch.Tensor) -> dict[str, float]:
        """The task's own named numbers for a batch ``(n, *shape)`` (``{}`` without a hook)."""
        if self.extra_metrics is None:
            return {}
        x = torch.as_tensor(x).detach().cpu().float()
        return {str(k): float(v) for k, v in self.extra_metrics(x).items()}

    def final_scores(self, x: torch.Tensor, y: np.ndarray) -> dict[str, float]:
        """The task's numbers for a whole run: every told design ``x (N, *shape)`` and its
        value ``y (N,)`` (``{}`` without a ``final_metrics`` hook)."""
        if self.final_metrics is None:
            return {}
        x = torch.as_tensor(x).detach().cpu()
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        return {str(k): float(v) for k, v in self.final_metrics(x, y).items()}

    def known_constraints(self) -> list[Constraint]:
        """The task's known constraints (``ValueError`` for a task without any)."""
        if self.constraints is None:
            raise ValueError(f"task {self.name!r} has no known constraints")
        return self.constraints()

    def start_design(self) -> torch.Tensor:
        """Where a local search starts, shape ``(*shape)``: ``start()`` or the box center."""
        if self.start is not None:
            return torch.as_tensor(self.start()).detach().cpu().float()
        shape = self.heldout_designs.shape[1:]
        return torch.full(shape, (self.box[0] + self.box[1]) / 2)


TASKS: Registry[Callable[[], Task]] = Registry("task")
"""Task factories by name (a task is built once per process, by :func:`get_task`)."""
_CACHE: dict[str, Task] = {}
TASKS.on_change(lambda name: _CACHE.pop(name, None))  # a new factory: build it again


def register_task(name: str, factory: Callable[[], Task]) -> None:
    """Register a task factory under ``name`` (replacing an earlier one and its cache)."""
    TASKS.register(name, factory)


def available_tasks() -> list[str]:
    """Names of registered tasks."""
    return sorted(TASKS)


def get_task(name: str) -> Task:
    """The task ``name`` (built once per process)."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; accepted values: {', '.join(available_tasks())}")
    if name not in _CACHE:
        _CACHE[name] = TASKS[name]()
    return _CACHE[name]


# ---------------------------------------------------------------------------- built-in tasks
def _flatten(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1)


def _load_prior(name: str):
    return load_prior(name)


def _digits_heldout() -> torch.Tensor:
    return digits_split().x_heldout


@lru_cache(maxsize=1)
def _digits_naturalness() -> NaturalnessModel:
    return PCAGMMDensity(n_pca=16, n_components=10, seed=0).fit(digits_split().x_train)


def _rings_task() -> Task:
    dist = RingsDistribution()
    return Task(
        name="rings",
        description="2-D ring of 8 Gaussians; reward maximum off the data manifold",
        make_prior=lambda: _load_prior("rings"),
        make_oracle=lambda seed: RingsOracle(seed=seed),
        make_naturalness=lambda: ExactLogDensity(dist.log_prob),
        make_heldout=lambda: dist.sample(2000, torch.Generator().manual_seed(_REFERENCE_SEED)),
        feature_fn=_flatten,
        box=(-4.0, 4.0),
        is_image=False,
    )


def _digits_logit_task() -> Task:
    return Task(
        name="digits-logit",
        description=f"8x8 digits; reward = classifier logit of class {DIGITS_TARGET}",
        make_prior=lambda: _load_prior("digits"),
        make_oracle=lambda seed: DigitsClassOracle(target=DIGITS_TARGET, seed=seed),
        make_naturalness=_digits_naturalness,
        make_heldout=_digits_heldout,
        feature_fn=_flatten,
        box=(-1.0, 1.0),
        is_image=True,
    )


register_task("rings", _rings_task)
register_task("digits-logit", _digits_logit_task)


def naturalness_reference(name: str, n: int = 256, seed: int = 0) -> pd.DataFrame:
    """Calibration table of a task's naturalness and diversity on reference sets.

    Rows: held-out real designs, training designs (digits), ``n`` samples of the pretrained
    prior, uniform noise in the task's box, saturated designs (every coordinate at a box
    corner, i.e. random signs), and held-out designs plus N(0, 0.3²) noise (clamped to the
    box for images). Columns: ``naturalness`` (mean log q), ``natural_frac`` (share above the
    held-out 5th percentile), ``vendi``, ``pairwise_dist``. A good measure ranks held-out real
    high, prior samples close to it, noise and saturated designs low.
    """
    task = get_task(name)
    g = torch.Generator().manual_seed(int(seed))
    held = task.heldout_designs
    shape = held.shape[1:]
    low, high = task.box
    sets: dict[str, torch.Tensor] = {"held-out real": held[:n]}
    if task.is_image:
        sets["train real"] = digits_split().x_train[:n]
    prior = task.prior()
    x_prior = prior.sample(n, torch.Generator(device=prior.device).manual_seed(int(seed))).x
    if prior.value_range is not None:
        x_prior = x_prior.clamp(*prior.value_range)
    sets["prior samples"] = x_prior.detach().cpu()
    sets["uniform noise in box"] = low + (high - low) * torch.rand((n, *shape), generator=g)
    signs = torch.randint(0, 2, (n, *shape), generator=g).float()
    sets["saturated (box corners)"] = low + (high - low) * signs
    noisy = held[:n] + 0.3 * torch.randn(held[:n].shape, generator=g)
    sets["held-out + N(0, 0.3^2)"] = noisy.clamp(low, high) if task.is_image else noisy
    rows = []
    for label, x in sets.items():
        rows.append({"set": label, "n": int(x.shape[0]), **task.score_designs(x)})
    return pd.DataFrame(rows)


def _digits_ink_task() -> Task:
    return Task(
        name="digits-ink",
        description="8x8 digits; reward = mean ink (maximum = all-ink square, not a digit)",
        make_prior=lambda: _load_prior("digits"),
        make_oracle=lambda seed: DigitsInkOracle(seed=seed),
        make_naturalness=_digits_naturalness,
        make_heldout=_digits_heldout,
        feature_fn=_flatten,
        box=(-1.0, 1.0),
        is_image=True,
    )


register_task("digits-ink", _digits_ink_task)


# ---------------------------------------------------------------------------- airfoil-…
def _airfoil_task(name: str, description: str, make_oracle, condition: Condition) -> Task:
    return Task(
        name=name,
        description=description,
        make_prior=lambda: _load_prior("airfoil"),
        make_oracle=make_oracle,
        make_naturalness=airfoil_naturalness,
        make_heldout=lambda: airfoil_standardized(airfoil_split().kulfan_heldout),
        feature_fn=_flatten,
        box=(-3.0, 3.0),
        is_image=False,
        extra_metrics=partial(airfoil_extra_metrics, condition=condition),
        start=airfoil_start,
        final_metrics=airfoil_xfoil_judge,
        constraints=airfoil_task_constraints,
    )


def _airfoil_ld_task(condition: Condition = CONDITIONS[0], name: str = "airfoil-ld") -> Task:
    return _airfoil_task(
        name,
        "UIUC airfoils (standardized Kulfan vectors); reward = NeuralFoil xlarge L/D at "
        f"{condition.describe()}, failed below t_max 0.12",
        partial(airfoil_oracle, condition=condition),
        condition,
    )


register_task("airfoil-ld", _airfoil_ld_task)
register_task("airfoil-ld-a2", lambda: _airfoil_ld_task(CONDITIONS[1], "airfoil-ld-a2"))
register_task(
    "airfoil-xfoil",
    lambda: _airfoil_task(
        "airfoil-xfoil",
        "UIUC airfoils (standardized Kulfan vectors); reward = XFoil L/D at "
        f"{CONDITIONS[0].describe()} on a Dask LocalCluster, failed below t_max 0.12",
        xfoil_oracle,
        CONDITIONS[0],
    ),
)


# ---------------------------------------------------------------------------- ehrlich-…
def _ehrlich_task(name: str) -> Task:
    o = sequence_tasks.instance(name)
    return Task(
        name=name,
        description=(
            f"Ehrlich function, v={o.num_states}, L={o.length}, c={o.num_motifs}, "
            f"k={o.motif_length}, q={o.quantization}; infeasible sequences fail"
        ),
        make_prior=lambda: _load_prior(name),
        make_oracle=lambda seed: sequence_tasks.ehrlich_oracle(name, seed=seed),
        make_naturalness=lambda: sequence_tasks.ChainLogLikelihood(o),
        make_heldout=lambda: sequence_tasks.heldout_designs(name),
        feature_fn=lambda x: sequence_tasks.sequence_features(name, x),
        box=(-1.0, 1.0),
        extra_metrics=lambda x: sequence_tasks.sequence_extra_metrics(name, x),
        natural=lambda n, seed: sequence_tasks.natural_sequences(name, n, seed),
        num_states=o.num_states,
    )


for _name in sequence_tasks.SEQUENCE_TASKS:
    register_task(_name, lambda _n=_name: _ehrlich_task(_n))
