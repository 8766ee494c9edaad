"""What ``study.sqlite`` holds: its tables, the row checksums and the metadata types.

Row checksums: SQLite has no page checksums and ``quick_check`` only checks structure, so a
flipped bit inside a stored value would load silently. Every row carries the CRC-32 of its
columns (:func:`row_crc`), written in the same transaction and verified on every read; rows
of studies written before checksums existed get theirs at the first writable open.

A point row's checksum (:func:`point_crc`) covers its ``ROW_COLUMNS`` and, only when it is
set, the ``transient`` flag, and, only when there is one, the condition (``cond``, version 3):
rows written before the flag or the condition existed (which read as not transient and
unconditional) keep the checksums they were written with, and changing either breaks the
checksum.

Version 3 added the ``cond`` column: the condition a design was asked or told under (a
conditional prior's class label, prompt or embedding; :func:`~sqdf_bbo.study.codec.condition_bytes`).
Older studies read as unconditional and get the column at their first writable open.

The metadata row ``integrity`` (:func:`integrity_record`) counts the committed points and
sums their CRCs, so that deleted, added and unchecked rows are found too
(:mod:`sqdf_bbo.study.integrity`); studies of version 1 (before it) are migrated at their
first writable open.
"""

from __future__ import annotations

import json
import re
import sqlite3
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from sqdf_bbo.study.errors import StudyError

__all__ = [
    "STUDY_FORMAT",
    "STUDY_VERSION",
    "READABLE_VERSIONS",
    "INTEGRITY",
    "integrity_record",
    "SCHEMA",
    "ROW_COLUMNS",
    "BASE_COLUMNS",
    "INSERT_POINT",
    "POINT_COLUMNS",
    "REQUIRED_META",
    "SNAPSHOT_NAME",
    "row_crc",
    "point_crc",
    "has_column",
    "write_meta",
    "as_real",
    "check_meta_types",
]

STUDY_FORMAT = "sqdf-bbo-study"
STUDY_VERSION = 3
#: Versions this code reads: 1 (no integrity record), 2 (no ``cond`` column), 3; the older
#: ones are migrated at their first writable open.
READABLE_VERSIONS = (1, 2, 3)
INTEGRITY = "integrity"
SNAPSHOT_NAME = re.compile(r"[0-9]+")

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL, crc INTEGER);
CREATE TABLE points (
    id       INTEGER PRIMARY KEY,
    round    INTEGER NOT NULL,
    source   TEXT NOT NULL CHECK (source IN ('asked', 'external')),
    state    TEXT NOT NULL CHECK (state IN ('pending', 'complete', 'failed')),
    value    REAL,
    raw      TEXT,
    asked_at REAL NOT NULL,
    told_at  REAL,
    x        BLOB NOT NULL,
    traj     BLOB,
    reason   TEXT,
    cond     BLOB,
    transient INTEGER NOT NULL DEFAULT 0 CHECK (transient IN (0, 1)),
    crc      INTEGER
);
"""
ROW_COLUMNS = (
    "id", "round", "source", "state", "value", "raw", "asked_at", "told_at", "x", "traj", "reason",
    "cond",
)  # fmt: skip
#: The columns a version-1 or -2 study's rows were checksummed with (no ``cond``).
BASE_COLUMNS = ROW_COLUMNS[:-1]
INSERT_POINT = (
    f"INSERT INTO points ({', '.join(ROW_COLUMNS)}, transient, crc) "
    f"VALUES ({', '.join('?' * (len(ROW_COLUMNS) + 2))})"
)
POINT_COLUMNS = ("id", "round", "source", "state", "value", "raw", "asked_at", "told_at")
REQUIRED_META = (
    "format", "version", "method", "shape", "dtype", "study_uid", "round", "snapshot"
)  # fmt: skip


def _encode_field(value: Any) -> bytes:
    """One column's canonical bytes for the row checksum (type-tagged, length-prefixed)."""
    if value is None:
        return b"N"
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        return b"B" + str(len(raw)).encode() + b":" + raw
    if isinstance(value, float):
        return b"F" + repr(value).encode()
    if isinstance(value, int):
        return b"I" + str(value).encode()
    text = str(value).encode("utf-8")
    return b"S" + str(len(text)).encode() + b":" + text


def row_crc(fields: Sequence[Any]) -> int:
    """CRC-32 of a row's columns (in ``ROW_COLUMNS`` order, or ``(key, value)`` for meta)."""
    return zlib.crc32(b"|".join(_encode_field(v) for v in fields))


