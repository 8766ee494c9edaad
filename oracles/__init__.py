"""Oracles: the expensive black box, evaluated in batches; values are maximized, NaN marks a failure.

=========================  =====================================================
``Oracle``                 the base (shape, noise, negate, seeded noise, executor,
                           failures → NaN with reasons); one hook ``_evaluate``
``DifferentiableOracle``   base for torch-function oracles (``evaluate_true``)
``CallableOracle``         a Python function of one design or of a batch
``BoTorchOracle``          BoTorch synthetic test functions (Branin, Hartmann, …)
``DigitsClassOracle``      logit / log-prob of a digit class (shipped classifier)
``DigitsMarginOracle``     target logit minus the best other logit
``DigitsInkOracle``        stroke thickness (mean ink), classifier-free
``LinearOracle``           ``aᵀx`` (no maximum: leaves any manifold)
``BumpOracle``             Gaussian bump; ``RingsOracle`` = the rings benchmark's
``CommandOracle``          an external program: files in, files out
``EhrlichOracle``          Ehrlich functions: motifs in sequences, infeasible
                           transitions fail (holo's values; docs/sequences.md)
``NeuralFoilOracle``       airfoil L/D by NeuralFoil from Kulfan vectors (``airfoil`` extra)
``XFoilOracle``            airfoil L/D by XFoil 6.99, one process per design
                           (system program: ``apt-get install xfoil``)
``dask_executor``          a Dask ``Client`` as an executor (``dask`` extra)
``RayExecutor``            Ray tasks as an executor (``ray`` extra)
``WorkerDied``             the reason of a chunk whose cluster worker died
=========================  =====================================================

Heavy dependencies (BoTorch, the classifier, NeuralFoil) are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "Oracle": "base",
    "DifferentiableOracle": "base",
    "Evaluation": "base",
    "CallableOracle": "callable",
    "BoTorchOracle": "synthetic",
    "botorch_functions": "synthetic",
    "DigitsClassOracle": "digits",
    "DigitsMarginOracle": "digits",
    "DigitsInkOracle": "digits",
    "LinearOracle": "toy",
    "BumpOracle": "toy",
    "RingsOracle": "toy",
    "CommandOracle": "command",
    "EhrlichOracle": "ehrlich",
    "NeuralFoilOracle": "airfoil",
    "NeuralFoilConfig": "airfoil",
    "XFoilOracle": "xfoil",
    "XFoilConfig": "xfoil",
    "dask_executor": "cluster",
    "RayExecutor": "cluster",
    "WorkerDied": "cluster",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'oracles' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
