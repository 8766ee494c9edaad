"""The durable study store: corrupted/foreign folders fail cleanly and change nothing on disk."""

from __future__ import annotations

import hashlib
import math
import sqlite3
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from sqdf_bbo.optimizers.base import Optimizer
from sqdf_bbo.study.codec import join_state, split_state
from sqdf_bbo.study.points import Point
from sqdf_bbo.study.store import DB_NAME, StudyError, StudyStore
from tests.test_optimizer_contract import GaussianSearch


def tree_digest(root: Path) -> dict[str, str]:
    """Every file under ``root`` (names and contents)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def made_study(tmp_path: Path) -> Path:
    opt = GaussianSearch(batch_size=3, study=tmp_path / "s")
    b = opt.ask()
    opt.tell(b.ids[:2], [1.0, float("nan")])
    opt.close()
    return tmp_path / "s"


def test_split_join_round_trip() -> None:
    state = {
        "w": torch.arange(6.0).reshape(2, 3),
        "nested": {"a": [torch.ones(2, dtype=torch.bool), 3, "x"], "arr": np.arange(3)},
        "f": math.inf,
        "none": None,
        "np": np.float32(2.5),
    }
    js, tensors = split_state(state, prefix="extra")
    back = join_state(js, tensors)
    assert torch.equal(back["w"], state["w"])
    assert torch.equal(back["nested"]["a"][0], state["nested"]["a"][0])
    assert back["nested"]["a"][1:] == [3, "x"]
    assert np.array_equal(back["nested"]["arr"], np.arange(3))
    assert back["f"] == math.inf and back["none"] is None and back["np"] == 2.5
    with pytest.raises(TypeError, match="cannot be saved without pickle"):
        split_state({"bad": object()})


def test_values_are_stored_bit_exactly(tmp_path: Path) -> None:
    store = StudyStore.create(tmp_path / "s", {"method": "m", "shape": [1], "dtype": "float32"})
    values = [0.1, -1e-300, 1.0 / 3.0, 2.0**60 + 1.0, 5e-324]
    points = [
        Point(i, 0, "asked", "pending", math.nan, 0.0, None, torch.zeros(1))
        for i in range(len(values) + 3)
    ]
    store.insert_points(points)
    failed = [math.nan, math.inf, -math.inf]
    store.record_tells(
        [(i, "complete", v, 1.0, None, False) for i, v in enumerate(values)]
        + [(len(values) + j, "failed", v, 1.0, "why", j == 1) for j, v in enumerate(failed)]
    )
    store.close()
    back = StudyStore.open(tmp_path / "s", read_only=True).read_points()
    for r, v in zip(back, values):
        assert struct.pack("<d", r.value) == struct.pack("<d", v)
    assert math.isnan(back[-3].value) and back[-2].value == math.inf and back[-1].value == -math.inf
    assert [r.state for r in back[-3:]] == ["failed"] * 3
    assert [(r.reason, r.transient) for r in back[-3:]] == [
        ("why", False),
        ("why", True),
        ("why", False),
    ]


def test_tell_on_non_pending_point_rolls_back(tmp_path: Path) -> None:
    store = StudyStore.create(tmp_path / "s", {"method": "m", "shape": [1], "dtype": "float32"})
    store.insert_points(
        [Point(i, 0, "asked", "pending", math.nan, 0.0, None, torch.zeros(1)) for i in (0, 1)]
    )
    store.record_tells([(0, "complete", 1.0, 1.0, None, False)])
    with pytest.raises(StudyError, match="not pending"):
        store.record_tells(
            [(1, "complete", 2.0, 1.0, None, False), (0, "complete", 3.0, 1.0, None, False)]
        )
    states = {r.id: (r.state, r.value) for r in store.read_points()}
    assert states[0] == ("complete", 1.0)
    assert states[1][0] == "pending", "a failed tell transaction must not half-apply"


@pytest.mark.parametrize(
    "case", ["missing", "file", "empty", "garbage_db", "foreign_db", "bad_meta"]
)
def test_bad_folders_fail_cleanly_and_change_nothing(tmp_path: Path, case: str) -> None:
    target = tmp_path / "study"
    if case == "file":
        target.write_text("hello")
    elif case == "empty":
        target.mkdir()
    elif case == "garbage_db":
        target.mkdir()
        (target / DB_NAME).write_bytes(b"SQLite format 3\x00" + b"\x13" * 4000)
    elif case == "foreign_db":
        target.mkdir()
        conn = sqlite3.connect(target / DB_NAME)
        conn.execute("CREATE TABLE invoices (id INTEGER)")
        conn.commit()
        conn.close()
    elif case == "bad_meta":
        made_study(tmp_path)
        (tmp_path / "s").rename(target)
        conn = sqlite3.connect(target / DB_NAME)
        conn.execute("UPDATE meta SET value = '\"someone-else\"' WHERE key = 'format'")
        conn.commit()
        conn.close()
    before = tree_digest(tmp_path)
    with pytest.raises(StudyError) as info:
        Optimizer.load(target)
    assert len(str(info.value).splitlines()) == 1
    assert tree_digest(tmp_path) == before, "a failed load must not touch the disk"


def test_corrupted_snapshot_fails_cleanly(tmp_path: Path) -> None:
    study = made_study(tmp_path)
    snap = next((study / "snapshots").iterdir())
    (snap / "tensors.safetensors").write_bytes(b"\x00" * 10)
    before = tree_digest(tmp_path)
    with pytest.raises(StudyError, match="snapshot"):
        GaussianSearch.load(study)
    assert tree_digest(tmp_path) == before


def test_orphan_snapshot_is_ignored_then_removed(tmp_path: Path) -> None:
    """A kill between writing a snapshot and committing the ask leaves an orphan folder."""
    study = made_study(tmp_path)
    orphan = study / "snapshots" / "99999999"
    orphan.mkdir()
    (orphan / "state.json").write_text("{not json")
    opt = GaussianSearch.load(study)  # uses the committed pointer, not the newest folder
    assert opt.counts() == {"pending": 1, "complete": 1, "failed": 1}
    assert not orphan.exists(), "attaching cleans unreferenced snapshots"


def test_create_refuses_existing_study_and_nonempty_folder(tmp_path: Path) -> None:
    study = made_study(tmp_path)
    with pytest.raises(StudyError, match="already holds a study"):
        GaussianSearch(study=study)
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    with pytest.raises(StudyError, match="not empty"):
        GaussianSearch(study=other)
    assert sorted(p.name for p in other.iterdir()) == ["keep.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no temp folder left"


def test_wal_mode_and_full_sync(tmp_path: Path) -> None:
    opt = GaussianSearch(study=tmp_path / "s")
    conn = opt._store.conn  # type: ignore[union-attr]
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_no_pickle_anywhere(tmp_path: Path) -> None:
    study = made_study(tmp_path)
    suffixes = {p.suffix for p in study.rglob("*") if p.is_file()}
    assert suffixes <= {".sqlite", ".json", ".safetensors", ".sqlite-wal", ".sqlite-shm", ""}, (
        suffixes
    )
