"""Durable study folders: every ask and tell is committed to SQLite before it returns.

A study folder holds::

    DIR/study.sqlite              observations, ids, designs, trajectories, study metadata (WAL mode)
    DIR/objects/<name>/           constructor objects written once (e.g. the pretrained prior)
    DIR/snapshots/<seq>/          optimizer state after an ask: state.json + tensors.safetensors
                                  + checksums.json (their sha256)
    DIR/.lock                     advisory lock held by the one process writing the study

Durability rules (what a ``SIGKILL`` at any instant can and cannot lose):

1. ``tell`` / ``tell_external`` commit one SQLite transaction (``journal_mode=WAL``,
   ``synchronous=FULL``) before returning: a told value is on disk once the call returns.
2. ``ask`` first writes a new snapshot folder (fsynced), then commits the asked points
   *and* the pointer to that snapshot in one transaction. A kill before the commit leaves an
   unreferenced snapshot folder (ignored, removed at the next write) and no asked points;
   a kill after it leaves a consistent study. The model state and the observations can
   therefore never disagree.
3. Nothing is unpickled: weights and tensors are safetensors, the rest is JSON and SQLite.
4. Opening validates read-only first (``mode=ro``); a corrupted or foreign folder raises
   :class:`StudyError` and nothing on disk is changed.
5. Links are never followed out of the study: a study whose database, ``objects/`` or
   ``snapshots/`` (or anything in them) is a symbolic link, or resolves outside the folder,
   is refused on open, and pruning unlinks a link instead of deleting through it.
6. Checksums: each snapshot folder holds ``checksums.json`` (the sha256 of ``state.json`` and
   ``tensors.safetensors``, format of :func:`sqdf_bbo.checksums.write_checksums`), written
   and fsynced before the snapshot is referenced, verified when it is read. A separate file
   (not a field of ``state.json``) covers both files and leaves older snapshots, which lack
   it, loadable unverified. Saved priors in ``objects/`` carry their own manifest, verified
   by :meth:`sqdf_bbo.diffusion.prior.DiffusionPrior.load`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import sqlite3
import time
import uuid
import weakref
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from sqdf_bbo.checksums import CHECKSUMS, ChecksumError, verify_checksums, write_checksums

__all__ = [
    "StudyStore",
    "StudyError",
    "SnapshotMissing",
    "lock_study",
    "PointRow",
    "STUDY_FORMAT",
    "STUDY_VERSION",
    "DB_NAME",
    "split_state",
    "join_state",
    "is_study",
]

STUDY_FORMAT = "sqdf-bbo-study"
STUDY_VERSION = 1
DB_NAME = "study.sqlite"
_SQLITE_MAGIC = b"SQLite format 3\x00"
_SNAPSHOTS = "snapshots"
_OBJECTS = "objects"
_STATE_JSON = "state.json"
_TENSORS = "tensors.safetensors"
_LOCK = ".lock"
_CREATING = ".creating-"
_CREATING_GRACE_S = 60.0  # a lock-less creation folder younger than this is never touched
_CREATING_STALE_S = 3600.0  # ... and one older than this is stale even if its PID is alive
_SNAPSHOT_NAME = re.compile(r"[0-9]+")

_SCHEMA = """
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
    crc      INTEGER
);
"""
# Row checksums: SQLite has no page checksums and ``quick_check`` only checks structure, so a
# flipped bit inside a stored value would load silently. Every row carries the CRC-32 of its
# columns (``_row_crc``), written in the same transaction and verified on every read; rows of
# studies written before checksums existed get theirs at the first writable open.
_ROW_COLUMNS = (
    "id", "round", "source", "state", "value", "raw", "asked_at", "told_at", "x", "traj", "reason"
)  # fmt: skip
_INSERT_POINT = (
    f"INSERT INTO points ({', '.join(_ROW_COLUMNS)}, crc) "
    f"VALUES ({', '.join('?' * (len(_ROW_COLUMNS) + 1))})"
)
_POINT_COLUMNS = ("id", "round", "source", "state", "value", "raw", "asked_at", "told_at")
_REQUIRED_META = ("format", "version", "method", "shape", "dtype", "study_uid", "round")


class StudyError(RuntimeError):
    """A study folder is missing, corrupted, foreign, or cannot be written."""


class SnapshotMissing(StudyError):
    """The referenced snapshot folder is gone (e.g. a writer replaced it while this process
    was reading: :meth:`~sqdf_bbo.optimizers.base.Optimizer.load` retries then)."""

    def __init__(self, message: str, name: str) -> None:
        super().__init__(message)
        self.name = name


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


def _row_crc(fields: Sequence[Any]) -> int:
    """CRC-32 of a row's columns (in ``_ROW_COLUMNS`` order, or ``(key, value)`` for meta)."""
    return zlib.crc32(b"|".join(_encode_field(v) for v in fields))


