"""The airfoil tasks' parts (:mod:`benchmarks.tasks` assembles them into ``airfoil-ld``,
``airfoil-ld-a2`` and ``airfoil-xfoil``): the NeuralFoil and XFoil oracles at a condition, the
extra per-batch numbers (valid share, confident share, validated L/D), the naturalness model
of the training Kulfan vectors, CMA-ES's start (NACA 2412), the XFoil judge of a run and the
known geometry constraints.
"""

from __future__ import annotations

import atexit
import contextlib
from concurrent.futures import Executor
from functools import lru_cache

import numpy as np
import torch

from benchmarks.naturalness import NaturalnessModel, PCAGMMDensity
from benchmarks.xfoil_judge import CONDITIONS, Condition, judge_run
from oracles.airfoil import (
    NeuralFoilOracle,
    airfoil_constraints,
    geometry_failures,
    neuralfoil_aero,
)
from oracles.cluster import dask_client, dask_executor
from oracles.xfoil import XFoilOracle
from sqdf_bbo.constraints import Constraint
from sqdf_bbo.data import airfoil_split, kulfan_from_database
from sqdf_bbo.diffusion.priors import load_standardization

__all__ = [
    "AIRFOIL_MIN_THICKNESS",
    "AIRFOIL_CONFIDENCE",
    "AIRFOIL_JUDGE_MODEL",
    "airfoil_oracle",
    "airfoil_extra_metrics",
    "airfoil_judge",
    "airfoil_standardized",
    "airfoil_naturalness",
    "airfoil_start",
    "airfoil_xfoil_judge",
    "airfoil_task_constraints",
    "xfoil_oracle",
]

AIRFOIL_MIN_THICKNESS = 0.12
AIRFOIL_CONFIDENCE = 0.9  # NeuralFoil analysis_confidence above which a value counts
AIRFOIL_JUDGE_MODEL = "xxxlarge"  # the larger NeuralFoil model that validates L/D
XFOIL_DASK_WORKERS = 2  # worker processes of the airfoil-xfoil task's LocalCluster


def airfoil_oracle(seed: int, model_size: str = "xlarge", condition: Condition = CONDITIONS[0]):
    return NeuralFoilOracle(
        model_size=model_size,
        alpha=condition.alpha,
        Re=condition.Re,
        n_crit=condition.n_crit,
        min_thickness=AIRFOIL_MIN_THICKNESS,
        standardization=load_standardization("airfoil"),
        seed=seed,
    )


def airfoil_extra_metrics(
    x: torch.Tensor, condition: Condition = CONDITIONS[0]
) -> dict[str, float]:
    """The airfoil tasks' extra numbers for standardized designs ``x (n, 18)`` at ``condition``
    (default α 5°, Re 1e6, the ``airfoil-ld`` task's).

    * ``valid_frac``: share of valid geometry (finite, not self-intersecting, t_max ≥ 0.12);
    * ``conf_frac``: share whose xxxlarge NeuralFoil ``analysis_confidence`` exceeds 0.9
      (computed for every finite design, valid or not: a naturalness measure);
    * ``validated_ld_mean`` / ``validated_ld_max``: the validated L/D of the batch, i.e.
      the xxxlarge model's L/D where the design is valid and that confidence exceeds 0.9,
      0 elsewhere (the optimized model is xlarge; a larger model and its confidence are a
      check no method sees).
    """
    judge = airfoil_judge()
    k = judge.kulfan(x)
    n = k.shape[0]
    bad = geometry_failures(k, AIRFOIL_MIN_THICKNESS, judge.config.intersection_tol)
    finite = np.isfinite(k).all(1)
    conf = np.zeros(n)
    ld = np.zeros(n)
    if finite.any():
        aero = neuralfoil_aero(
            k[finite],
            alpha=condition.alpha,
            Re=condition.Re,
            n_crit=condition.n_crit,
            model_size=AIRFOIL_JUDGE_MODEL,
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
def airfoil_judge():
    return airfoil_oracle(0, AIRFOIL_JUDGE_MODEL)


def airfoil_standardized(kulfan: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(load_standardization("airfoil").from_kulfan(kulfan), dtype=torch.float32)


@lru_cache(maxsize=1)
def airfoil_naturalness() -> NaturalnessModel:
    x = airfoil_standardized(airfoil_split().kulfan_train)
    return PCAGMMDensity(n_pca=10, n_components=8, seed=0).fit(x)


def airfoil_start() -> torch.Tensor:
    return airfoil_standardized(kulfan_from_database("naca2412")[None])[0]


def airfoil_xfoil_judge(x: torch.Tensor, y: np.ndarray) -> dict[str, float]:
    """The airfoil tasks' ``final_metrics``: the run's 10 best designs judged by XFoil
    (:func:`benchmarks.xfoil_judge.judge_run`)."""
    return judge_run(x, y, load_standardization("airfoil"))


def airfoil_task_constraints() -> list[Constraint]:
    """The oracles' geometry rules (t_max ≥ 0.12, no self-intersection) on standardized
    designs (:func:`oracles.airfoil.airfoil_constraints`)."""
    return airfoil_constraints(load_standardization("airfoil"), AIRFOIL_MIN_THICKNESS)


@lru_cache(maxsize=1)
def xfoil_executor() -> Executor:
    """A Dask executor on a LocalCluster of 2 worker processes, closed at exit (once per process)."""
    stack = contextlib.ExitStack()
    client = stack.enter_context(dask_client(f"local:{XFOIL_DASK_WORKERS}"))
    atexit.register(stack.close)
    return dask_executor(client)


def xfoil_oracle(seed: int) -> XFoilOracle:
    c = CONDITIONS[0]
    return XFoilOracle(
        alpha=c.alpha,
        Re=c.Re,
        n_crit=c.n_crit,
        min_thickness=AIRFOIL_MIN_THICKNESS,
        standardization=load_standardization("airfoil"),
        seed=seed,
        executor=xfoil_executor(),
    )
