"""Hostile input to the ask/tell API (issue 8): huge values, excluded points, unordered
containers, absurd batch sizes, and studies written by v0.1."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from sqdf_bbo.optimizers.base import Optimizer
from sqdf_bbo.optimizers.sqdf import SQDF

OLD_STUDY = Path(__file__).parent / "data" / "study_v0_1"
FAST = {
    "finetune": {"steps": 2, "transitions_per_step": 8, "rollouts_per_step": 2},
    "progress": False,
    "surrogate_options": {"steps": 10, "n_heads": 2},
}


def make(flat_prior, **kw) -> SQDF:
    return SQDF(flat_prior, batch_size=4, seed=0, config=FAST, **kw)


def test_a_value_beyond_float32_is_refused_and_the_study_keeps_working(
    flat_prior, tmp_path: Path
) -> None:
    """D1: 1e39 passed the float64 check and bricked every later ask."""
    opt = make(flat_prior, study=tmp_path / "s")
    b = opt.ask()
    with pytest.raises(ValueError, match="too large"):
        opt.tell(b.ids, [1e39, 0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="too large"):
        opt.tell_external(torch.zeros(1, 2), [-1e20])
    assert opt.counts() == {"pending": 4, "complete": 0, "failed": 0}
    limit = opt.value_limit
    assert 1e19 < limit < 2e19  # √(float32 max)
    opt.tell(b.ids, [limit, 0.0, 1.0, -limit])  # the largest allowed values still fit
    assert opt.ask().x.shape == (4, 2)


def test_mark_failed_excludes_a_told_value_and_refits(flat_prior, tmp_path: Path) -> None:
    """D1's way out: a told point can be marked failed afterwards (API); it is persisted,
    keeps its value in history with the reason, and the next ask refits without it."""
    opt = make(flat_prior, study=tmp_path / "s")
    b = opt.ask()
    opt.tell(b.ids, [0.0, 1.0, 2.0, 1e6])
    opt.ask()
    assert opt.round == 1 and opt.surrogate.n_train == 4
    opt.mark_failed([b.ids[3]], reason="pipetting error")
    h = opt.history.set_index("id")
    assert h.loc[b.ids[3], "state"] == "failed" and h.loc[b.ids[3], "value"] == 1e6
    assert h.loc[b.ids[3], "reason"] == "pipetting error"
    assert opt.best().value == 2.0
    opt.close()
    again = SQDF.load(tmp_path / "s")
    h = again.history.set_index("id")
    assert h.loc[b.ids[3], "reason"] == "pipetting error" and h.loc[b.ids[3], "value"] == 1e6
    again.ask()  # no new data, but an excluded point: a new round without it
    assert again.round == 2 and again.surrogate.n_train == 3
    again.ask()  # nothing changed since: no refit
    assert again.round == 2
    again.close()


def test_mark_failed_rejects_bad_ids_without_changing_anything(flat_prior) -> None:
    opt = make(flat_prior)
    b = opt.ask()
    opt.tell(b.ids[:2], [1.0, math.nan])
    before = opt.history.copy()
    with pytest.raises(KeyError):
        opt.mark_failed([b.ids[0], 999])
    with pytest.raises(ValueError, match="already failed"):
        opt.mark_failed([b.ids[0], b.ids[1]])
    with pytest.raises(ValueError, match="twice"):
        opt.mark_failed([b.ids[0], b.ids[0]])
    with pytest.raises(TypeError):
        opt.mark_failed([b.ids[0]], reason=3)  # type: ignore[arg-type]
    assert opt.history.equals(before)
    opt.mark_failed(b.ids[2], reason="tube lost")  # a pending point
    assert opt.counts() == {"pending": 1, "complete": 1, "failed": 2}


@pytest.mark.parametrize(
    "values", [{10.0: "a", 1.0: "b", 2.0: "c", 3.0: "d"}, {1.0, 2.0, 3.0, 4.0}]
)
def test_unordered_containers_are_not_values(flat_prior, values) -> None:
    """D9: a dict's keys were stored as values."""
    opt = make(flat_prior)
    b = opt.ask()
    with pytest.raises(TypeError, match="sequence"):
        opt.tell(b.ids, values)
    with pytest.raises(TypeError, match="sequence"):
        opt.tell({i: 0 for i in b.ids}, [1.0, 2.0, 3.0, 4.0])
    opt.tell(np.array(b.ids), np.array([1.0, 2.0, 3.0, 4.0]))  # arrays stay fine
    assert opt.counts()["complete"] == 4