def _as_real(value: Any) -> Any:
    """REAL columns come back as float; normalize ints so the checksum is type-stable."""
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


@dataclass
class PointRow:
    """One stored point as raw columns (designs still as bytes).

    ``value`` is the told float for complete *and* failed points (NaN/±inf for failed ones,
    NaN while pending; a complete point later marked failed keeps its told value).
    ``reason`` says why a point failed (``None`` when nobody said). ``x`` / ``traj`` are the raw bytes of the design ``(*shape)`` and the
    trajectory ``(K+1, *shape)`` (``None`` when the point has none).
    """

    id: int
    round: int
    source: str
    state: str
    value: float
    asked_at: float
    told_at: float | None
    x: bytes
    traj: bytes | None = None
    reason: str | None = None


# ---------------------------------------------------------------------------- state splitting
def split_state(obj: Any, prefix: str = "") -> tuple[Any, dict[str, torch.Tensor]]:
    """Split a nested state (dicts/lists of tensors, arrays and JSON values) into JSON + tensors.

    Tensors and numpy arrays are replaced by ``{"__tensor__": key}`` / ``{"__ndarray__": key}``
    placeholders; the tensors dict maps each key to a contiguous CPU tensor (safetensors-able).
    Anything else that is not JSON-able raises ``TypeError`` naming the offending key.
    """
    tensors: dict[str, torch.Tensor] = {}

    def walk(v: Any, key: str) -> Any:
        if isinstance(v, torch.Tensor):
            tensors[key] = v.detach().to("cpu").contiguous().clone()
            return {"__tensor__": key}
        if isinstance(v, np.ndarray):
            tensors[key] = torch.from_numpy(np.ascontiguousarray(v).copy())
            return {"__ndarray__": key}
        if isinstance(v, np.generic):
            return v.item()
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        if isinstance(v, Mapping):
            out = {}
            for k, item in v.items():
                if not isinstance(k, str):
                    raise TypeError(f"state key {k!r} under {key or '<root>'!r} is not a string")
                out[k] = walk(item, f"{key}/{k}" if key else k)
            return out
        if isinstance(v, (list, tuple)):
            return [walk(item, f"{key}/{i}" if key else str(i)) for i, item in enumerate(v)]
        raise TypeError(
            f"state entry {key or '<root>'!r} has type {type(v).__name__}, which cannot be saved "
            "without pickle; use tensors, numpy arrays, or JSON values"
        )

    return walk(obj, prefix), tensors


