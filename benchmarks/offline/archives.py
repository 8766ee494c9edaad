"""Archives for the offline benchmark: a task's real designs with their oracle values.

Design-Bench's protocol: the full data set (designs and values) is known to the benchmark;
the methods see it with its best ``hidden`` fraction removed (by value), and scores are
normalized by the full data's range, hidden part included:
``(y − min_full) / (max_full − min_full)``.

==================  ======================================================================
``digits-logit``    the 1437 training images of the sklearn digits split, valued by the
                    task's oracle (the frozen classifier's class-3 logit)
``rings``           1000 draws of the 8-Gaussian ring (seed 2024), valued by the rings bump
                    at (3, 3)
``airfoil-ld``      the 1739 training airfoils of the UIUC split (standardized Kulfan
                    vectors), valued by NeuralFoil xlarge L/D at α 5°, Re 1e6; thin
                    (t_max < 0.12) or self-intersecting ones are failed points (NaN)
==================  ======================================================================
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from benchmarks.airfoil_tasks import airfoil_standardized
from benchmarks.tasks import get_task
from sqdf_bbo.data import RingsDistribution, airfoil_split, digits_split

__all__ = ["ARCHIVE_TASKS", "Archive", "build_archive", "evaluate"]

ARCHIVE_TASKS = ("digits-logit", "rings", "airfoil-ld")
_RINGS_SEED = 2024
_RINGS_SIZE = 1000


@dataclass(frozen=True)
class Archive:
    """A task's full data and the part a method sees.

    Attributes:
        task: task name (:func:`benchmarks.tasks.get_task`).
        x: every design ``(N, *shape)``, float32.
        y: its value ``(N,)`` float64, NaN for a failed point.
        visible: ``(N,)`` bool, False for the hidden best fraction of the successful points.
        reasons: ``(N,)`` why each failed point failed (``None`` for successful ones).
    """

    task: str
    x: torch.Tensor
    y: np.ndarray
    visible: np.ndarray
    reasons: tuple[str | None, ...]

    @property
    def low(self) -> float:
        """min of the full data's successful values (the 0 of a normalized score)."""
        return float(np.nanmin(self.y))

    @property
    def high(self) -> float:
        """max of the full data's successful values, hidden part included (the 1)."""
        return float(np.nanmax(self.y))

    def normalized(self, y: np.ndarray) -> np.ndarray:
        """``(y − low) / (high − low)``; a failed design (NaN) scores 0 (the full data's min)."""
        z = (np.asarray(y, dtype=np.float64) - self.low) / (self.high - self.low)
        return np.where(np.isfinite(z), z, 0.0)

    def seen(self) -> tuple[torch.Tensor, np.ndarray, list[str | None]]:
        """The visible designs ``(n, *shape)``, values ``(n,)`` (NaN: failed) and reasons."""
        keep = np.flatnonzero(self.visible)
        return self.x[keep], self.y[keep], [self.reasons[i] for i in keep]


def evaluate(task_name: str, x: torch.Tensor) -> tuple[np.ndarray, list[str | None]]:
    """The task oracle's values ``(n,)`` of designs ``x (n, *shape)`` (seed 0, noise-free;
    NaN where the design failed) and the oracle's failure reasons."""
    oracle = get_task(task_name).oracle(0)
    with torch.no_grad():
        y = np.asarray(oracle(x.detach().cpu().float()), dtype=np.float64).reshape(-1)
    failures = getattr(oracle, "failures", None) or {}
    reasons = [None if np.isfinite(v) else str(failures.get(k, "failed")) for k, v in enumerate(y)]
    return y, reasons


def _designs(task_name: str) -> torch.Tensor:
    if task_name == "digits-logit":
        return digits_split().x_train
    if task_name == "rings":
        gen = torch.Generator().manual_seed(_RINGS_SEED)
        return RingsDistribution().sample(_RINGS_SIZE, gen)
    if task_name == "airfoil-ld":
        return airfoil_standardized(airfoil_split().kulfan_train)
    raise ValueError(f"no archive for task {task_name!r}; accepted: {', '.join(ARCHIVE_TASKS)}")


def build_archive(task_name: str, hidden: float = 0.1) -> Archive:
    """The archive of ``task_name`` with the best ``hidden`` fraction of its successful
    values hidden (ties at the threshold hidden too)."""
    if not 0 <= hidden < 1:
        raise ValueError(f"hidden must be in [0, 1), got {hidden}")
    x = _designs(task_name).float()
    y, reasons = evaluate(task_name, x)
    ok = np.isfinite(y)
    if ok.sum() < 2:
        raise ValueError(f"the {task_name} archive has fewer than two successful values")
    n_hide = int(round(hidden * ok.sum()))
    visible = np.ones(len(y), dtype=bool)
    if n_hide:
        threshold = np.sort(y[ok])[-n_hide]
        visible[ok & (y >= threshold)] = False
    return Archive(task_name, x, y, visible, tuple(reasons))
