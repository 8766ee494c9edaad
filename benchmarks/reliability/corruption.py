"""Category 3, corruption: each case damages a copy of a study; loads must give every point
back intact or raise StudyError, and a failed (or detached) load must change nothing on disk."""

from __future__ import annotations

import math
import os
import shutil
import sqlite3
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks.reliability.common import (
    Probe,
    Sizes,
    Stored,
    new_sqdf,
    one_line,
    read_study,
    same_study,
    stored_of,
    tree_digest,
)
from sqdf_bbo.optimizers.sqdf import SQDF
from sqdf_bbo.study.errors import StudyError
from sqdf_bbo.study.store import DB_NAME


# ---------------------------------------------------------------------------- category 3
@dataclass(frozen=True)
class Case:
    """A corruption: ``apply(study, outside)`` damages a copy of the study."""

    name: str
    apply: Callable[[Path, Path], None]


def snapshot_dir(study: Path) -> Path:
    """The study's (only) snapshot folder."""
    (snap,) = sorted((study / "snapshots").iterdir())
    return snap


FILES: dict[str, Callable[[Path], Path]] = {
    "study.sqlite": lambda s: s / DB_NAME,
    "snapshot tensors.safetensors": lambda s: snapshot_dir(s) / "tensors.safetensors",
    "snapshot state.json": lambda s: snapshot_dir(s) / "state.json",
    "snapshot checksums.json": lambda s: snapshot_dir(s) / "checksums.json",
    "prior weights (objects/)": lambda s: (
        s / "objects" / "prior" / "denoiser" / "model.safetensors"
    ),
    "prior prior.json (objects/)": lambda s: s / "objects" / "prior" / "prior.json",
}


def flip_middle(path: Path) -> None:
    """Invert the byte in the middle of ``path``."""
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))


def truncate_half(path: Path) -> None:
    """Cut ``path`` to half its length."""
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])


def flip_stored_value(study: Path) -> None:
    """Flip the lowest bit of one told value's 8 bytes inside ``study.sqlite`` (SQLite keeps
    a REAL as a big-endian IEEE double; the value chosen occurs once in the file)."""
    db = study / DB_NAME
    raw = bytearray(db.read_bytes())
    for v in read_study(study).told().values():
        pattern = struct.pack(">d", v)
        if math.isfinite(v) and raw.count(pattern) == 1:
            raw[raw.index(pattern) + 7] ^= 0x01
            db.write_bytes(bytes(raw))
            return
    raise RuntimeError("no told value occurs exactly once in the database")


def flip_stored_design(study: Path) -> None:
    """Flip the lowest bit of one design's first float32 inside ``study.sqlite``."""
    db = study / DB_NAME
    raw = bytearray(db.read_bytes())
    for x in read_study(study).designs.values():
        if raw.count(x) == 1:
            raw[raw.index(x)] ^= 0x01
            db.write_bytes(bytes(raw))
            return
    raise RuntimeError("no design occurs exactly once in the database")


def set_meta(study: Path, key: str, value_json: str) -> None:
    """Overwrite one metadata value (raw JSON text) of ``study``."""
    conn = sqlite3.connect(study / DB_NAME)
    conn.execute("UPDATE meta SET value = ? WHERE key = ?", (value_json, key))
    conn.commit()
    conn.close()


def foreign_sqlite(study: Path, tables: str) -> None:
    """Replace ``study.sqlite`` with another SQLite database made by ``tables`` (SQL)."""
    db = study / DB_NAME
    db.unlink()
    conn = sqlite3.connect(db)
    conn.executescript(tables)
    conn.commit()
    conn.close()


def move_out_and_link(inside: Path, outside: Path) -> None:
    """Move ``inside`` into ``outside`` and leave a symbolic link to it in its place."""
    target = outside / inside.name
    shutil.move(str(inside), str(target))
    inside.symlink_to(target, target_is_directory=target.is_dir())


def _file_cases() -> list[Case]:
    """Flip a middle byte / truncate to half / delete each of the study's files."""
    cases = []
    for label, where in FILES.items():
        for verb, act in (("flip middle byte of", flip_middle), ("truncate", truncate_half)):
            cases.append(Case(f"{verb} {label}", lambda s, o, w=where, a=act: a(w(s))))
        cases.append(Case(f"delete {label}", lambda s, o, w=where: w(s).unlink()))
    return cases


def _link_cases() -> list[Case]:
    """Links inside the study that lead outside it."""
    return [
        Case("snapshots/ is a link to an outside folder",
             lambda s, o: move_out_and_link(s / "snapshots", o)),
        Case("the referenced snapshot is a link to an outside folder",
             lambda s, o: move_out_and_link(snapshot_dir(s), o)),
        Case("an extra snapshot entry links to an outside folder",
             lambda s, o: (s / "snapshots" / "99999999").symlink_to(o, target_is_directory=True)),
        Case("objects/ is a link to an outside folder",
             lambda s, o: move_out_and_link(s / "objects", o)),
        Case("study.sqlite is a link to an outside file",
             lambda s, o: move_out_and_link(s / DB_NAME, o)),
    ]  # fmt: skip


