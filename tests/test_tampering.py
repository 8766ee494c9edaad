"""Edits of ``study.sqlite`` made outside sqdf-bbo that keep every remaining row's checksum
valid (issue 16, item 1): deleted, added, unchecked and replaced rows, dropped checksum
columns and deleted metadata rows are refused at the next open, and nothing is written."""

from __future__ import annotations

import json
import math
import re
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from sqdf_bbo.cli import main
from sqdf_bbo.optimizers.base import Optimizer
from sqdf_bbo.study.schema import INTEGRITY, STUDY_VERSION, point_crc
from sqdf_bbo.study.store import DB_NAME, StudyError
from tests.test_optimizer_contract import GaussianSearch
from tests.test_store import tree_digest

DATA = Path(__file__).parent / "data"


def made(tmp_path: Path) -> Path:
    """A closed study: 6 points (complete, failed, pending, external), one excluded."""
    opt = GaussianSearch(batch_size=4, study=tmp_path / "s")
    b = opt.ask()
    opt.tell(b.ids[:3], [1.0, math.nan, 2.5])
    opt.tell_external(np.array([[0.1, 0.2]]), [0.5])
    opt.mark_failed([b.ids[0]], "bad assay")
    opt.ask(1)
    opt.close()
    return tmp_path / "s"


def sql(study: Path, *statements: str, params: tuple = ()) -> None:
    with sqlite3.connect(study / DB_NAME) as conn:
        for statement in statements:
            conn.execute(statement, params if "?" in statement else ())
    conn.close()


def copy_last_row_as(study: Path, new_id: int) -> None:
    """Insert a copy of the last row under ``new_id`` with a valid checksum (a careful forger
    who knows the CRC function, but not the integrity record)."""
    with sqlite3.connect(study / DB_NAME) as conn:
        cols = "id, round, source, state, value, raw, asked_at, told_at, x, traj, reason"
        row = list(conn.execute(f"SELECT {cols}, transient FROM points ORDER BY id DESC"))[0]
        fields = (new_id, *row[1:11])
        conn.execute(
            f"INSERT INTO points ({cols}, transient, crc) VALUES ({', '.join('?' * 13)})",
            (*fields, row[11], point_crc(fields, row[11])),
        )
    conn.close()


