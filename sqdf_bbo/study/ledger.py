"""The study's bookkeeping that an optimizer owns: its points, the next id, the round, the
fit counters, the study's uid and the store that keeps them durable.

Every :class:`~sqdf_bbo.optimizers.base.Optimizer` holds one :class:`Ledger` as
``opt.ledger`` from the moment it exists (before any ``__init__`` code runs), and
:mod:`sqdf_bbo.study.persist` reads and writes an optimizer only through it and the
optimizer's public interface (``spec()``, ``state_dict()``, ``load_state_dict()``,
``settings_changed()``, its RNGs and shape attributes): nothing private.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from sqdf_bbo.study.points import Point
from sqdf_bbo.study.store import StudyStore

__all__ = ["Ledger"]


@dataclass
class Ledger:
    """What a study records besides the algorithm's own state.

    Attributes:
        points: every point by id (asked, external; pending, complete, failed).
        next_id: the id the next point gets.
        round: rounds fitted so far (``opt.round``).
        fitted_count: successful points the last fit saw.
        refit_pending: a fitted observation was marked failed since the fit.
        uid: the study's id, shared by every saved copy of it.
        store: the open study folder this optimizer writes through to, or ``None``.
    """

    points: dict[int, Point] = field(default_factory=dict)
    next_id: int = 0
    round: int = 0
    fitted_count: int = 0
    refit_pending: bool = False
    uid: str = field(default_factory=lambda: uuid.uuid4().hex)
    store: StudyStore | None = None

    def counters(self) -> dict[str, Any]:
        """The metadata that changes with the points (committed with them)."""
        return {
            "round": self.round,
            "fitted_count": self.fitted_count,
            "refit_pending": self.refit_pending,
        }
