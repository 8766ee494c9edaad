"""Finding rows of ``study.sqlite`` that were deleted, added, replaced or left unchecked
outside sqdf-bbo, and the migration of version-1 studies that makes this possible.

Row checksums (:mod:`.schema`) catch a changed row but not a missing or an added one, nor
a row whose checksum was set to NULL. So a version-2 study keeps one more metadata row,
``integrity`` (:func:`~sqdf_bbo.study.schema.integrity_record`): the number of committed
points, the sum of their CRCs and the names of the other metadata rows. The store moves it
in the same transaction as every write, by what that write did (:func:`moved_record`),
never by recounting the table, which would bless an edit made meanwhile; every open checks
the table against it (:func:`check_schema`, :func:`check_rows`).

What it cannot see: an edit by someone who also recomputes the CRCs and the record (it is
a guard against accidents and naive edits, not a signature), and rows deleted from a
version-1 study before its first writable open (:func:`migrate_to_v2` makes the record
from the rows as they are then).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sqdf_bbo.study.errors import StudyError
from sqdf_bbo.study.schema import (
    INTEGRITY,
    ROW_COLUMNS,
    STUDY_VERSION,
    has_column,
    integrity_record,
    point_crc,
    row_crc,
    write_meta,
)

__all__ = [
    "RESTORE",
    "check_schema",
    "table_totals",
    "check_rows",
    "unchecked_row",
    "check_row_crc",
    "moved_record",
    "migrate_to_v2",
]

RESTORE = "outside sqdf-bbo (restore the study from a copy)"


def check_schema(
    path: Path, meta: Mapping[str, Any], point_columns: Sequence[str], meta_checked: bool
) -> None:
    """StudyError unless the study has the checksum columns and the integrity record of its
    version (2: all of them; 1: both CRC columns or, before checksums existed, neither) and
    exactly the metadata rows its integrity record names. ``meta_checked``: the metadata
    table has a ``crc`` column."""
    if meta["version"] >= 2:
        lacking = [c for c in ("crc", "transient") if c not in point_columns]
        lacking += [c for c in ("cond",) if meta["version"] >= 3 and c not in point_columns]
        lacking += [] if meta_checked else ["crc (of the metadata table)"]
        if lacking or INTEGRITY not in meta:
            what = f"columns {lacking}" if lacking else f"its {INTEGRITY!r} metadata"
            raise StudyError(
                f"{path}: a version-{meta['version']} study without {what}: altered {RESTORE}"
            )
    elif meta_checked != ("crc" in point_columns):
        raise StudyError(
            f"{path}: one table has row checksums and the other not: a checksum column was "
            f"dropped {RESTORE}"
        )
    if INTEGRITY in meta:
        named = set(meta[INTEGRITY]["meta_keys"])
        present = set(meta) - {INTEGRITY}
        gone, added = sorted(named - present), sorted(present - named)
        if gone or added:
            what = f"deleted {gone}" if gone else f"added {added}"
            raise StudyError(f"{path}: study metadata rows were {what} {RESTORE}")


def table_totals(conn: sqlite3.Connection) -> tuple[int, int, int | None]:
    """The points table's row count, CRC sum and first id without a CRC (``None``: none)."""
    rows, crc_sum, unchecked = conn.execute(
        "SELECT count(*), sum(crc), min(CASE WHEN crc IS NULL THEN id END) FROM points"
    ).fetchone()
    return int(rows), int(crc_sum or 0), unchecked


def check_rows(path: Path, meta: Mapping[str, Any], rows: int, crc_sum: int) -> None:
    """StudyError unless ``rows`` points with CRCs summing to ``crc_sum`` are what the
    integrity record says was committed (studies without one are not checked)."""
    record = meta.get(INTEGRITY)
    if record is None:
        return
    if rows != record["rows"]:
        how = "deleted" if rows < record["rows"] else "added"
        raise StudyError(
            f"{path}: the study holds {rows} points but {record['rows']} were committed: "
            f"rows were {how} {RESTORE}"
        )
    if crc_sum != record["crc_sum"]:
        raise StudyError(
            f"{path}: the points' checksums do not add up to the committed ones: rows were "
            f"replaced {RESTORE}"
        )