EDITS: dict[str, tuple[Callable[[Path], None], str]] = {
    "a told point deleted": (
        lambda s: sql(s, "DELETE FROM points WHERE id = 1"),
        "holds 5 points but 6 were committed: rows were deleted",
    ),
    "the last rows deleted (their ids would be reused)": (
        lambda s: sql(s, "DELETE FROM points WHERE id >= 4"),
        "holds 4 points but 6 were committed",
    ),
    "a value edited with its checksum set to NULL": (
        lambda s: sql(s, "UPDATE points SET value = 99, crc = NULL WHERE id = 2"),
        "point 2 has no checksum",
    ),
    "the checksum column dropped": (
        lambda s: sql(s, "ALTER TABLE points DROP COLUMN crc"),
        "without columns ['crc']",
    ),
    "both checksum columns dropped (posing as a study from before checksums)": (
        lambda s: sql(s, "ALTER TABLE points DROP COLUMN crc", "ALTER TABLE meta DROP COLUMN crc"),
        "a version-3 study without",
    ),
    "a row inserted without a checksum": (
        lambda s: sql(
            s,
            "INSERT INTO points (id, round, source, state, value, asked_at, x) "
            "VALUES (99, 0, 'external', 'complete', 1e6, 0, x'0000000000000000')",
        ),
        "point 99 has no checksum",
    ),
    "a row inserted with a valid checksum": (
        lambda s: copy_last_row_as(s, 6),
        "holds 7 points but 6 were committed: rows were added",
    ),
    "a row replaced by another with a valid checksum": (
        lambda s: (sql(s, "DELETE FROM points WHERE id = 5"), copy_last_row_as(s, 5)),
        "checksums do not add up",
    ),
    "the snapshot metadata row deleted": (
        lambda s: sql(s, "DELETE FROM meta WHERE key = 'snapshot'"),
        "missing study metadata ['snapshot']",
    ),
    "another metadata row deleted": (
        lambda s: sql(s, "DELETE FROM meta WHERE key = 'refit_pending'"),
        "metadata rows were deleted ['refit_pending']",
    ),
    "the integrity record deleted": (
        lambda s: sql(s, f"DELETE FROM meta WHERE key = '{INTEGRITY}'"),
        "a version-3 study without its 'integrity' metadata",
    ),
    "a metadata row's checksum set to NULL": (
        lambda s: sql(s, "UPDATE meta SET value = '7', crc = NULL WHERE key = 'round'"),
        "study metadata ['round'] fail their checksum",
    ),
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_edits_that_keep_row_checksums_valid_are_refused(
    edit: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    study = made(tmp_path)
    apply, message = EDITS[edit]
    apply(study)
    before = tree_digest(study)
    for attach in (False, True):
        with pytest.raises(StudyError, match=re.escape(message)):
            Optimizer.load(study, attach=attach)
    assert main(["status", "--study", str(study)]) == 2
    assert message.split(":")[0] in capsys.readouterr().err
    assert tree_digest(study) == before, "a refused study is never written to"


def test_a_row_edited_while_the_study_is_open_is_never_written_over(tmp_path: Path) -> None:
    opt = GaussianSearch(batch_size=3, study=tmp_path / "s")
    b = opt.ask()
    sql(tmp_path / "s", "UPDATE points SET crc = NULL WHERE id = ?", params=(b.ids[1],))
    with pytest.raises(StudyError, match=f"point {b.ids[1]} has no checksum"):
        opt.tell(b.ids, [1.0, 2.0, 3.0])
    assert opt.counts()["pending"] == 3, "a refused tell changes nothing in memory"
    opt.tell(b.ids[0], 1.0)  # untouched rows can still be told
    sql(tmp_path / "s", f"DELETE FROM points WHERE id = {b.ids[2]}")
    opt.close()
    with pytest.raises(StudyError, match="has no checksum"):
        Optimizer.load(tmp_path / "s", attach=False)
    sql(tmp_path / "s", "DELETE FROM points WHERE crc IS NULL")  # remove the evidence too
    with pytest.raises(StudyError, match="holds 1 points but 3 were committed"):
        Optimizer.load(tmp_path / "s", attach=False)


def test_a_study_saved_again_over_an_edit_is_whole_again(tmp_path: Path) -> None:
    opt = GaussianSearch(batch_size=3, study=tmp_path / "s")
    b = opt.ask()
    opt.tell(b.ids, [1.0, 2.0, 3.0])
    sql(tmp_path / "s", "DELETE FROM points WHERE id = 0")  # behind the writer's back
    opt.save(tmp_path / "s")  # the optimizer's own points are the truth: all rewritten
    opt.close()
    back = GaussianSearch.load(tmp_path / "s", attach=False)
    assert back.history["value"].tolist() == [1.0, 2.0, 3.0]


def meta_of(study: Path) -> dict:
    conn = sqlite3.connect(f"file:{study / DB_NAME}?mode=ro", uri=True)
    try:
        return {k: json.loads(v) for k, v in conn.execute("SELECT key, value FROM meta")}
    finally:
        conn.close()


@pytest.mark.parametrize("fixture", ["study_v0_1", "studies_before_layout/study_sqdf"])
def test_version_1_studies_load_and_migrate_at_their_first_writable_open(
    fixture: str, tmp_path: Path
) -> None:
    study = shutil.copytree(DATA / fixture, tmp_path / "old")
    want = Optimizer.load(study, attach=False).history
    assert meta_of(study)["version"] == 1
    Optimizer.load(study).close()
    meta = meta_of(study)
    assert meta["version"] == STUDY_VERSION == 3
    assert meta[INTEGRITY]["rows"] == len(want)
    back = Optimizer.load(study, attach=False).history
    assert back["value"].equals(want["value"]) and back["state"].equals(want["state"])
    sql(study, "DELETE FROM points WHERE id = 0")  # from now on, a deleted row is found
    with pytest.raises(StudyError, match="rows were deleted"):
        Optimizer.load(study, attach=False)


def test_a_version_1_study_with_an_unchecked_row_is_refused_not_blessed(tmp_path: Path) -> None:
    study = shutil.copytree(DATA / "studies_before_layout" / "study_sqdf", tmp_path / "old")
    sql(study, "UPDATE points SET value = 99, crc = NULL WHERE id = 0")
    before = tree_digest(study)
    for attach in (False, True):
        with pytest.raises(StudyError, match="point 0 has no checksum"):
            Optimizer.load(study, attach=attach)
    assert tree_digest(study) == before
    assert meta_of(study)["version"] == 1


def test_a_version_1_study_with_one_checksum_column_dropped_is_refused(tmp_path: Path) -> None:
    study = shutil.copytree(DATA / "studies_before_layout" / "study_sqdf", tmp_path / "old")
    sql(study, "ALTER TABLE points DROP COLUMN crc")
    with pytest.raises(StudyError, match="a checksum column was dropped"):
        Optimizer.load(study, attach=False)
