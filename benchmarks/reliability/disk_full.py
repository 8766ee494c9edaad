"""Optional category 5, disk full (``--disk-full DIR``): writes on a full disk fail without
changing the optimizer, a detached load works, and once space is freed the study resumes."""

from __future__ import annotations

import contextlib
import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from benchmarks.reliability.common import (
    Probe,
    new_sqdf,
    read_study,
    resume_attached,
    same_study,
    stored_of,
)

DISK_FULL_MAX_BYTES = 64 << 20  # --disk-full refuses larger filesystems (it fills them)


def fill_disk(folder: Path) -> Path:
    """Write zeros into ``folder/filler`` until its filesystem is full; return the file."""
    filler = folder / "filler"
    block = b"\0" * 4096
    with contextlib.suppress(OSError), open(filler, "wb") as fh:  # ENOSPC ends it
        while True:
            fh.write(block[: max(1, min(4096, shutil.disk_usage(folder).free))])
            fh.flush()
    return filler


def attempt(action: Callable[[], Any]) -> str:
    """``"succeeded"`` or the qualified type name of what ``action`` raised."""
    try:
        action()
    except Exception as err:  # the type is the finding
        return f"{type(err).__module__.replace('builtins', '')}.{type(err).__name__}".lstrip(".")
    return "succeeded"


def check_disk_full_dir(folder: Path) -> None:
    """SystemExit unless ``folder`` is an empty folder on a small filesystem."""
    small = folder.is_dir() and shutil.disk_usage(folder).total <= DISK_FULL_MAX_BYTES
    if not small or any(folder.iterdir()):
        raise SystemExit(
            f"--disk-full needs an empty folder on a filesystem of at most "
            f"{DISK_FULL_MAX_BYTES >> 20} MB (it fills it), e.g. a tmpfs; {folder} is not one"
        )


def disk_full_probes(folder: Path) -> list[Probe]:
    """Optional category 5 (``--disk-full DIR``, an empty folder on a small filesystem, e.g.
    a 2 MB tmpfs): tell / tell_external / ask on a full disk must fail without changing the
    optimizer, a detached load must still work, and after space is freed every told value is
    there and the study resumes."""
    # 1. A study with told values, then a full disk (only ever a small filesystem).
    check_disk_full_dir(folder)
    study = folder / "s"
    opt = new_sqdf(study)
    batch = opt.ask()
    told = dict(zip(batch.ids[:3], [1.0, -2.5, math.nan]))
    opt.tell(list(told), list(told.values()))
    filler = fill_disk(folder)
    probes = []
    # 2. Each write fails and leaves the optimizer as it was; a read still works.
    for name, action in (
        ("tell on a full disk", lambda: opt.tell(batch.ids[3], 4.0)),
        ("tell_external on a full disk", lambda: opt.tell_external(torch.zeros(1, 2), [5.0])),
        ("ask on a full disk", lambda: opt.ask()),
        ("detached load on a full disk", lambda: read_study(study)),
    ):
        before = stored_of(opt)
        outcome = attempt(action)
        changed = same_study(stored_of(opt), before)
        ok = (outcome == "succeeded") == name.startswith("detached") and not changed
        probes.append(Probe("disk full", name, outcome, len(told), 0, ok, "; ".join(changed[:3])))
    opt.close()
    # 3. Space freed: every told value is stored and the study resumes.
    filler.unlink(missing_ok=True)
    lost, other, checked = resume_attached(study, told)
    probes.append(
        Probe(
            "disk full",
            "space freed: values stored, study resumes",
            "resumed" if not lost + other else "resume problems",
            checked,
            len(lost),
            not lost + other,
            "; ".join((lost + other)[:3]),
        )
    )
    shutil.rmtree(study)  # the folder is empty again for the next run
    return probes