def unchecked_row(path: Path, pid: int) -> StudyError:
    """The error for point ``pid`` whose row has no CRC."""
    return StudyError(
        f"{path}: point {pid} has no checksum: the row was added or altered {RESTORE}"
    )


def check_row_crc(path: Path, pid: int, fields: Sequence[Any], transient: Any, crc: Any) -> None:
    """StudyError unless point ``pid``'s row (its ``ROW_COLUMNS`` ``fields`` and
    ``transient`` flag) carries its CRC."""
    if crc is None:
        raise unchecked_row(path, pid)
    if crc != point_crc(fields, transient):
        raise StudyError(
            f"{path}: point {pid} fails its checksum (the stored row was altered: corrupted "
            "database, or edited outside sqdf-bbo)"
        )


def moved_record(
    path: Path,
    conn: sqlite3.Connection,
    meta: Mapping[str, Any],
    rows: int,
    crc_change: int,
    replaced: bool = False,
) -> dict[str, Any]:
    """The integrity record after a write that adds ``rows`` points, changes the sum of the
    CRCs by ``crc_change`` and sets the metadata ``meta`` (``replaced``: the write rewrote
    every point and ``rows``, ``crc_change`` are the new totals). StudyError when the stored
    record is missing or fails its CRC (nothing is written then)."""
    found = conn.execute("SELECT value, crc FROM meta WHERE key = ?", (INTEGRITY,)).fetchone()
    if found is None or found[1] != row_crc((INTEGRITY, found[0])):
        raise StudyError(
            f"{path}: the {INTEGRITY!r} metadata is missing or fails its checksum; refusing "
            "to write"
        )
    old = json.loads(found[0])
    if not replaced:
        rows, crc_change = old["rows"] + rows, old["crc_sum"] + crc_change
    return integrity_record(rows, crc_change, set(old["meta_keys"]) | set(meta))


def migrate_to_v2(path: Path, conn: sqlite3.Connection, meta: Mapping[str, Any]) -> None:
    """Version 1 or 2 → the current version inside the caller's write transaction: add the
    ``reason``, ``cond``, ``transient`` and CRC columns a study lacks, verify every row's CRC (a study from
    before checksums gets them computed from what is there now), and write the version and
    the integrity record of the rows as they are."""
    pre_checksum = not has_column(conn, "points", "crc")
    if not has_column(conn, "points", "reason"):
        conn.execute("ALTER TABLE points ADD COLUMN reason TEXT")
    if not has_column(conn, "points", "cond"):  # old rows: unconditional
        conn.execute("ALTER TABLE points ADD COLUMN cond BLOB")
    if not has_column(conn, "points", "transient"):  # old rows: not transient
        conn.execute(
            "ALTER TABLE points ADD COLUMN transient INTEGER NOT NULL DEFAULT 0 "
            "CHECK (transient IN (0, 1))"
        )
    for table in ("points", "meta"):
        if not has_column(conn, table, "crc"):
            conn.execute(f"ALTER TABLE {table} ADD COLUMN crc INTEGER")
    crc_sum = 0
    rows = conn.execute(f"SELECT {', '.join(ROW_COLUMNS)}, transient, crc FROM points").fetchall()
    for row in rows:
        fields, flag, crc = row[:-2], row[-2], row[-1]
        if pre_checksum:
            crc = point_crc(fields, flag)
            conn.execute("UPDATE points SET crc = ? WHERE id = ?", (crc, row[0]))
        check_row_crc(path, row[0], fields, flag, crc)
        crc_sum += crc
    for k, v in conn.execute("SELECT key, value FROM meta WHERE crc IS NULL").fetchall():
        conn.execute("UPDATE meta SET crc = ? WHERE key = ?", (row_crc((k, v)), k))
    keys = [k for k in meta if k != INTEGRITY]
    record = integrity_record(len(rows), crc_sum, keys)
    write_meta(conn, {"version": STUDY_VERSION, INTEGRITY: record})
