"""Study and prior folders under hostile or damaged disks (issue 8: D2, D14 and neighbours).

- links inside a study are refused and never followed by pruning (nothing outside is deleted);
- snapshots and saved priors carry sha256 manifests: a changed byte is corruption;
- weights are read from safetensors only, never unpickled from a ``.bin``;
- creation folders left by killed creators are cleaned up, live ones are not;
- metadata of the wrong type is a :class:`StudyError`, not a bare ``ValueError``.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sqlite3
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sqdf_bbo.checksums import CHECKSUMS, ChecksumError, verify_checksums
from sqdf_bbo.diffusion.prior import DiffusionPrior
from sqdf_bbo.diffusion.priors import available_priors, prior_path
from sqdf_bbo.optimizers.base import Optimizer
from sqdf_bbo.optimizers.sqdf import SQDF
from sqdf_bbo.study.schema import row_crc
from sqdf_bbo.study.store import DB_NAME, StudyError, StudyStore
from tests.conftest import mlp_prior
from tests.test_optimizer_contract import GaussianSearch
from tests.test_store import made_study, tree_digest

FIXTURE = Path(__file__).parent / "data" / "study_v0_1"


# ---------------------------------------------------------------------------- helpers
def flip_data_byte(path: Path) -> None:
    """Flip one byte in the middle of a safetensors file's data region (it stays loadable)."""
    raw = bytearray(path.read_bytes())
    (header_len,) = struct.unpack("<Q", raw[:8])
    start = 8 + header_len
    assert len(raw) > start, f"{path} has no tensor data"
    raw[start + (len(raw) - start) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    load_file(str(path))  # still a valid safetensors file: only a checksum can tell


def outside_tree(root: Path) -> Path:
    """A folder outside any study, with a file at its top and one in a sub-folder."""
    root.mkdir()
    (root / "keep.txt").write_text("precious")
    (root / "sub").mkdir()
    (root / "sub" / "data.txt").write_text("precious too")
    return root


def replace_with_link(inside: Path, outside: Path) -> None:
    """Move ``inside``'s content to ``outside`` and put a symbolic link in its place."""
    for entry in inside.iterdir():
        shutil.move(str(entry), str(outside / entry.name))
    inside.rmdir()
    inside.symlink_to(outside, target_is_directory=True)


def tiny_prior() -> DiffusionPrior:
    return mlp_prior(steps=3, hidden=8, depth=1)


def set_meta(study: Path, key: str, value_json: str, keep_checksum: bool = True) -> None:
    """Overwrite one metadata value in place; with ``keep_checksum`` its row checksum is
    updated too (a well-formed but wrong value), else the edit looks like corruption."""
    conn = sqlite3.connect(study / DB_NAME)
    if keep_checksum:
        crc = row_crc((key, value_json))
        conn.execute("UPDATE meta SET value = ?, crc = ? WHERE key = ?", (value_json, crc, key))
    else:
        conn.execute("UPDATE meta SET value = ? WHERE key = ?", (value_json, key))
    conn.commit()
    conn.close()


def test_metadata_edited_behind_the_store_fails_its_checksum(tmp_path: Path) -> None:
    study = made_study(tmp_path)
    set_meta(study, "round", "7", keep_checksum=False)
    with pytest.raises(StudyError, match=r"metadata \['round'\] fail their checksum"):
        Optimizer.load(study, attach=False)


# ---------------------------------------------------------------------------- D2: links
@pytest.mark.parametrize("attach", [True, False])
def test_linked_snapshots_folder_is_refused_and_outside_untouched(
    tmp_path: Path, attach: bool
) -> None:
    study = made_study(tmp_path)
    outside = outside_tree(tmp_path / "outside")
    replace_with_link(study / "snapshots", outside)
    before = tree_digest(outside)
    with pytest.raises(StudyError, match="snapshots is a symbolic link") as info:
        GaussianSearch.load(study, attach=attach)
    assert len(str(info.value).splitlines()) == 1
    assert tree_digest(outside) == before, "nothing outside the study may be deleted"


def test_link_made_while_attached_stops_writes_not_tells(tmp_path: Path) -> None:
    """A study attached before snapshots/ became a link: tells are kept, asks refuse."""
    opt = GaussianSearch(batch_size=3, study=tmp_path / "s")
    batch = opt.ask()
    outside = outside_tree(tmp_path / "outside")
    replace_with_link(tmp_path / "s" / "snapshots", outside)
    before = tree_digest(outside)
    opt.tell(batch.ids, [1.0, 2.0, 3.0])  # commits to SQLite, touches no snapshot
    with pytest.raises(StudyError, match="symbolic link"):
        opt.ask()
    with pytest.raises(StudyError, match="symbolic link"):
        opt._store.prune_snapshots()  # type: ignore[union-attr]
    opt.close()
    assert tree_digest(outside) == before
    conn = sqlite3.connect(f"file:{tmp_path / 's' / DB_NAME}?mode=ro", uri=True)
    told = dict(conn.execute("SELECT id, value FROM points WHERE state = 'complete'"))
    conn.close()
    assert told == dict(zip(batch.ids, [1.0, 2.0, 3.0])), "no told value may be lost"


@pytest.mark.parametrize("target", ["dir", "file"])
def test_linked_snapshot_entry_is_refused_and_prune_unlinks_it(tmp_path: Path, target: str) -> None:
    study = made_study(tmp_path)
    outside = outside_tree(tmp_path / "outside")
    link = study / "snapshots" / "99999999"
    link.symlink_to(outside if target == "dir" else outside / "keep.txt")
    before = tree_digest(outside)
    with pytest.raises(StudyError, match="snapshots/99999999 is a symbolic link"):
        GaussianSearch.load(study)
    assert tree_digest(outside) == before

    # A link that appears after opening: pruning removes the link itself, nothing behind it.
    link.unlink()
    store = StudyStore.open(study)
    link.symlink_to(outside if target == "dir" else outside / "keep.txt")
    store.prune_snapshots()
    store.close()
    assert not link.is_symlink() and not link.exists(), "the link itself is removed"
    assert tree_digest(outside) == before


@pytest.mark.parametrize("what", ["objects", "db", "snapshot_file", "object_file"])
def test_other_links_are_refused(tmp_path: Path, what: str) -> None:
    study = made_study(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    snap = next(p for p in (study / "snapshots").iterdir())
    if what == "objects":
        replace_with_link(study / "objects", outside)
        name = "objects"
    elif what == "db":
        shutil.move(str(study / DB_NAME), str(outside / DB_NAME))
        (study / DB_NAME).symlink_to(outside / DB_NAME)
        name = DB_NAME
    elif what == "snapshot_file":
        shutil.move(str(snap / "state.json"), str(outside / "state.json"))
        (snap / "state.json").symlink_to(outside / "state.json")
        name = f"snapshots/{snap.name}/state.json"
    else:
        (outside / "w.safetensors").write_bytes(b"x")
        (study / "objects" / "w.safetensors").symlink_to(outside / "w.safetensors")
        name = "objects/w.safetensors"
    before = tree_digest(tmp_path)
    with pytest.raises(StudyError, match=f"{name} is a symbolic link"):
        Optimizer.load(study)
    assert tree_digest(tmp_path) == before


def test_study_path_itself_may_be_a_link(tmp_path: Path) -> None:
    study = made_study(tmp_path)
    alias = tmp_path / "alias"
    alias.symlink_to(study, target_is_directory=True)
    opt = GaussianSearch.load(alias)
    assert opt.counts() == {"pending": 1, "complete": 1, "failed": 1}
    opt.close()


# ---------------------------------------------------------------------------- D14: checksums
def test_snapshots_carry_checksums_and_a_flipped_byte_is_corruption(tmp_path: Path) -> None:
    study = made_study(tmp_path)
    snap = next((study / "snapshots").iterdir())
    flip_data_byte(snap / "tensors.safetensors")
    before = tree_digest(tmp_path)
    for attach in (False, True):
        with pytest.raises(
            StudyError, match="snapshot .* is corrupted .*tensors.safetensors.*sha256"
        ):
            GaussianSearch.load(study, attach=attach)
    assert tree_digest(tmp_path) == before
    manifest = json.loads((snap / CHECKSUMS).read_text())
    assert sorted(manifest["files"]) == ["state.json", "tensors.safetensors"]


def test_snapshot_without_checksums_loads_unverified(tmp_path: Path) -> None:
    study = made_study(tmp_path)
    snap = next((study / "snapshots").iterdir())
    (snap / CHECKSUMS).unlink()
    opt = GaussianSearch.load(study)
    assert opt.counts() == {"pending": 1, "complete": 1, "failed": 1}
    opt.ask()
    opt.close()
    newest = max((study / "snapshots").iterdir())
    assert verify_checksums(newest) is True, "new snapshots of an old study get checksums"


def test_old_study_without_any_checksums_loads(tmp_path: Path) -> None:
    study = tmp_path / "old"
    shutil.copytree(FIXTURE, study)
    assert not list(study.rglob(CHECKSUMS))
    opt = SQDF.load(study, attach=False)
    assert len(opt.history) > 0


def test_prior_in_objects_with_a_flipped_byte_is_corruption(tmp_path: Path) -> None:
    opt = SQDF(tiny_prior(), batch_size=2, seed=0, study=tmp_path / "s")
    opt.close()
    prior_dir = tmp_path / "s" / "objects" / "prior"
    flip_data_byte(prior_dir / "denoiser" / "model.safetensors")
    before = tree_digest(tmp_path)
    with pytest.raises(StudyError, match=r"denoiser/model\.safetensors: sha256 mismatch"):
        SQDF.load(tmp_path / "s")
    assert tree_digest(tmp_path) == before


@pytest.mark.parametrize("kind", ["builtin", "diffusers"])
def test_standalone_prior_with_a_flipped_byte_is_refused(
    tmp_path: Path, kind: str, image_prior: DiffusionPrior
) -> None:
    prior = tiny_prior() if kind == "builtin" else image_prior
    path = prior.save(tmp_path / "p")
    DiffusionPrior.load(path)
    weights = next(path.glob("denoiser/*.safetensors"))
    flip_data_byte(weights)
    with pytest.raises(ChecksumError, match=f"denoiser/{weights.name}: sha256 mismatch"):
        DiffusionPrior.load(path)
    assert issubclass(ChecksumError, ValueError)
    manifest = json.loads((path / CHECKSUMS).read_text())
    on_disk = sorted(
        p.relative_to(path).as_posix()
        for p in path.rglob("*")
        if p.is_file() and p.name != CHECKSUMS
    )
    assert sorted(manifest["files"]) == on_disk, "the manifest covers every saved file"


def test_prior_manifest_edge_cases(tmp_path: Path) -> None:
    path = tiny_prior().save(tmp_path / "p")
    (path / "prior.json").write_text((path / "prior.json").read_text() + " ")
    with pytest.raises(ChecksumError, match=r"prior\.json: sha256 mismatch"):
        DiffusionPrior.load(path)
    (path / CHECKSUMS).unlink()  # a prior saved before checksums existed: unverified
    DiffusionPrior.load(path)
    (path / CHECKSUMS).write_text(
        json.dumps(
            {
                "format": "sqdf-bbo-checksums",
                "version": 1,
                "algorithm": "sha256",
                "files": {"../escape.txt": "0" * 64},
            }
        )
    )
    with pytest.raises(ChecksumError, match="does not name a file inside"):
        DiffusionPrior.load(path)
    (path / CHECKSUMS).write_text("{not json")
    with pytest.raises(ChecksumError, match="unreadable checksum manifest"):
        DiffusionPrior.load(path)


@pytest.mark.parametrize("name", available_priors())
def test_shipped_priors_verify(name: str) -> None:
    path = prior_path(name)
    assert verify_checksums(path) is True, f"{name} ships without {CHECKSUMS}"
    listed = set(json.loads((path / CHECKSUMS).read_text())["files"])
    on_disk = {
        p.relative_to(path).as_posix()
        for p in path.rglob("*")
        if p.is_file() and p.name != CHECKSUMS
    }
    assert listed == on_disk


# ---------------------------------------------------------------------------- no unpickling
@pytest.mark.parametrize("keep_manifest", [False, True])
def test_prior_with_only_bin_weights_is_refused_without_unpickling(
    tmp_path: Path, image_prior: DiffusionPrior, keep_manifest: bool, monkeypatch
) -> None:
    path = image_prior.save(tmp_path / "p")
    denoiser = path / "denoiser"
    (denoiser / "diffusion_pytorch_model.safetensors").unlink()
    torch.save(image_prior.denoiser.state_dict(), denoiser / "diffusion_pytorch_model.bin")
    if not keep_manifest:
        (path / CHECKSUMS).unlink()
    unpickled: list[object] = []

    def no_torch_load(*args: object, **kwargs: object) -> None:
        unpickled.append(args)
        raise AssertionError("torch.load must never be called")

    monkeypatch.setattr(torch, "load", no_torch_load)
    expected = "missing" if keep_manifest else "safetensors.*never loaded"
    with pytest.raises((FileNotFoundError, ChecksumError), match=expected):
        DiffusionPrior.load(path)
    assert unpickled == []


# ---------------------------------------------------------------------------- stale creations
def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def creation_folder(
    parent: Path, name: str, pid: int, tag: str, age_s: float, lock: bool = False
) -> Path:
    """A ``.NAME.creating-PID-TAG`` folder last modified ``age_s`` ago (with a lock file)."""
    folder = parent / f".{name}.creating-{pid}-{tag}"
    folder.mkdir()
    (folder / DB_NAME).write_bytes(b"half-made")
    if lock:
        (folder / ".lock").write_text("")
    old = time.time() - age_s
    os.utime(folder, (old, old))
    return folder


def test_stale_creation_folders_are_cleaned_and_live_ones_kept(tmp_path: Path) -> None:
    gone = dead_pid()
    # abandoned: its creator's lock is free (pid alive or not), or lock-less with a dead pid
    locked_free = creation_folder(tmp_path, "s", os.getpid(), "0000aaaa", age_s=120, lock=True)
    lockless_dead = creation_folder(tmp_path, "s", gone, "0000bbbb", age_s=120)
    lockless_ancient = creation_folder(tmp_path, "s", os.getpid(), "0000cccc", age_s=7200)
    # alive or not ours: a held lock, a young folder, a lock-less one of a live pid,
    # another study's name, a name that does not match the exact pattern
    held = creation_folder(tmp_path, "s", gone, "0000dddd", age_s=7200, lock=True)
    fd = os.open(held / ".lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    young = creation_folder(tmp_path, "s", gone, "0000eeee", age_s=0)
    lockless_live = creation_folder(tmp_path, "s", os.getpid(), "0000ffff", age_s=120)
    other_name = creation_folder(tmp_path, "s2", gone, "00001111", age_s=7200)
    odd = tmp_path / ".s.creating-notes"
    odd.mkdir()
    try:
        opt = GaussianSearch(study=tmp_path / "s")
        opt.close()
    finally:
        os.close(fd)
    for folder in (locked_free, lockless_dead, lockless_ancient):
        assert not folder.exists(), f"{folder.name} should have been removed"
    for folder in (held, young, lockless_live, other_name, odd):
        assert folder.exists(), f"{folder.name} must be kept"
    assert (held / DB_NAME).read_bytes() == b"half-made"


def test_creation_holds_the_lock_from_the_start(tmp_path: Path) -> None:
    seen: list[bool] = []

    def write_objects(folder: Path) -> None:
        lock = folder.parent / ".lock"
        fd = os.open(lock, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            seen.append(False)
        except BlockingIOError:
            seen.append(True)
        finally:
            os.close(fd)

    store = StudyStore.create(
        tmp_path / "s", {"method": "m", "shape": [1], "dtype": "float32"}, write_objects
    )
    assert seen == [True], "a creation in progress must hold its lock"
    with pytest.raises(StudyError, match="open for writing elsewhere"):
        StudyStore.open(tmp_path / "s")
    store.close()
    StudyStore.open(tmp_path / "s").close()


# ---------------------------------------------------------------------------- metadata types
@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("round", '"abc"'),
        ("round", "-1"),
        ("round", "1.5"),
        ("shape", "5"),
        ("shape", '["a"]'),
        ("dtype", "3"),
        ("dtype", '"not_a_dtype"'),
        ("study_uid", "7"),
        ("method", "null"),
        ("version", "true"),
        ("fitted_count", '"x"'),
        ("batch_size", "0"),
        ("seed", '"s"'),
        ("snapshot", '"../../elsewhere"'),
        ("spec", '{"prior": {"__prior__": "../../elsewhere"}}'),
    ],
)
def test_wrong_metadata_types_are_study_errors(tmp_path: Path, key: str, value: str) -> None:
    study = made_study(tmp_path)
    set_meta(study, key, value)
    before = tree_digest(tmp_path)
    with pytest.raises(StudyError, match=f"study metadata '{key}'") as info:
        Optimizer.load(study)
    assert len(str(info.value).splitlines()) == 1
    assert tree_digest(tmp_path) == before
