"""Tampering: edits of ``study.sqlite`` with the ``sqlite3`` shell that leave every remaining
row's checksum valid (issue 16, item 1): deleted, added, replaced and unchecked rows, dropped
checksum columns, deleted metadata rows. Judged like corruption (:mod:`.corruption`): each
load must give every point back intact or raise StudyError, and change nothing on disk."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from benchmarks.reliability.common import Probe, Sizes
from benchmarks.reliability.corruption import Case, base_study, corruption_probe
from sqdf_bbo.study.schema import INTEGRITY, ROW_COLUMNS, point_crc, row_crc
from sqdf_bbo.study.store import DB_NAME


def run_sql(study: Path, *statements: str) -> None:
    """Run ``statements`` on ``study.sqlite`` as the ``sqlite3`` shell would (autocommit)."""
    conn = sqlite3.connect(study / DB_NAME, isolation_level=None)
    try:
        for statement in statements:
            conn.execute(statement)
    finally:
        conn.close()


def insert_copy(study: Path, new_id: int, with_crc: bool) -> None:
    """Insert a copy of the last point under ``new_id``, with the row's valid CRC (a forger
    who knows the CRC function) or with none."""
    conn = sqlite3.connect(study / DB_NAME, isolation_level=None)
    try:
        cols = ", ".join(ROW_COLUMNS)
        row = conn.execute(
            f"SELECT {cols}, transient FROM points ORDER BY id DESC LIMIT 1"
        ).fetchone()
        fields, flag = (new_id, *row[1:-1]), row[-1]
        crc = point_crc(fields, flag) if with_crc else None
        conn.execute(
            f"INSERT INTO points ({cols}, transient, crc) VALUES ({', '.join('?' * (len(ROW_COLUMNS) + 2))})",
            (*fields, flag, crc),
        )
    finally:
        conn.close()


def last_id(study: Path) -> int:
    conn = sqlite3.connect(study / DB_NAME)
    try:
        return int(conn.execute("SELECT max(id) FROM points").fetchone()[0])
    finally:
        conn.close()


def tampering_cases() -> list[Case]:
    """The edits of issue 16 (item 1) and their neighbours."""
    return [
        Case("delete a told point", lambda s, o: run_sql(s, "DELETE FROM points WHERE id = 1")),
        Case("delete the last rows (their ids would be reused)",
             lambda s, o: run_sql(s, f"DELETE FROM points WHERE id >= {last_id(s) - 1}")),
        Case("set a value and its CRC to NULL",
             lambda s, o: run_sql(s, "UPDATE points SET value = 99, crc = NULL WHERE id = 3")),
        Case("drop the points' crc column",
             lambda s, o: run_sql(s, "ALTER TABLE points DROP COLUMN crc")),
        Case("drop both crc columns (pose as a pre-checksum study)",
             lambda s, o: run_sql(s, "ALTER TABLE points DROP COLUMN crc",
                                  "ALTER TABLE meta DROP COLUMN crc")),
        Case("insert a row without a CRC",
             lambda s, o: insert_copy(s, last_id(s) + 1, with_crc=False)),
        Case("insert a row with a valid CRC",
             lambda s, o: insert_copy(s, last_id(s) + 1, with_crc=True)),
        Case("replace a row by another with a valid CRC",
             lambda s, o: (run_sql(s, f"DELETE FROM points WHERE id = {last_id(s)}"),
                           insert_copy(s, last_id(s) + 1, with_crc=True))),
        Case("delete the snapshot metadata row",
             lambda s, o: run_sql(s, "DELETE FROM meta WHERE key = 'snapshot'")),
        Case("delete the fitted_count metadata row",
             lambda s, o: run_sql(s, "DELETE FROM meta WHERE key = 'fitted_count'")),
        Case("delete the integrity metadata row",
             lambda s, o: run_sql(s, f"DELETE FROM meta WHERE key = '{INTEGRITY}'")),
        Case("set a metadata value and its CRC to NULL",
             lambda s, o: run_sql(s, "UPDATE meta SET value = '0', crc = NULL WHERE key = 'round'")),
        Case("insert a metadata row with a valid CRC",
             lambda s, o: run_sql(s, "INSERT INTO meta (key, value, crc) VALUES "
                                     f"('note', '1', {row_crc(('note', '1'))})")),
    ]  # fmt: skip


TAMPERINGS = tuple(c.name for c in tampering_cases())


def tampering_probes(
    work: Path, sizes: Sizes, seed: int, log: Callable[[str], None]
) -> list[Probe]:
    """Every tampering case (or those named in ``sizes.tamperings``)."""
    base, want = base_study(work)
    cases = [c for c in tampering_cases() if sizes.tamperings is None or c.name in sizes.tamperings]
    probes = [
        corruption_probe(case, base, want, work / f"case-{k:02d}", category="tampering")
        for k, case in enumerate(cases)
    ]
    log(f"  {len(probes)} tampering probes")
    return probes