META_CASES = (
    ("round", '"abc"'),
    ("shape", "5"),
    ("dtype", '"not_a_dtype"'),
    ("batch_size", "0"),
    ("seed", '"s"'),
    ("snapshot", '"../../elsewhere"'),
    ("snapshot", '"00000099"'),
    ("spec", '{"prior": {"__prior__": "../../elsewhere"}}'),
    ("method", '"no-such-method"'),
    ("version", "3"),
    ("format", '"another-tool"'),
)


def _other_cases() -> list[Case]:
    """Metadata of the wrong type or value, foreign files, missing folders, side files."""
    cases = [
        Case(f"metadata {k} = {v}", lambda s, o, k=k, v=v: set_meta(s, k, v)) for k, v in META_CASES
    ]
    cases += [
        Case("a foreign SQLite file as study.sqlite",
             lambda s, o: foreign_sqlite(s, "CREATE TABLE t (a INTEGER); INSERT INTO t VALUES (1);")),
        Case("a text file as study.sqlite", lambda s, o: (s / DB_NAME).write_text("id,value\n1,2\n")),
        Case("snapshots/ deleted", lambda s, o: shutil.rmtree(s / "snapshots")),
        Case("objects/ deleted", lambda s, o: shutil.rmtree(s / "objects")),
        Case("a garbage study.sqlite-wal", lambda s, o: (s / f"{DB_NAME}-wal").write_bytes(os.urandom(4096))),
        Case("flip a told value's byte in study.sqlite", lambda s, o: flip_stored_value(s)),
        Case("flip a design's byte in study.sqlite", lambda s, o: flip_stored_design(s)),
    ]  # fmt: skip
    return cases


def all_corruptions() -> list[Case]:
    """Every corruption case, in a fixed order."""
    return _file_cases() + _link_cases() + _other_cases()


CORRUPTIONS = tuple(c.name for c in all_corruptions())


def base_study(work: Path) -> tuple[Path, Stored]:
    """A closed study with complete, failed (NaN, -inf), external and excluded points."""
    study = work / "corruption-base"
    opt = new_sqdf(study)
    for values in ([0.5, math.nan, 1e-300], [-3.25, -math.inf, 2.0**52 + 1.0]):
        batch = opt.ask()
        opt.tell(batch.ids[:3], values)
    opt.tell_external(torch.tensor([[0.1, -0.2]]), [7.5])
    opt.mark_failed([0], reason="probe")
    opt.ask()
    opt.close()
    return study, read_study(study)


def try_load(study: Path, attach: bool, want: Stored) -> tuple[str, list[str]]:
    """Load ``study``; the outcome class and, for a load, the differences from ``want``."""
    try:
        opt = SQDF.load(study, attach=attach)
    except StudyError:
        return "StudyError", []
    except Exception as err:  # any other type is the finding
        return f"{type(err).__name__}: {one_line(str(err), 120)}", []
    try:
        problems = same_study(stored_of(opt), want)
        if attach and not problems:
            batch = opt.ask()  # it resumes
            opt.tell(batch.ids[0], 1.0)
    finally:
        opt.close()
    return ("loaded intact" if not problems else "LOADED WITH WRONG DATA"), problems


def corruption_probe(
    case: Case, base: Path, want: Stored, root: Path, category: str = "corruption"
) -> Probe:
    """Apply ``case`` to a copy of ``base`` in ``root``; load it detached, then attached."""
    # 1. A fresh copy and an outside folder (links may lead there).
    study, outside = root / "s", root / "outside"
    shutil.copytree(base, study, symlinks=True)
    outside.mkdir()
    (outside / "keep.txt").write_text("precious")
    case.apply(study, outside)
    # 2. Detached load: any outcome allowed by the rules, and never a change on disk.
    before = tree_digest(study, outside)
    detached, problems = try_load(study, False, want)
    notes = [] if tree_digest(study, outside) == before else ["a detached load changed the folder"]
    # 3. Attached load: the same rules; a refused attach changes nothing either.
    attached, more = try_load(study, True, want)
    if attached == "StudyError" and tree_digest(study, outside) != before:
        notes.append("a refused attach changed the folder")
    # 4. Judge: a load must give back every point; only designs are not told values.
    allowed = ("loaded intact", "StudyError")
    wrong = list(dict.fromkeys(problems + more))  # the same damage seen by both loads once
    loads = sum(o != "StudyError" and "Error" not in o.split(":")[0] for o in (detached, attached))
    outcome = detached if attached == detached else f"{detached} / attached: {attached}"
    return Probe(
        category,
        case.name,
        outcome,
        checked=len(want.told()) * loads,
        lost=sum("design" not in w for w in wrong),
        ok=detached in allowed and attached in allowed and not notes and not wrong,
        detail="; ".join(notes + wrong[:4]),
    )


def corruption_probes(
    work: Path, sizes: Sizes, seed: int, log: Callable[[str], None]
) -> list[Probe]:
    """Category 3: every case (or those named in ``sizes.corruptions``)."""
    base, want = base_study(work)
    cases = [
        c for c in all_corruptions() if sizes.corruptions is None or c.name in sizes.corruptions
    ]
    probes = [
        corruption_probe(case, base, want, work / f"case-{k:02d}") for k, case in enumerate(cases)
    ]
    log(f"  {len(probes)} corruption probes")
    return probes