def join_state(obj: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    """Inverse of :func:`split_state` (tuples come back as lists)."""
    if isinstance(obj, dict):
        if set(obj) == {"__tensor__"}:
            return tensors[obj["__tensor__"]]
        if set(obj) == {"__ndarray__"}:
            return tensors[obj["__ndarray__"]].numpy()
        return {k: join_state(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [join_state(v, tensors) for v in obj]
    return obj


# ---------------------------------------------------------------------------- file helpers
def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # some filesystems cannot fsync directories
        _fsync_file(path)


def _acquire_lock(lock: Path) -> int | None:
    """Exclusive advisory lock of a study for one writer (released on close or process death)."""
    try:
        import fcntl
    except ImportError:  # no flock on this platform: SQLite's own locking still applies
        return None
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StudyError(
            f"the study at {lock.parent} is open for writing elsewhere (another process, or an "
            "optimizer in this one that was not closed); close it first or load with attach=False"
        ) from None
    return fd


def lock_study(path: str | Path) -> int | None:
    """Take the writer lock of the study at ``path`` (``StudyError`` naming the holder's
    situation when another writer has it); release it with ``os.close`` or by passing it to
    :meth:`StudyStore.open` (``lock_fd=``), which keeps it until the store closes."""
    path = Path(path).expanduser().absolute()
    if not path.is_dir():
        raise StudyError(f"no study at {path}: the folder does not exist")
    lock = path / _LOCK
    if lock.is_symlink():
        raise StudyError(f"{path}: {_LOCK} is a symbolic link; refusing to use it")
    return _acquire_lock(lock)


def is_study(path: str | Path) -> bool:
    """Whether ``path`` looks like a study folder (has a SQLite ``study.sqlite``)."""
    db = Path(path) / DB_NAME
    if not db.is_file():
        return False
    with open(db, "rb") as fh:
        return fh.read(16) == _SQLITE_MAGIC


# ---------------------------------------------------------------------------- links
def _refuse_link(path: Path, root: Path, study: Path) -> None:
    """StudyError if ``path`` is a symbolic link or resolves outside ``root`` (the resolved study)."""
    rel = path.relative_to(study).as_posix()
    if path.is_symlink():
        raise StudyError(
            f"{study}: {rel} is a symbolic link; a study folder must not contain links (they "
            "could lead outside it, and pruning would delete there): replace it with the real "
            "file or folder"
        )
    if path.exists() and not path.resolve().is_relative_to(root):
        raise StudyError(f"{study}: {rel} resolves outside the study folder")


def _refuse_links(study: Path) -> None:
    """Refuse (StudyError) a study whose internal paths are links or resolve outside it.

    Checked: the database and its ``-wal``/``-shm`` files, the lock file, ``snapshots/``, each
    snapshot entry and the files in it, ``objects/`` and everything under it. The study path
    itself may be a link (it is the caller's choice of path).
    """
    root = study.resolve()
    db = study / DB_NAME
    for p in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm"), study / _LOCK):
        _refuse_link(p, root, study)
    snaps, objects = study / _SNAPSHOTS, study / _OBJECTS
    _refuse_link(snaps, root, study)
    if snaps.is_dir():
        for entry in snaps.iterdir():
            _refuse_link(entry, root, study)
            for f in entry.iterdir() if entry.is_dir() else ():
                _refuse_link(f, root, study)
    _refuse_link(objects, root, study)
    if objects.is_dir():
        for dirpath, dirnames, filenames in os.walk(objects):  # does not descend into links
            for name in (*dirnames, *filenames):
                _refuse_link(Path(dirpath) / name, root, study)


def _remove_entry(path: Path) -> None:
    """Delete a snapshot entry without following links: a link or file is unlinked itself."""
    if path.is_symlink() or not path.is_dir():
        with contextlib.suppress(OSError):
            path.unlink()
    else:
        shutil.rmtree(path, ignore_errors=True)  # never follows links inside the folder


# ---------------------------------------------------------------------------- stale creations
def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists here (another user's process, or unknown, counts as alive)."""
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process on Windows
        return True
    if pid <= 0 or pid >= 2**31:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _claim_stale_creation(folder: Path, pid: int) -> tuple[bool, int | None]:
    """Whether the creation folder ``folder`` was abandoned, and the lock fd taken to know it.

    A creation folder younger than ``_CREATING_GRACE_S`` is never stale. One holding the
    creator's lock file is stale iff nobody holds that lock (the creator died; the lock is
    kept, returned, until the folder is gone). One without (older versions, or a creator
    killed before locking) is stale iff its PID is gone or it is older than
    ``_CREATING_STALE_S``.
    """
    age = time.time() - folder.lstat().st_mtime
    if age < _CREATING_GRACE_S:
        return False, None
    lock = folder / _LOCK
    if lock.is_file() and not lock.is_symlink():
        try:
            fd = _acquire_lock(lock)
        except StudyError:  # held: its creator is alive
            return False, None
        if fd is not None:
            return True, fd
    return age > _CREATING_STALE_S or not _pid_alive(pid), None


def _remove_stale_creations(parent: Path, name: str) -> None:
    """Remove ``.NAME.creating-PID-XXXXXXXX`` folders of ``name`` left by killed creators."""
    pattern = re.compile(rf"\.{re.escape(name)}{re.escape(_CREATING)}([0-9]+)-[0-9a-f]{{8}}")
    with contextlib.suppress(OSError):
        for entry in parent.iterdir():
            match = pattern.fullmatch(entry.name)
            if match is None or entry.is_symlink() or not entry.is_dir():
                continue
            with contextlib.suppress(OSError):
                stale, fd = _claim_stale_creation(entry, int(match.group(1)))
                if stale:
                    shutil.rmtree(entry, ignore_errors=True)
                if fd is not None:
                    os.close(fd)


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
        lambda v: v is None or (isinstance(v, str) and _SNAPSHOT_NAME.fullmatch(v) is not None),
        "null or a snapshot folder name (digits)",
    ),
    "spec": (_is_spec, "null or an object whose prior references are plain folder names"),
}


def _check_meta_types(path: Path, meta: Mapping[str, Any]) -> None:
    """StudyError naming the first known metadata field (if present) of the wrong type."""
    for key, (ok, what) in _META_TYPES.items():
        if key in meta and not ok(meta[key]):
            shown = repr(meta[key])
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            raise StudyError(f"{path}: study metadata {key!r} is {shown}, expected {what}")


class StudyStore:
    """One open study folder. Create with :meth:`create`, open with :meth:`open`.

    All writes are single SQLite transactions committed (and fsynced, ``synchronous=FULL``)
    before the method returns.
    """

    def __init__(
        self, path: Path, conn: sqlite3.Connection, read_only: bool, lock_fd: int | None = None
    ) -> None:
        """Wrap an open connection; a writable store takes the study lock (or ``lock_fd``,
        a lock of ``path/.lock`` already held, e.g. since creation)."""
        self.path = path
        self._conn: sqlite3.Connection | None = conn
        self.read_only = read_only
        self._lock_fd: int | None = None
        self._lock_release: weakref.finalize | None = None
        if not read_only:
            try:
                self._lock_fd = lock_fd if lock_fd is not None else _acquire_lock(path / _LOCK)
            except BaseException:
                conn.close()
                self._conn = None
                raise
            if self._lock_fd is not None:
                # an optimizer dropped without close() must not keep the study locked until
                # the process exits (e.g. loading the same study twice in a notebook)
                self._lock_release = weakref.finalize(self, os.close, self._lock_fd)

    # ------------------------------------------------------------------ open / create
    @staticmethod
    def _connect(db: Path, read_only: bool) -> sqlite3.Connection:
        if read_only:
            # Without a -wal file (clean close) the database file alone is complete: open it
            # immutable so that not even -wal/-shm side files appear. With a -wal file (e.g.
            # after a kill) read it too, read-only.
            wal = db.with_name(db.name + "-wal")
            flags = "mode=ro" if wal.exists() else "mode=ro&immutable=1"
            conn = sqlite3.connect(
                f"{db.absolute().as_uri()}?{flags}", uri=True, isolation_level=None
            )
        else:
            conn = sqlite3.connect(str(db), isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    @classmethod
    def create(
        cls,
        path: str | Path,
        meta: Mapping[str, Any],
        write_objects: Any = None,
    ) -> StudyStore:
        """Create a new study at ``path`` (which must not exist or be an empty folder).

        The folder is assembled under a temporary name and renamed into place, so a crash
        during creation never leaves a half-made study at ``path``. ``write_objects(dir)``
        may write constructor objects (e.g. the prior) into ``dir/objects``.

        The temporary folder ``.NAME.creating-PID-XXXXXXXX`` holds the study lock from the
        start (kept through the rename); such folders left by killed creators of the same
        ``NAME`` are removed first (see :func:`_claim_stale_creation`).
        """
        path = Path(path).expanduser().absolute()
        if path.exists():
            if not path.is_dir():
                raise StudyError(f"cannot create a study at {path}: it is a file")
            if any(path.iterdir()):
                if is_study(path):
                    raise StudyError(
                        f"{path} already holds a study; resume it with .load({str(path)!r}) "
                        "or choose an empty folder"
                    )
                raise StudyError(f"cannot create a study at {path}: the folder is not empty")
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_creations(path.parent, path.name)
        tmp = path.parent / f".{path.name}{_CREATING}{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        lock_fd: int | None = None
        try:
            lock_fd = _acquire_lock(tmp / _LOCK)  # marks this creation as alive
            conn = cls._connect(tmp / DB_NAME, read_only=False)
            try:
                conn.executescript(_SCHEMA)
                full = {
                    "format": STUDY_FORMAT,
                    "version": STUDY_VERSION,
                    "study_uid": uuid.uuid4().hex,
                    "created_at": time.time(),
                    "round": 0,
                    "fitted_count": 0,
                    "snapshot": None,
                    **dict(meta),
                }
                conn.execute("BEGIN IMMEDIATE")
                cls._update_meta(conn, full)
                conn.execute("COMMIT")
            finally:
                conn.close()
            if write_objects is not None:
                (tmp / _OBJECTS).mkdir()
                write_objects(tmp / _OBJECTS)
            (tmp / _SNAPSHOTS).mkdir()
            _fsync_dir(tmp)
            os.replace(tmp, path)  # replaces an empty folder atomically on POSIX
            _fsync_dir(path.parent)
            conn = cls._connect(path / DB_NAME, read_only=False)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            if lock_fd is not None:
                os.close(lock_fd)
            raise
        return cls(path, conn, read_only=False, lock_fd=lock_fd)

    @classmethod
    def open(
        cls, path: str | Path, *, read_only: bool = False, lock_fd: int | None = None
    ) -> StudyStore:
        """Open an existing study; validate it read-only before any write access.

        ``lock_fd``: the study's writer lock, already taken with :func:`lock_study` (a
        writable store then keeps it; without it the store takes the lock itself)."""
        path = Path(path).expanduser().absolute()
        if not path.exists():
            raise StudyError(f"no study at {path}: the folder does not exist")
        if not path.is_dir():
            raise StudyError(f"no study at {path}: it is not a folder")
        try:
            _refuse_links(path)
        except OSError as err:
            raise StudyError(f"cannot inspect the study folder {path}: {err}") from None
        db = path / DB_NAME
        if not db.is_file():
            raise StudyError(f"{path} is not a sqdf-bbo study: {DB_NAME} is missing")
        with open(db, "rb") as fh:
            if fh.read(16) != _SQLITE_MAGIC:
                raise StudyError(f"{db} is not a SQLite database (corrupted or foreign file)")
        try:
            conn = cls._connect(db, read_only=True)
        except sqlite3.Error as err:
            raise StudyError(f"cannot open {db}: {err}") from None
        store = cls(path, conn, read_only=True)
        try:
            store._validate()
        except BaseException:
            store.close()
            raise
        if read_only:
            return store
        store.close()
        writable = cls(path, cls._connect(db, read_only=False), read_only=False, lock_fd=lock_fd)
        try:
            writable._migrate()
        except BaseException:
            if lock_fd is not None:  # the caller's lock stays the caller's to release
                writable._disown_lock()
            writable.close()
            raise
        return writable

    def _validate(self) -> None:
        """Check the schema, the metadata and the referenced snapshot (read-only)."""
        try:
            tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master")}
            if not {"meta", "points"} <= tables:
                raise StudyError(
                    f"{self.path / DB_NAME} is a SQLite file but not a sqdf-bbo study "
                    f"(tables found: {sorted(tables) or 'none'})"
                )
            cols = [r[1] for r in self.conn.execute("PRAGMA table_info(points)")]
            missing = [c for c in (*_POINT_COLUMNS, "x", "traj") if c not in cols]
            if missing:
                raise StudyError(f"{self.path}: the points table lacks columns {missing}")
            meta = self.read_meta()
            check = self.conn.execute("PRAGMA quick_check").fetchone()
        except sqlite3.Error as err:
            raise StudyError(f"{self.path / DB_NAME} is corrupted: {err}") from None
        if check is None or check[0] != "ok":
            raise StudyError(f"{self.path / DB_NAME} failed its integrity check: {check}")
        if meta.get("format") != STUDY_FORMAT:
            raise StudyError(f"{self.path} is not a sqdf-bbo study (format {meta.get('format')!r})")
        if meta.get("version") != STUDY_VERSION:
            raise StudyError(
                f"{self.path} has study format version {meta.get('version')!r}; "
                f"this sqdf-bbo reads version {STUDY_VERSION}"
            )
        absent = [k for k in _REQUIRED_META if k not in meta]
        if absent:
            raise StudyError(f"{self.path} is missing study metadata {absent}")
        _check_meta_types(self.path, meta)
        snap = meta.get("snapshot")
        if snap is not None:
            folder = self.path / _SNAPSHOTS / str(snap)
            for name in (_STATE_JSON, _TENSORS):
                if not (folder / name).is_file():
                    raise SnapshotMissing(
                        f"{self.path}: snapshot {snap} is missing {name}", str(snap)
                    )

    # ------------------------------------------------------------------ basics
    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StudyError(f"the study store at {self.path} is closed")
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._lock_fd is not None:
            fd = self._disown_lock()
            os.close(fd)  # releases the flock

    def _disown_lock(self) -> int:
        """Stop owning the writer lock (no release on close or garbage collection)."""
        fd = self._lock_fd
        assert fd is not None
        if self._lock_release is not None:
            self._lock_release.detach()
            self._lock_release = None
        self._lock_fd = None
        return fd

    def _require_writable(self) -> None:
        if self.read_only:
            raise StudyError(f"the study at {self.path} was opened read-only")

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._require_writable()
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):  # a failed COMMIT may have ended it
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as err:  # e.g. a full disk; nothing was committed
            raise StudyError(f"cannot write to the study at {self.path}: {err}") from err

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """One consistent view of the database: the reads inside see a single committed
        state, whatever a writer commits meanwhile (a WAL read transaction)."""
        conn = self.conn
        conn.execute("BEGIN")
        try:
            yield
        finally:
            conn.execute("COMMIT")

    @property
    def objects_dir(self) -> Path:
        return self.path / _OBJECTS

    # ------------------------------------------------------------------ reads
    def _has_column(self, table: str, column: str) -> bool:
        return any(r[1] == column for r in self.conn.execute(f"PRAGMA table_info({table})"))

    def read_meta(self) -> dict[str, Any]:
        crc = "crc" if self._has_column("meta", "crc") else "NULL"
        rows = self.conn.execute(f"SELECT key, value, {crc} FROM meta").fetchall()
        bad = [k for k, v, c in rows if c is not None and c != _row_crc((k, v))]
        if bad:
            raise StudyError(
                f"{self.path}: study metadata {sorted(bad)} fail their checksum (corrupted)"
            )
        try:
            return {k: json.loads(v) for k, v, _ in rows}
        except (TypeError, ValueError) as err:
            raise StudyError(f"{self.path}: unreadable study metadata ({err})") from None

    def read_points(self) -> list[PointRow]:
        """All points ordered by id."""
        reason = "reason" if self._has_column("points", "reason") else "NULL"
        crc = "crc" if self._has_column("points", "crc") else "NULL"
        rows = self.conn.execute(
            "SELECT id, round, source, state, value, raw, asked_at, told_at, x, traj, "
            f"{reason}, {crc} FROM points ORDER BY id"
        ).fetchall()
        out = []
        for row in rows:
            if row[-1] is not None and row[-1] != _row_crc(row[:-1]):
                raise StudyError(
                    f"{self.path}: point {row[0]} fails its checksum (the stored row was "
                    "altered: corrupted database)"
                )
            pid, rnd, source, state, value, raw, asked_at, told_at, x, traj, why = row[:-1]
            if state == "complete":
                v = float(value)
            elif state == "failed":
                v = float(raw) if raw is not None else math.nan
            else:
                v = math.nan
            out.append(PointRow(pid, rnd, source, state, v, asked_at, told_at, x, traj, why))
        return out

    def _migrate(self) -> None:
        """Bring an older study's schema up to date (adds columns and the row checksums of
        rows that have none; never drops data)."""
        with self._transaction() as conn:
            if not self._has_column("points", "reason"):
                conn.execute("ALTER TABLE points ADD COLUMN reason TEXT")
            for table in ("points", "meta"):
                if not self._has_column(table, "crc"):
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN crc INTEGER")
            cols = ", ".join(_ROW_COLUMNS)
            for row in conn.execute(f"SELECT {cols} FROM points WHERE crc IS NULL").fetchall():
                conn.execute("UPDATE points SET crc = ? WHERE id = ?", (_row_crc(row), row[0]))
            for k, v in conn.execute("SELECT key, value FROM meta WHERE crc IS NULL").fetchall():
                conn.execute("UPDATE meta SET crc = ? WHERE key = ?", (_row_crc((k, v)), k))

    def read_snapshot(self, name: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """A snapshot's JSON state and tensors, checked against its ``checksums.json`` (when
        it has one: snapshots written before checksums existed are read unverified)."""
        folder = self.path / _SNAPSHOTS / str(name)
        try:
            verify_checksums(folder)
            state = json.loads((folder / _STATE_JSON).read_text())
            tensors = load_file(str(folder / _TENSORS))
        except (ChecksumError, FileNotFoundError) as err:
            # a file that vanished while it was read: a writer pruned this snapshot (the
            # caller retries); anything else listed-but-wrong is corruption
            gone = not all((folder / f).is_file() for f in (_STATE_JSON, _TENSORS))
            if gone or isinstance(err, FileNotFoundError):
                raise SnapshotMissing(
                    f"{self.path}: snapshot {name} is unreadable ({err})", str(name)
                ) from None
            raise StudyError(f"{self.path}: snapshot {name} is corrupted ({err})") from None
        except (OSError, ValueError) as err:
            raise StudyError(f"{self.path}: snapshot {name} is unreadable ({err})") from None
        except Exception as err:  # safetensors raises its own error type on corruption
            raise StudyError(f"{self.path}: snapshot {name} is corrupted ({err})") from None
        return state, tensors

    # ------------------------------------------------------------------ writes
    @staticmethod
    def _point_params(row: PointRow) -> tuple[Any, ...]:
        """The row's columns in ``_ROW_COLUMNS`` order, followed by its checksum."""
        value, raw = StudyStore._split_value(row.state, row.value)
        fields = (
            int(row.id),
            int(row.round),
            row.source,
            row.state,
            value,
            raw,
            _as_real(row.asked_at),
            _as_real(row.told_at),
            bytes(row.x),
            None if row.traj is None else bytes(row.traj),
            row.reason,
        )
        return (*fields, _row_crc(fields))

    @staticmethod
    def _update_row(
        conn: sqlite3.Connection, pid: int, where_state: str, changes: Mapping[str, Any]
    ) -> bool:
        """Apply ``changes`` (column → value) to point ``pid`` if its state matches the SQL
        condition ``where_state``, recomputing the row checksum; whether a row changed."""
        cols = ", ".join(_ROW_COLUMNS)
        row = conn.execute(
            f"SELECT {cols} FROM points WHERE id = ? AND {where_state}", (int(pid),)
        ).fetchone()
        if row is None:
            return False
        fields = dict(zip(_ROW_COLUMNS, row))
        fields.update(changes)
        values = tuple(fields[c] for c in _ROW_COLUMNS)
        sets = ", ".join(f"{c} = ?" for c in changes)
        conn.execute(
            f"UPDATE points SET {sets}, crc = ? WHERE id = ?",
            (*changes.values(), _row_crc(values), int(pid)),
        )
        return True

    @staticmethod
    def _split_value(state: str, value: float) -> tuple[float | None, str | None]:
        """SQLite turns NaN into NULL: failed values are kept as text in ``raw``."""
        if state == "complete":
            return float(value), None
        if state == "failed":
            return None, repr(float(value))
        return None, None

    def write_snapshot(self, state: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> str:
        """Write (and fsync) a new snapshot folder; return its name. Not referenced until
        :meth:`insert_points` / :meth:`set_snapshot` commits the pointer."""
        self._require_writable()
        root = self._snapshots_root()
        try:
            return self._write_snapshot_files(root, state, tensors)
        except StudyError:
            raise
        except Exception as err:  # e.g. a full disk (OSError, or safetensors' own error)
            raise StudyError(f"cannot write a snapshot to {root}: {err}") from err

    def _write_snapshot_files(
        self, root: Path, state: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]
    ) -> str:
        root.mkdir(exist_ok=True)
        existing = [int(p.name) for p in root.iterdir() if p.name.isdigit()]
        name = f"{max(existing, default=0) + 1:08d}"
        folder = root / name
        folder.mkdir()
        (folder / _STATE_JSON).write_text(json.dumps(state))
        save_file(dict(tensors), str(folder / _TENSORS))
        write_checksums(folder, (_STATE_JSON, _TENSORS))
        for f in (_STATE_JSON, _TENSORS, CHECKSUMS):
            _fsync_file(folder / f)
        _fsync_dir(folder)
        _fsync_dir(root)
        return name

    def _snapshots_root(self) -> Path:
        """``snapshots/``; StudyError if it is a link (never write or delete through one)."""
        root = self.path / _SNAPSHOTS
        if root.is_symlink():
            raise StudyError(
                f"{self.path}: {_SNAPSHOTS} is a symbolic link; refusing to write or delete "
                "through it (replace it with a real folder)"
            )
        return root

    def prune_snapshots(self) -> None:
        """Delete snapshot entries other than the referenced one, never following a link
        (a link entry is unlinked itself; a linked ``snapshots/`` raises StudyError)."""
        self._require_writable()
        keep = self.read_meta().get("snapshot")
        root = self._snapshots_root()
        if not root.is_dir():
            return
        for p in root.iterdir():
            if p.name != keep:
                _remove_entry(p)

    def insert_points(
        self,
        rows: Sequence[PointRow],
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        """Insert new points and update metadata (e.g. the snapshot pointer) in one commit."""
        with self._transaction() as conn:
            conn.executemany(_INSERT_POINT, [self._point_params(r) for r in rows])
            self._update_meta(conn, meta or {})

    def record_tells(self, updates: Iterable[tuple[int, str, float, float]]) -> None:
        """Store told values ``(id, state, value, told_at)`` of pending points in one commit."""
        with self._transaction() as conn:
            for pid, state, value, told_at in updates:
                v, raw = self._split_value(state, value)
                changes = {"state": state, "value": v, "raw": raw, "told_at": _as_real(told_at)}
                if not self._update_row(conn, pid, "state = 'pending'", changes):
                    raise StudyError(
                        f"point {pid} is not pending in the study at {self.path}; "
                        "another process may be writing to the same study"
                    )

    def mark_failed(
        self, updates: Iterable[tuple[int, float, str | None, float]], meta: Mapping[str, Any]
    ) -> None:
        """Mark told or pending points failed ``(id, value kept, reason, now)`` and update
        metadata, in one commit (the told value stays in ``raw``: nothing told is lost;
        ``told_at`` becomes ``now`` only for points that were pending)."""
        with self._transaction() as conn:
            for pid, value, reason, now in updates:
                _, raw = self._split_value("failed", value)
                told = conn.execute("SELECT told_at FROM points WHERE id = ?", (int(pid),))
                told_at = (told.fetchone() or (None,))[0]
                changes = {
                    "state": "failed",
                    "value": None,
                    "raw": raw,
                    "reason": reason,
                    "told_at": _as_real(now) if told_at is None else told_at,
                }
                if not self._update_row(conn, pid, "state != 'failed'", changes):
                    raise StudyError(
                        f"point {pid} is missing or already failed in the study at {self.path}; "
                        "another process may be writing to the same study"
                    )
            self._update_meta(conn, meta)

    def set_meta(self, meta: Mapping[str, Any]) -> None:
        with self._transaction() as conn:
            self._update_meta(conn, meta)

    @staticmethod
    def _update_meta(conn: sqlite3.Connection, meta: Mapping[str, Any]) -> None:
        encoded = [(k, json.dumps(v)) for k, v in meta.items()]
        conn.executemany(
            "INSERT INTO meta (key, value, crc) VALUES (?, ?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value, crc = excluded.crc",
            [(k, v, _row_crc((k, v))) for k, v in encoded],
        )

    def replace_all(self, rows: Sequence[PointRow], meta: Mapping[str, Any]) -> None:
        """Make the stored points equal to ``rows`` (used by ``save`` onto the same study)."""
        with self._transaction() as conn:
            conn.execute("DELETE FROM points")
            conn.executemany(_INSERT_POINT, [self._point_params(r) for r in rows])
            self._update_meta(conn, meta)

    def max_point_id(self) -> int:
        row = self.conn.execute("SELECT MAX(id) FROM points").fetchone()
        return -1 if row is None or row[0] is None else int(row[0])
