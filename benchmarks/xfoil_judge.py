"""Every airfoil result judged by XFoil: a run's best designs at the reported conditions.

NeuralFoil is a network trained on XFoil runs; an optimizer can find shapes where it is wrong.
XFoil itself is the judge an aerodynamicist trusts, so after a run the airfoil tasks take the
:data:`TOP` (10) best distinct designs **by the optimizer's own values** (what it was told)
and run XFoil (:func:`oracles.xfoil.xfoil_aero`) and NeuralFoil (the tasks' ``xlarge``
model) on them at each reported condition (:data:`CONDITIONS`: α 5°, Re 1e6, the task's;
α 2°, Re 5e5, one nobody tunes for; n_crit 9). Per condition ``c`` (:func:`judge_summary`):

=====================  ==================================================================
``xfoil_best_<c>``     best XFoil L/D of the 10 (converged runs)
``xfoil_mean_<c>``     mean XFoil L/D of the 10 that converged
``xfoil_conv_<c>``     share of the 10 whose XFoil run converged
``nf_best_<c>``        best NeuralFoil L/D of the 10
``nf_mean_<c>``        mean NeuralFoil L/D of the 10
``nf_gap_<c>``         mean NeuralFoil − XFoil L/D over the converged (> 0: NeuralFoil is
                       optimistic: the optimizer fooled it, or the network is off there)
=====================  ==================================================================

The runner writes these as extra columns of a run's last round (:attr:`benchmarks.tasks.Task.final_metrics`);
the reference line, the best database airfoil by XFoil at each condition, comes from
:mod:`benchmarks.xfoil_database`. Without the ``xfoil`` program the columns are NaN and a
warning says how to install it.
"""

from __future__ import annotations

import shutil
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from oracles.airfoil import neuralfoil_aero
from oracles.xfoil import XFoilConfig, xfoil_aero
from sqdf_bbo.data import KulfanStandardization

__all__ = [
    "Condition",
    "CONDITIONS",
    "TOP",
    "NEURALFOIL_MODEL",
    "SUMMARY_KEYS",
    "judge_designs",
    "judge_summary",
    "judge_run",
]


@dataclass(frozen=True)
class Condition:
    """One operating point an airfoil is judged at.

    Attributes:
        label: short name used in column names (``a5``).
        alpha: angle of attack in degrees.
        Re: chord Reynolds number.
        n_crit: e^n transition amplification factor.
    """

    label: str
    alpha: float
    Re: float
    n_crit: float = 9.0

    def xfoil(self, min_thickness: float | None = None) -> XFoilConfig:
        """The XFoil settings of this condition (default panels, iterations and timeout)."""
        return XFoilConfig(
            alpha=self.alpha, Re=self.Re, n_crit=self.n_crit, min_thickness=min_thickness
        )

    def describe(self) -> str:
        """``α 5°, Re 1e6`` (for tables)."""
        return f"α {self.alpha:g}°, Re {self.Re:.0e}".replace("e+0", "e")


#: The reported conditions: the airfoil-ld task's own, and one nobody tuned for.
CONDITIONS = (Condition("a5", 5.0, 1e6), Condition("a2", 2.0, 5e5))
#: Designs judged per run: the best by the optimizer's own values.
TOP = 10
#: The NeuralFoil network the airfoil tasks optimize (compared with XFoil on the same designs).
NEURALFOIL_MODEL = "xlarge"
#: The summary's names per condition (``<key>_<label>``), in column order.
SUMMARY_KEYS = ("xfoil_best", "xfoil_mean", "xfoil_conv", "nf_best", "nf_mean", "nf_gap")


