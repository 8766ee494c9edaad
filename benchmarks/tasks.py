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
* ``start_design()`` — where a local search (CMA-ES) starts (optional hook ``start``;
  default the center of ``box``).

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
                    of every Kulfan number); CMA-ES starts at NACA 2412. Needs the
                    ``airfoil`` extra.
==================  ==========================================================

Tasks are cached per process (``get_task``): priors, density fits and bandwidths
are computed once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property, lru_cache

import numpy as np
import pandas as pd
import torch

from benchmarks import sequence_tasks
from benchmarks.naturalness import ExactLogDensity, NaturalnessModel, PCAGMMDensity
from oracles.airfoil import NeuralFoilOracle, geometry_failures, neuralfoil_aero
from oracles.digits import DigitsClassOracle, DigitsInkOracle
from oracles.toy import RingsOracle
from sqdf_bbo import load_prior
from sqdf_bbo.data import RingsDistribution, airfoil_split, digits_split, kulfan_from_database
from sqdf_bbo.diffusion.priors import load_standardization
from sqdf_bbo.metrics import mean_pairwise_distance, median_pairwise_distance, vendi_score

__all__ = [
    "Task",
    "register_task",
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

    def start_design(self) -> torch.Tensor:
        """Where a local search starts, shape ``(*shape)``: ``start()`` or the box center."""
        if self.start is not None:
            return torch.as_tensor(self.start()).detach().cpu().float()
        shape = self.heldout_designs.shape[1:]
        return torch.full(shape, (self.box[0] + self.box[1]) / 2)


_REGISTRY: dict[str, Callable[[], Task]] = {}
_CACHE: dict[str, Task] = {}


def register_task(name: str, factory: Callable[[], Task]) -> None:
    """Register a task factory under ``name`` (replacing an earlier one and its cache)."""
    _REGISTRY[name] = factory
    _CACHE.pop(name, None)


def available_tasks() -> list[str]:
    """Names of registered tasks."""
    return sorted(_REGISTRY)


def get_task(name: str) -> Task:
    """The task ``name`` (built once per process)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown task {name!r}; accepted values: {', '.join(available_tasks())}")
    if name not in _CACHE:
        _CACHE[name] = _REGISTRY[name]()
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


# ---------------------------------------------------------------------------- airfoil-ld
AIRFOIL_MIN_THICKNESS = 0.12
AIRFOIL_CONFIDENCE = 0.9  # NeuralFoil analysis_confidence above which a value counts
AIRFOIL_JUDGE_MODEL = "xxxlarge"  # the larger NeuralFoil model that validates L/D


def _airfoil_oracle(seed: int, model_size: str = "xlarge"):
    return NeuralFoilOracle(
        model_size=model_size,
        alpha=5.0,
        Re=1e6,
        n_crit=9.0,
        min_thickness=AIRFOIL_MIN_THICKNESS,
        standardization=load_standardization("airfoil"),
        seed=seed,
    )


def airfoil_extra_metrics(x: torch.Tensor) -> dict[str, float]:
    """The airfoil task's extra numbers for standardized designs ``x (n, 18)``.

    * ``valid_frac``: share of valid geometry (finite, not self-intersecting, t_max ≥ 0.12);
    * ``conf_frac``: share whose xxxlarge NeuralFoil ``analysis_confidence`` exceeds 0.9
      (computed for every finite design, valid or not: a naturalness measure);
    * ``validated_ld_mean`` / ``validated_ld_max``: the validated L/D of the batch, i.e.
      the xxxlarge model's L/D where the design is valid and that confidence exceeds 0.9,
      0 elsewhere (the optimized model is xlarge; a larger model and its confidence are a
      check no method sees).
    """
    judge = _airfoil_judge()
    k = judge.kulfan(x)
    n = k.shape[0]
    bad = geometry_failures(k, AIRFOIL_MIN_THICKNESS, judge.config.intersection_tol)
    finite = np.isfinite(k).all(1)
    conf = np.zeros(n)
    ld = np.zeros(n)
    if finite.any():
        aero = neuralfoil_aero(
            k[finite], alpha=5.0, Re=1e6, n_crit=9.0, model_size=AIRFOIL_JUDGE_MODEL
        )
        conf[finite] = np.nan_to_num(aero["confidence"], nan=0.0)
        ld[finite] = np.nan_to_num(aero["LD"], nan=0.0, posinf=0.0, neginf=0.0)
    valid = np.array([i not in bad for i in range(n)], dtype=bool)
    confident = conf > AIRFOIL_CONFIDENCE
    validated = np.where(valid & confident, ld, 0.0)
    return {
        "valid_frac": float(valid.mean()),
        "conf_frac": float(confident.mean()),
        "validated_ld_mean": float(validated.mean()),
        "validated_ld_max": float(validated.max()),
    }


@lru_cache(maxsize=1)
def _airfoil_judge():
    return _airfoil_oracle(0, AIRFOIL_JUDGE_MODEL)


def _airfoil_standardized(kulfan: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(load_standardization("airfoil").from_kulfan(kulfan), dtype=torch.float32)


@lru_cache(maxsize=1)
def _airfoil_naturalness() -> NaturalnessModel:
    x = _airfoil_standardized(airfoil_split().kulfan_train)
    return PCAGMMDensity(n_pca=10, n_components=8, seed=0).fit(x)


def _airfoil_start() -> torch.Tensor:
    return _airfoil_standardized(kulfan_from_database("naca2412")[None])[0]


def _airfoil_ld_task() -> Task:
    return Task(
        name="airfoil-ld",
        description=(
            "UIUC airfoils (standardized Kulfan vectors); reward = NeuralFoil xlarge L/D at "
            "alpha 5 deg, Re 1e6, failed below t_max 0.12"
        ),
        make_prior=lambda: _load_prior("airfoil"),
        make_oracle=_airfoil_oracle,
        make_naturalness=_airfoil_naturalness,
        make_heldout=lambda: _airfoil_standardized(airfoil_split().kulfan_heldout),
        feature_fn=_flatten,
        box=(-3.0, 3.0),
        is_image=False,
        extra_metrics=airfoil_extra_metrics,
        start=_airfoil_start,
    )


register_task("airfoil-ld", _airfoil_ld_task)


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