def test_an_absurd_ask_is_a_clear_error(flat_prior) -> None:
    """D10: ask(10**12) was a raw allocator RuntimeError."""
    opt = make(flat_prior)
    with pytest.raises(ValueError, match="at most|more than"):
        opt.ask(10**12)
    with pytest.raises(ValueError, match="at most"):
        SQDF(flat_prior, batch_size=10**9)
    assert len(opt) == 0


def test_a_v0_1_study_still_loads_and_resumes(tmp_path: Path) -> None:
    """Studies written before failure reasons existed load read-only and attached."""
    detached = Optimizer.load(OLD_STUDY, attach=False)  # read-only: the fixture is untouched
    h = detached.history
    assert list(h["state"]) == ["complete", "failed", "complete", "pending"] + [
        "complete",
        "complete",
        "pending",
        "pending",
        "complete",
    ]
    assert h["reason"].isna().all()
    assert detached.best().value == 2.0
    copy = tmp_path / "old"
    shutil.copytree(OLD_STUDY, copy)
    opt = Optimizer.load(copy)  # attaching migrates the schema in place
    opt.mark_failed([0], reason="re-assayed")
    opt.tell([3], [0.5])
    opt.close()
    back = Optimizer.load(copy, attach=False)
    h = back.history.set_index("id")
    assert h.loc[0, "reason"] == "re-assayed" and h.loc[3, "value"] == 0.5
    assert back.ask().x.shape == (4, 2)


def test_an_optimizer_dropped_without_close_releases_the_study(flat_prior, tmp_path: Path) -> None:
    """Loading the same study twice in a notebook: the first, unreferenced optimizer must not
    keep the writer lock until the process exits."""
    import gc

    make(flat_prior, study=tmp_path / "s").close()
    opt = SQDF.load(tmp_path / "s")
    del opt
    gc.collect()
    again = SQDF.load(tmp_path / "s")  # would raise "open for writing elsewhere" before
    again.close()


class _FullDisk:
    """A connection stand-in whose COMMIT fails as SQLite does on a full disk."""

    def __init__(self, conn) -> None:
        self._conn = conn

    def execute(self, sql: str, *args):
        if sql.strip().upper() == "COMMIT":
            import sqlite3

            raise sqlite3.OperationalError("database or disk is full")
        return self._conn.execute(sql, *args)

    def __getattr__(self, name: str):
        return getattr(self._conn, name)


def test_a_full_disk_is_a_study_error_and_changes_nothing(
    flat_prior, tmp_path: Path, monkeypatch
) -> None:
    from sqdf_bbo.study.store import StudyError, StudyStore

    opt = make(flat_prior, study=tmp_path / "s")
    b = opt.ask()
    opt.tell(b.ids[:2], [1.0, 2.0])
    real = opt._store._conn
    opt._store._conn = _FullDisk(real)
    with pytest.raises(StudyError, match="disk is full"):
        opt.tell(b.ids[2:], [3.0, 4.0])
    with pytest.raises(StudyError, match="disk is full"):
        opt.tell_external(torch.zeros(1, 2), [5.0])
    opt._store._conn = real
    assert opt.counts() == {"pending": 2, "complete": 2, "failed": 0}

    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(StudyStore, "_write_snapshot_files", no_space)
    with pytest.raises(StudyError, match="No space left"):
        opt.ask()
    assert len(opt) == 4
    monkeypatch.undo()
    opt.tell(b.ids[2:], [3.0, 4.0])  # space is back: nothing was lost, the study goes on
    opt.close()
    back = SQDF.load(tmp_path / "s", attach=False)
    assert sorted(back.history["value"]) == [1.0, 2.0, 3.0, 4.0]