def _top_designs(x: np.ndarray, values: np.ndarray, top: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``top`` distinct designs of ``x (n, d)`` with the highest finite ``values (n,)``."""
    ok = np.isfinite(values)
    x, values = x[ok], values[ok]
    _, first = np.unique(x, axis=0, return_index=True)
    first = np.sort(first)  # the first time each design was told
    order = first[np.argsort(-values[first], kind="stable")][:top]
    return x[order], values[order]


def judge_designs(
    x: torch.Tensor | np.ndarray,
    values: np.ndarray,
    *,
    standardization: KulfanStandardization | None,
    conditions: tuple[Condition, ...] = CONDITIONS,
    top: int = TOP,
    workers: int = 1,
) -> pd.DataFrame:
    """XFoil and NeuralFoil on the ``top`` best designs of a run, at every condition.

    Args:
        x: every told design, ``(n, 18)`` (standardized when ``standardization`` is given).
        values: the optimizer's values of them, ``(n,)`` (NaN = failed, never judged).
        standardization: the map from designs to Kulfan vectors, or ``None``.
        conditions: where to judge.
        top: how many designs (distinct, by ``values``, highest first).
        workers: XFoil processes at a time.

    Returns:
        One row per judged design (rank 1 = best value): ``rank``, ``value``, and per
        condition ``xfoil_ld_<c>``, ``xfoil_failure_<c>``, ``nf_ld_<c>``, then the 18 Kulfan
        numbers ``k0 … k17``.
    """
    arr = np.asarray(torch.as_tensor(x).detach().cpu().double().numpy()).reshape(len(values), -1)
    z, best = _top_designs(arr, np.asarray(values, dtype=np.float64), int(top))
    k = z if standardization is None else standardization.to_kulfan(z)
    table: dict[str, Any] = {"rank": np.arange(1, len(k) + 1), "value": best}
    for c in conditions:
        xf = xfoil_aero(k, c.xfoil(), workers=workers)
        table[f"xfoil_ld_{c.label}"] = xf["LD"]
        table[f"xfoil_failure_{c.label}"] = xf["failure"]
        nf = (
            neuralfoil_aero(k, alpha=c.alpha, Re=c.Re, n_crit=c.n_crit, model_size=NEURALFOIL_MODEL)
            if len(k)
            else {"LD": np.zeros(0)}
        )
        table[f"nf_ld_{c.label}"] = nf["LD"]
    for j in range(k.shape[1]):
        table[f"k{j}"] = k[:, j]
    return pd.DataFrame(table)


def judge_summary(
    judged: pd.DataFrame, conditions: tuple[Condition, ...] = CONDITIONS
) -> dict[str, float]:
    """The per-condition numbers of the module docstring from a :func:`judge_designs` table."""
    out: dict[str, float] = {}
    for c in conditions:
        xf = judged[f"xfoil_ld_{c.label}"].to_numpy(dtype=np.float64)
        nf = judged[f"nf_ld_{c.label}"].to_numpy(dtype=np.float64)
        conv = np.isfinite(xf)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # empty slices give NaN
            numbers = {
                "xfoil_best": np.nanmax(xf) if conv.any() else np.nan,
                "xfoil_mean": np.nanmean(xf) if conv.any() else np.nan,
                "xfoil_conv": conv.mean() if len(xf) else np.nan,
                "nf_best": np.nanmax(nf) if len(nf) else np.nan,
                "nf_mean": np.nanmean(nf) if len(nf) else np.nan,
                "nf_gap": np.nanmean(nf[conv] - xf[conv]) if conv.any() else np.nan,
            }
        out.update({f"{key}_{c.label}": float(numbers[key]) for key in SUMMARY_KEYS})
    return out


def judge_run(
    x: torch.Tensor,
    values: np.ndarray,
    standardization: KulfanStandardization | None,
    conditions: tuple[Condition, ...] = CONDITIONS,
) -> dict[str, float]:
    """:func:`judge_summary` of a whole run (the airfoil tasks' ``final_metrics`` hook).

    Without the ``xfoil`` program: every number NaN and one warning with the install command.
    """
    if shutil.which("xfoil") is None:
        warnings.warn(
            "XFoil is not installed (apt-get install xfoil): the run's XFoil columns are NaN",
            RuntimeWarning,
            stacklevel=2,
        )
        return {f"{key}_{c.label}": float("nan") for c in conditions for key in SUMMARY_KEYS}
    judged = judge_designs(x, values, standardization=standardization, conditions=conditions)
    return judge_summary(judged, conditions)
