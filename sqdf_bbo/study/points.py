"""One point of a study, and the views built from points.

:class:`Point` is the record the optimizer keeps in memory and the store writes; the store
encodes it into its table's columns itself (designs as raw bytes, NaN-safe values, a row
checksum: :mod:`sqdf_bbo.study.store`) and decodes rows back into points; nobody else sees
the columns. :class:`Observations`, :class:`Best` and :func:`history_frame` are what
``Optimizer.observations()``, ``best()`` and ``history`` return.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import pandas as pd
import torch

__all__ = [
    "Point",
    "STATES",
    "SOURCES",
    "state_of",
    "Observations",
    "Best",
    "observations_of",
    "best_of",
    "history_frame",
]

#: A point's life: asked (pending) → told (complete, or failed for a non-finite value);
#: ``mark_failed`` turns a pending or complete point failed. A failed point is a design
#: failure or, when :attr:`Point.transient`, a failure that says nothing about the design.
STATES = ("pending", "complete", "failed")
#: Who chose the design: the optimizer (``ask``) or the user (``tell_external``).
SOURCES = ("asked", "external")


@dataclass
class Point:
    """One asked or external point.

    Attributes:
        id: unique, increasing in the order points were made.
        round: the round it was asked in (external points: the round they arrived in).
        source: one of :data:`SOURCES`.
        state: one of :data:`STATES`.
        value: the told float for complete *and* failed points (NaN/±inf for failed ones, NaN
            while pending; a complete point later marked failed keeps its told value).
        asked_at: when it was made (seconds since the epoch).
        told_at: when it was told (``None`` while pending).
        x: the design ``(*shape)``, CPU.
        traj: the sampling chain ``(K+1, *shape)`` that produced it, CPU, or ``None``.
        reason: why it failed, when someone said.
        transient: for failed points only: ``True`` when the failure says nothing about the
            design (a worker died, a job timed out, a sample was lost, a plate was
            contaminated), ``False`` when the design itself failed (the oracle could not
            evaluate it, or it is infeasible). Always ``False`` for pending and complete
            points.
        condition: the condition it was asked or told under (a conditional prior's class
            label ``int``, prompt ``str`` or embedding tensor), or ``None``.
    """

    id: int
    round: int
    source: str
    state: str
    value: float
    asked_at: float
    told_at: float | None
    x: torch.Tensor
    traj: torch.Tensor | None = None
    reason: str | None = None
    transient: bool = False
    condition: int | str | torch.Tensor | None = None


def state_of(value: float) -> str:
    """The state a told value gives: ``"complete"`` if finite, else ``"failed"``."""
    return "complete" if math.isfinite(value) else "failed"


@dataclass(frozen=True)
class Observations:
    """Observations in id order.

    Attributes:
        ids: point ids, length m.
        x: designs ``(m, *shape)`` on the optimizer's device.
        y: values ``(m,)`` float64.
        sources: ``"asked"`` or ``"external"`` per point.
        rounds: the round each point was asked in (external points: the round they arrived).
        trajectories: per point, the sampling chain ``(K+1, *shape)`` (CPU) that produced its
            design, or ``None``.
        states: ``"complete"`` or ``"failed"`` per point (only complete points unless
            failed ones were asked for; empty when built without states).
        transient: per point, whether its failure says nothing about the design
            (:attr:`Point.transient`; ``False`` for complete points and design failures).
        conditions: per point, its condition (:attr:`Point.condition`; ``None`` when
            unconditional; empty when built without them).
    """

    ids: list[int]
    x: torch.Tensor
    y: torch.Tensor
    sources: list[str]
    rounds: list[int]
    trajectories: list[torch.Tensor | None]
    states: list[str] = field(default_factory=list)
    transient: list[bool] = field(default_factory=list)
    conditions: list[int | str | torch.Tensor | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    def chains(self, length: int) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        """The sampling chains of exactly ``length`` states, in id order.

        Returns trajectories ``(q, length, *shape)`` on ``x``'s device, their values ``(q,)``
        float64 and rounds. Points without a chain (external points, optimizers that do not
        sample chains) and chains of another length (the number of denoising steps changed
        between rounds) are left out; ``q`` may be 0.
        """
        keep = [
            i for i, t in enumerate(self.trajectories) if t is not None and t.shape[0] == length
        ]
        if not keep:
            empty = torch.empty((0, length, *self.x.shape[1:]), dtype=self.x.dtype)
            return empty.to(self.x.device), self.y[:0], []
        traj = torch.stack([self.trajectories[i] for i in keep]).to(self.x.device)
        return traj, self.y[keep], [self.rounds[i] for i in keep]

    def chain_conditions(self, length: int) -> list[int | str | torch.Tensor | None]:
        """The conditions of the chains :meth:`chains` returns for ``length``, in its order."""
        conds = self.conditions or [None] * len(self.ids)
        return [
            conds[i]
            for i, t in enumerate(self.trajectories)
            if t is not None and t.shape[0] == length
        ]


@dataclass(frozen=True)
class Best:
    """The best successful observation so far (values are maximized)."""

    id: int
    x: torch.Tensor
    value: float


def observations_of(
    points: Iterable[Point],
    keep: tuple[str, ...],
    shape: tuple[int, ...],
    dtype: torch.dtype,
    device: torch.device,
) -> Observations:
    """The points in states ``keep``, in id order, with designs ``(m, *shape)`` on ``device``
    (``dtype`` only matters when there are none) and values ``(m,)`` float64."""
    pts = [p for p in sorted(points, key=lambda p: p.id) if p.state in keep]
    if pts:
        x = torch.stack([p.x for p in pts]).to(device)
    else:
        x = torch.empty((0, *shape), dtype=dtype, device=device)
    y = torch.tensor([p.value for p in pts], dtype=torch.float64, device=device)
    return Observations(
        [p.id for p in pts],
        x,
        y,
        [p.source for p in pts],
        [p.round for p in pts],
        [p.traj for p in pts],
        [p.state for p in pts],
        [p.state == "failed" and p.transient for p in pts],
        [p.condition for p in pts],
    )


def best_of(points: Iterable[Point], device: torch.device) -> Best | None:
    """The complete point of highest value (lowest id among ties), ``None`` if none."""
    pts = [p for p in points if p.state == "complete"]
    if not pts:
        return None
    p = max(pts, key=lambda q: (q.value, -q.id))
    return Best(p.id, p.x.to(device).clone(), p.value)


def _shown(condition: int | str | torch.Tensor | None) -> object:
    """A condition as a history cell: labels and prompts as they are, tensors by shape."""
    if isinstance(condition, torch.Tensor):
        return f"<embedding {tuple(condition.shape)}>"
    return condition


def history_frame(points: Iterable[Point]) -> pd.DataFrame:
    """One row per point in id order: id, round, state, value, source, asked_at, told_at (UTC
    times), reason, transient (``Optimizer.history``)."""
    pts = sorted(points, key=lambda p: p.id)
    df = pd.DataFrame(
        {
            "id": pd.Series([p.id for p in pts], dtype="int64"),
            "round": pd.Series([p.round for p in pts], dtype="int64"),
            "state": pd.Series([p.state for p in pts], dtype="object"),
            "value": pd.Series([p.value for p in pts], dtype="float64"),
            "source": pd.Series([p.source for p in pts], dtype="object"),
            "asked_at": pd.to_datetime(
                pd.Series([p.asked_at for p in pts], dtype="float64"), unit="s", utc=True
            ),
            "told_at": pd.to_datetime(
                pd.Series(
                    [math.nan if p.told_at is None else p.told_at for p in pts],
                    dtype="float64",
                ),
                unit="s",
                utc=True,
            ),
            "reason": pd.Series([p.reason for p in pts], dtype="object"),
            "transient": pd.Series(
                [p.state == "failed" and p.transient for p in pts], dtype="bool"
            ),
        }
    )
    if any(p.condition is not None for p in pts):  # conditional studies: what each was under
        df["condition"] = pd.Series([_shown(p.condition) for p in pts], dtype="object")
    return df
