"""Durable study folders: every ask and tell is committed to SQLite before it returns.

Length: one class, :class:`StudyStore`, whose every read and write is one short SQLite
transaction kept next to the durability rules below; the folder on disk (:mod:`.folder`),
the tables and checksums (:mod:`.schema`), the checks against edits made outside
sqdf-bbo and the migration of old studies (:mod:`.integrity`), the byte codec
(:mod:`.codec`) and the errors (:mod:`.errors`) live in sibling modules.

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
7. Rows: every points and metadata row carries a CRC-32 and the ``integrity`` metadata row
   counts the committed points and sums their CRCs (:mod:`.integrity`); each write moves
   it by the rows it changed (never by recounting, which would bless an edit made outside
   sqdf-bbo) and refuses to write over a row that fails its CRC. A deleted, added, replaced
   or unchecked row, or a deleted metadata row, is a :class:`StudyError` at the next open.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import sqlite3
import time
import uuid
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from sqdf_bbo.checksums import CHECKSUMS, ChecksumError, verify_checksums, write_checksums
from sqdf_bbo.study.codec import bytes_condition, bytes_tensor, condition_bytes, tensor_bytes
from sqdf_bbo.study.errors import SnapshotMissing, StudyError
from sqdf_bbo.study.folder import (
    CREATING,
    DB_NAME,
    LOCK,
    OBJECTS,
    SNAPSHOTS,
    SQLITE_MAGIC,
    acquire_lock,
    fsync_dir,
    fsync_file,
    is_study,
    lock_study,
    refuse_links,
    remove_entry,
    remove_stale_creations,
)
from sqdf_bbo.study.integrity import (
    check_row_crc,
    check_rows,
    check_schema,
    migrate_to_v2,
    moved_record,
    table_totals,
    unchecked_row,
)
from sqdf_bbo.study.points import SOURCES, STATES, Point
from sqdf_bbo.study.schema import (
    INSERT_POINT,
    INTEGRITY,
    POINT_COLUMNS,
    READABLE_VERSIONS,
    REQUIRED_META,
    ROW_COLUMNS,
    SCHEMA,
    STUDY_FORMAT,
    STUDY_VERSION,
    as_real,
    check_meta_types,
    has_column,
    integrity_record,
    point_crc,
    row_crc,
    write_meta,
)

__all__ = [
    "StudyStore",
    "StudyError",
    "SnapshotMissing",
    "lock_study",
    "STUDY_FORMAT",
    "STUDY_VERSION",
    "DB_NAME",
    "is_study",
]

_STATE_JSON = "state.json"  # a snapshot's files
_TENSORS = "tensors.safetensors"


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
                self._lock_fd = lock_fd if lock_fd is not None else acquire_lock(path / LOCK)
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
        remove_stale_creations(path.parent, path.name)
        tmp = path.parent / f".{path.name}{CREATING}{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        lock_fd: int | None = None
        try:
            lock_fd = acquire_lock(tmp / LOCK)  # marks this creation as alive
            conn = cls._connect(tmp / DB_NAME, read_only=False)
            try:
                conn.executescript(SCHEMA)
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
                write_meta(conn, {**full, INTEGRITY: integrity_record(0, 0, full)})
                conn.execute("COMMIT")
            finally:
                conn.close()
            if write_objects is not None:
                (tmp / OBJECTS).mkdir()
                write_objects(tmp / OBJECTS)
            (tmp / SNAPSHOTS).mkdir()
            fsync_dir(tmp)
            os.replace(tmp, path)  # replaces an empty folder atomically on POSIX
            fsync_dir(path.parent)
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
            refuse_links(path)
        except OSError as err:
            raise StudyError(f"cannot inspect the study folder {path}: {err}") from None
        db = path / DB_NAME
        if not db.is_file():
            raise StudyError(f"{path} is not a sqdf-bbo study: {DB_NAME} is missing")
        with open(db, "rb") as fh:
            if fh.read(16) != SQLITE_MAGIC:
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
        """Check the schema, the metadata, the rows against the integrity record and the
        referenced snapshot (read-only, one read transaction)."""
        try:
            with self.reading():
                tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master")}
                if not {"meta", "points"} <= tables:
                    raise StudyError(
                        f"{self.path / DB_NAME} is a SQLite file but not a sqdf-bbo study "
                        f"(tables found: {sorted(tables) or 'none'})"
                    )
                cols = [r[1] for r in self.conn.execute("PRAGMA table_info(points)")]
                missing = [c for c in (*POINT_COLUMNS, "x", "traj") if c not in cols]
                if missing:
                    raise StudyError(f"{self.path}: the points table lacks columns {missing}")
                meta_checked = has_column(self.conn, "meta", "crc")
                meta = self.read_meta()
                check = self.conn.execute("PRAGMA quick_check").fetchone()
                totals = table_totals(self.conn) if "crc" in cols else None
        except sqlite3.Error as err:
            raise StudyError(f"{self.path / DB_NAME} is corrupted: {err}") from None
        if check is None or check[0] != "ok":
            raise StudyError(f"{self.path / DB_NAME} failed its integrity check: {check}")
        if meta.get("format") != STUDY_FORMAT:
            raise StudyError(f"{self.path} is not a sqdf-bbo study (format {meta.get('format')!r})")
        if meta.get("version") not in READABLE_VERSIONS:
            raise StudyError(
                f"{self.path} has study format version {meta.get('version')!r}; "
                f"this sqdf-bbo reads versions {', '.join(map(str, READABLE_VERSIONS))}"
            )
        absent = [k for k in REQUIRED_META if k not in meta]
        if absent:
            raise StudyError(f"{self.path} is missing study metadata {absent}")
        check_meta_types(self.path, meta)
        check_schema(self.path, meta, cols, meta_checked)
        if totals is not None:
            rows, crc_sum, unchecked = totals
            if unchecked is not None:
                raise unchecked_row(self.path, unchecked)
            check_rows(self.path, meta, rows, crc_sum)
        snap = meta.get("snapshot")
        if snap is not None:
            folder = self.path / SNAPSHOTS / str(snap)
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
        return self.path / OBJECTS

    # ------------------------------------------------------------------ reads
    def read_meta(self) -> dict[str, Any]:
        checked = has_column(self.conn, "meta", "crc")
        crc = "crc" if checked else "NULL"
        rows = self.conn.execute(f"SELECT key, value, {crc} FROM meta").fetchall()
        bad = [k for k, v, c in rows if checked and c != row_crc((k, v))]
        if bad:
            raise StudyError(
                f"{self.path}: study metadata {sorted(bad)} fail their checksum (corrupted, "
                "or altered outside sqdf-bbo)"
            )
        try:
            return {k: json.loads(v) for k, v, _ in rows}
        except (TypeError, ValueError) as err:
            raise StudyError(f"{self.path}: unreadable study metadata ({err})") from None

    def read_points(self) -> list[Point]:
        """All points ordered by id, each row checked against its checksum; designs are
        decoded with the study's stored ``dtype`` and ``shape``."""
        reason = "reason" if has_column(self.conn, "points", "reason") else "NULL"
        cond = "cond" if has_column(self.conn, "points", "cond") else "NULL"
        transient = "transient" if has_column(self.conn, "points", "transient") else "0"
        crc = "crc" if has_column(self.conn, "points", "crc") else "NULL"
        rows = self.conn.execute(
            "SELECT id, round, source, state, value, raw, asked_at, told_at, x, traj, "
            f"{reason}, {cond}, {transient}, {crc} FROM points ORDER BY id"
        ).fetchall()
        meta = self.read_meta()
        shape = tuple(int(d) for d in meta["shape"])
        # a latent prior's chains live in its state space, not the design space
        state_shape = tuple(int(d) for d in meta.get("state_shape", shape))
        layout = (getattr(torch, str(meta["dtype"])), shape, state_shape)
        out = []
        for row in rows:
            fields, flag, crc_value = row[:-2], row[-2], row[-1]
            if crc != "NULL":  # only a study from before checksums has none
                check_row_crc(self.path, row[0], fields, flag, crc_value)
            out.append(self._decode_point(fields, flag, *layout))
        check_rows(self.path, meta, len(rows), sum(int(r[-1] or 0) for r in rows))
        return out

    def _decode_point(
        self,
        row: Sequence[Any],
        transient: Any,
        dtype: torch.dtype,
        shape: tuple[int, ...],
        state_shape: tuple[int, ...],
    ) -> Point:
        """A :class:`Point` from the columns of ``ROW_COLUMNS`` and the ``transient`` flag
        (designs ``(*shape)`` and trajectories ``(K+1, *state_shape)`` of ``dtype``, CPU)."""
        pid, rnd, source, state, value, raw, asked_at, told_at, x, traj, why, cond = row
        if state not in STATES or source not in SOURCES:
            raise StudyError(f"point {pid} has state {state!r} / source {source!r}")
        if state == "complete":
            v = float(value)
        elif state == "failed":
            v = float(raw) if raw is not None else math.nan
        else:
            v = math.nan
        try:
            xt = bytes_tensor(x, dtype, shape)
            tt = None if traj is None else bytes_tensor(traj, dtype, (-1, *state_shape))
            condition = None if cond is None else bytes_condition(cond)
        except ValueError as err:
            raise StudyError(f"{self.path}: point {pid}: {err}") from None
        if transient not in (0, 1) or (transient and state != "failed"):
            raise StudyError(
                f"{self.path}: point {pid} has transient flag {transient!r} in state {state!r}"
            )
        return Point(
            pid, rnd, source, state, v, asked_at, told_at, xt, tt, why, bool(transient), condition
        )

    def _migrate(self) -> None:
        """Bring a version-1 study up to the current version at a writable open, in one
        transaction (:func:`~sqdf_bbo.study.integrity.migrate_to_v2`); never drops data."""
        with self._transaction() as conn:
            meta = self.read_meta()
            if meta["version"] < STUDY_VERSION:
                migrate_to_v2(self.path, conn, meta)

    def read_snapshot(self, name: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """A snapshot's JSON state and tensors, checked against its ``checksums.json`` (when
        it has one: snapshots written before checksums existed are read unverified)."""
        folder = self.path / SNAPSHOTS / str(name)
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
    def _point_params(point: Point) -> tuple[Any, ...]:
        """The point's columns in ``ROW_COLUMNS`` order (designs as raw bytes), followed by
        its checksum."""
        value, raw = StudyStore._split_value(point.state, point.value)
        fields = (
            int(point.id),
            int(point.round),
            point.source,
            point.state,
            value,
            raw,
            as_real(point.asked_at),
            as_real(point.told_at),
            tensor_bytes(point.x),
            None if point.traj is None else tensor_bytes(point.traj),
            point.reason,
            None if point.condition is None else condition_bytes(point.condition),
        )
        flag = int(bool(point.transient))
        return (*fields, flag, point_crc(fields, flag))

    def _update_row(
        self, conn: sqlite3.Connection, pid: int, where_state: str, changes: Mapping[str, Any]
    ) -> int | None:
        """Apply ``changes`` (column of ``ROW_COLUMNS`` or ``transient`` → value) to point
        ``pid`` if its state matches the SQL condition ``where_state``, after checking its
        CRC, and recompute the CRC; the change of the CRC (new − old), ``None`` if no row
        matched."""
        columns = (*ROW_COLUMNS, "transient", "crc")
        row = conn.execute(
            f"SELECT {', '.join(columns)} FROM points WHERE id = ? AND {where_state}", (int(pid),)
        ).fetchone()
        if row is None:
            return None
        check_row_crc(self.path, pid, row[:-2], row[-2], row[-1])
        fields = dict(zip(columns, row))
        fields.update(changes)
        crc = point_crc(tuple(fields[c] for c in ROW_COLUMNS), fields["transient"])
        sets = ", ".join(f"{c} = ?" for c in changes)
        conn.execute(
            f"UPDATE points SET {sets}, crc = ? WHERE id = ?", (*changes.values(), crc, int(pid))
        )
        return crc - int(row[-1])

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
            fsync_file(folder / f)
        fsync_dir(folder)
        fsync_dir(root)
        return name

    def _snapshots_root(self) -> Path:
        """``snapshots/``; StudyError if it is a link (never write or delete through one)."""
        root = self.path / SNAPSHOTS
        if root.is_symlink():
            raise StudyError(
                f"{self.path}: {SNAPSHOTS} is a symbolic link; refusing to write or delete "
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
                remove_entry(p)

    def insert_points(
        self,
        points: Sequence[Point],
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        """Insert new points and update metadata (e.g. the snapshot pointer) in one commit."""
        with self._transaction() as conn:
            params = [self._point_params(p) for p in points]
            conn.executemany(INSERT_POINT, params)
            self._commit_meta(conn, meta or {}, len(params), sum(r[-1] for r in params))

    def record_tells(
        self, updates: Iterable[tuple[int, str, float, float, str | None, bool]]
    ) -> None:
        """Store told values ``(id, state, value, told_at, reason, transient)`` of pending
        points in one commit."""
        with self._transaction() as conn:
            crc_change = 0
            for pid, state, value, told_at, reason, transient in updates:
                v, raw = self._split_value(state, value)
                changes = {
                    "state": state,
                    "value": v,
                    "raw": raw,
                    "told_at": as_real(told_at),
                    "reason": reason,
                    "transient": int(bool(transient)),
                }
                change = self._update_row(conn, pid, "state = 'pending'", changes)
                if change is None:
                    raise StudyError(
                        f"point {pid} is not pending in the study at {self.path}; "
                        "another process may be writing to the same study"
                    )
                crc_change += change
            self._commit_meta(conn, {}, 0, crc_change)

    def mark_failed(
        self,
        updates: Iterable[tuple[int, float, str | None, float, bool]],
        meta: Mapping[str, Any],
    ) -> None:
        """Mark told or pending points failed ``(id, value kept, reason, now, transient)`` and
        update metadata, in one commit (the told value stays in ``raw``: nothing told is lost;
        ``told_at`` becomes ``now`` only for points that were pending)."""
        with self._transaction() as conn:
            crc_change = 0
            for pid, value, reason, now, transient in updates:
                _, raw = self._split_value("failed", value)
                told = conn.execute("SELECT told_at FROM points WHERE id = ?", (int(pid),))
                told_at = (told.fetchone() or (None,))[0]
                changes = {
                    "state": "failed",
                    "value": None,
                    "raw": raw,
                    "reason": reason,
                    "told_at": as_real(now) if told_at is None else told_at,
                    "transient": int(bool(transient)),
                }
                change = self._update_row(conn, pid, "state != 'failed'", changes)
                if change is None:
                    raise StudyError(
                        f"point {pid} is missing or already failed in the study at {self.path}; "
                        "another process may be writing to the same study"
                    )
                crc_change += change
            self._commit_meta(conn, meta, 0, crc_change)

    def update_meta(self, meta: Mapping[str, Any]) -> None:
        """Set metadata values in one commit (no points change)."""
        with self._transaction() as conn:
            self._commit_meta(conn, meta, 0, 0)

    def _commit_meta(
        self,
        conn: sqlite3.Connection,
        meta: Mapping[str, Any],
        rows: int,
        crc_change: int,
        replaced: bool = False,
    ) -> None:
        """Write ``meta`` and the integrity record moved by this write
        (:func:`~sqdf_bbo.study.integrity.moved_record`)."""
        record = moved_record(self.path, conn, meta, rows, crc_change, replaced)
        write_meta(conn, {**meta, INTEGRITY: record})

    def replace_all(self, points: Sequence[Point], meta: Mapping[str, Any]) -> None:
        """Make the stored points equal to ``points`` (used by ``save`` onto the same study)."""
        with self._transaction() as conn:
            conn.execute("DELETE FROM points")
            params = [self._point_params(p) for p in points]
            conn.executemany(INSERT_POINT, params)
            crc_sum = sum(r[-1] for r in params)
            self._commit_meta(conn, meta, len(params), crc_sum, replaced=True)
