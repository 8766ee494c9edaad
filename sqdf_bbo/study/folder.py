"""The study folder on disk: its layout, fsync, the writer lock, link refusal and the
clean-up of creations left by killed processes (what :mod:`.store` needs below SQLite)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from pathlib import Path
from types import ModuleType

from sqdf_bbo.study.errors import StudyError

fcntl: ModuleType | None
try:  # POSIX only: without flock (Windows) SQLite's own locking still applies
    import fcntl
except ImportError:
    fcntl = None

__all__ = [
    "DB_NAME",
    "SQLITE_MAGIC",
    "SNAPSHOTS",
    "OBJECTS",
    "LOCK",
    "CREATING",
    "fsync_file",
    "fsync_dir",
    "acquire_lock",
    "lock_study",
    "is_study",
    "refuse_links",
    "remove_entry",
    "remove_stale_creations",
]

DB_NAME = "study.sqlite"
SQLITE_MAGIC = b"SQLite format 3\x00"
SNAPSHOTS = "snapshots"
OBJECTS = "objects"
LOCK = ".lock"
CREATING = ".creating-"
CREATING_GRACE_S = 60.0  # a lock-less creation folder younger than this is never touched
CREATING_STALE_S = 3600.0  # ... and one older than this is stale even if its PID is alive


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # some filesystems cannot fsync directories
        fsync_file(path)


def acquire_lock(lock: Path) -> int | None:
    """Exclusive advisory lock of a study for one writer (released on close or process death)."""
    if fcntl is None:  # no flock on this platform: SQLite's own locking still applies
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
    lock = path / LOCK
    if lock.is_symlink():
        raise StudyError(f"{path}: {LOCK} is a symbolic link; refusing to use it")
    return acquire_lock(lock)


def is_study(path: str | Path) -> bool:
    """Whether ``path`` looks like a study folder (has a SQLite ``study.sqlite``)."""
    db = Path(path) / DB_NAME
    if not db.is_file():
        return False
    with open(db, "rb") as fh:
        return fh.read(16) == SQLITE_MAGIC


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


def refuse_links(study: Path) -> None:
    """Refuse (StudyError) a study whose internal paths are links or resolve outside it.

    Checked: the database and its ``-wal``/``-shm`` files, the lock file, ``snapshots/``, each
    snapshot entry and the files in it, ``objects/`` and everything under it. The study path
    itself may be a link (it is the caller's choice of path).
    """
    root = study.resolve()
    db = study / DB_NAME
    for p in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm"), study / LOCK):
        _refuse_link(p, root, study)
    snaps, objects = study / SNAPSHOTS, study / OBJECTS
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


def remove_entry(path: Path) -> None:
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

    A creation folder younger than ``CREATING_GRACE_S`` is never stale. One holding the
    creator's lock file is stale iff nobody holds that lock (the creator died; the lock is
    kept, returned, until the folder is gone). One without (older versions, or a creator
    killed before locking) is stale iff its PID is gone or it is older than
    ``CREATING_STALE_S``.
    """
    age = time.time() - folder.lstat().st_mtime
    if age < CREATING_GRACE_S:
        return False, None
    lock = folder / LOCK
    if lock.is_file() and not lock.is_symlink():
        try:
            fd = acquire_lock(lock)
        except StudyError:  # held: its creator is alive
            return False, None
        if fd is not None:
            return True, fd
    return age > CREATING_STALE_S or not _pid_alive(pid), None


def remove_stale_creations(parent: Path, name: str) -> None:
    """Remove ``.NAME.creating-PID-XXXXXXXX`` folders of ``name`` left by killed creators."""
    pattern = re.compile(rf"\.{re.escape(name)}{re.escape(CREATING)}([0-9]+)-[0-9a-f]{{8}}")
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