def point_crc(fields: Sequence[Any], transient: Any) -> int:
    """CRC-32 of a points row: its ``ROW_COLUMNS`` ``fields`` (or the ``BASE_COLUMNS`` of a
    row without a condition), plus the ``transient`` flag only when it is set and the
    condition only when there is one (see the module docstring)."""
    base, cond = tuple(fields[: len(BASE_COLUMNS)]), None
    if len(fields) > len(BASE_COLUMNS):
        cond = fields[len(BASE_COLUMNS)]
    extra = (1,) if transient else ()
    if cond is not None:
        extra = (*extra, b"cond", cond)
    return row_crc((*base, *extra))


def has_column(conn: sqlite3.Connection, table: str, column: str) -> bool:
    """Whether ``table`` has ``column``."""
    return any(r[1] == column for r in conn.execute(f"PRAGMA table_info({table})"))


def write_meta(conn: sqlite3.Connection, meta: Mapping[str, Any]) -> None:
    """Upsert metadata rows (values as JSON), each with its CRC."""
    encoded = [(k, json.dumps(v)) for k, v in meta.items()]
    conn.executemany(
        "INSERT INTO meta (key, value, crc) VALUES (?, ?, ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value, crc = excluded.crc",
        [(k, v, row_crc((k, v))) for k, v in encoded],
    )


def integrity_record(rows: int, crc_sum: int, meta_keys: Iterable[str]) -> dict[str, Any]:
    """The ``integrity`` metadata value: committed points, the sum of their checksums and the
    names of the other metadata rows (sorted)."""
    return {"rows": int(rows), "crc_sum": int(crc_sum), "meta_keys": sorted(set(meta_keys))}


def _is_integrity(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and set(value) == {"rows", "crc_sum", "meta_keys"}
        and _is_count(value["rows"])
        and _is_count(value["crc_sum"])
        and isinstance(value["meta_keys"], list)
        and all(isinstance(k, str) for k in value["meta_keys"])
    )


def as_real(value: Any) -> Any:
    """REAL columns come back as float; normalize ints so the checksum is type-stable."""
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _is_count(value: Any, low: int = 0) -> bool:
    """An ``int`` (not a ``bool``) of at least ``low``."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _is_spec(value: Any) -> bool:
    """``None`` or a dict whose prior references each name one folder inside ``objects/``."""
    if value is None:
        return True
    if not isinstance(value, dict):
        return False
    for item in value.values():
        if isinstance(item, dict) and set(item) == {"__prior__"}:
            ref = item["__prior__"]
            if not isinstance(ref, str) or ref in ("", ".", "..") or any(c in ref for c in "/\\\0"):
                return False
    return True


_META_TYPES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "version": (_is_count, "an integer"),
    "method": (lambda v: isinstance(v, str), "a string"),
    "shape": (
        lambda v: isinstance(v, list) and all(_is_count(d) for d in v),
        "a list of non-negative integers",
    ),
    "dtype": (
        lambda v: isinstance(v, str) and isinstance(getattr(torch, v, None), torch.dtype),
        "the name of a torch dtype",
    ),
    "study_uid": (lambda v: isinstance(v, str), "a string"),
    "round": (_is_count, "a non-negative integer"),
    "fitted_count": (_is_count, "a non-negative integer"),
    "batch_size": (lambda v: _is_count(v, 1), "a positive integer"),
    "seed": (lambda v: _is_count(v, -(2**63)), "an integer"),
    "snapshot": (
        lambda v: v is None or (isinstance(v, str) and SNAPSHOT_NAME.fullmatch(v) is not None),
        "null or a snapshot folder name (digits)",
    ),
    "spec": (_is_spec, "null or an object whose prior references are plain folder names"),
    INTEGRITY: (_is_integrity, "an object with rows, crc_sum and meta_keys"),
    "config_changes": (
        lambda v: isinstance(v, list) and all(isinstance(e, dict) for e in v),
        "a list of objects",
    ),
}


def check_meta_types(path: Path, meta: Mapping[str, Any]) -> None:
    """StudyError naming the first known metadata field (if present) of the wrong type."""
    for key, (ok, what) in _META_TYPES.items():
        if key in meta and not ok(meta[key]):
            shown = repr(meta[key])
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            raise StudyError(f"{path}: study metadata {key!r} is {shown}, expected {what}")
