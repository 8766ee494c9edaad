"""What every probe family shares: the counts, the probe records, the tiny study, and how
values, studies, child processes and CLI calls are compared, started and run."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import struct
import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import DDIMScheduler

from sqdf_bbo.cli import main as cli_main
from sqdf_bbo.diffusion.networks import MLPDenoiser
from sqdf_bbo.diffusion.prior import DiffusionPrior
from sqdf_bbo.optimizers.base import Optimizer
from sqdf_bbo.optimizers.sqdf import SQDF

# ---------------------------------------------------------------------------- counts
KILLS = 30  # category 1: SIGKILLed children (about 6 s each on an idle core)
KILL_TARGETS = ("start", "create", "ask", "snapshot", "commit", "tell")  # cycled, seeded order
KILL_WORKERS = 2  # children running (and being killed) at the same time
CONCURRENT_READS = 12  # category 2: read-only loads by a second process while a writer runs
CLI_TELLS = 24  # category 2: sequential CLI tell calls while another process polls status
# the case lists of the other categories: CORRUPTIONS (corruption.py), TAMPERINGS
# (tampering.py), BATCH_CASES (oracle_batches.py), HANG_CASES (hangs.py), SETTING_CASES
# (settings.py), API_CASES and CLI_CASES (hostile.py); every case runs

ROOT = Path(__file__).resolve().parents[2]  # the checkout
FAST = {
    "finetune": {"steps": 2, "transitions_per_step": 8, "rollouts_per_step": 2},
    "progress": False,
    "surrogate_options": {"steps": 20, "n_heads": 2},
}
STORE_STEPS = ("create", "write_snapshot", "replace_all", "insert_points", "prune_snapshots")
STORE_STEPS_TELL = ("record_tells",)
CALLS = {"CREATE": "create", "ASK": "ask", "TELL": "tell", "EXT": "external"}
CALL_ENDS = {"READY", "ASKED", "TOLD", "EXTED"}
STEP_LABELS = {
    "create": "assemble folder",
    "write_snapshot": "snapshot",
    "replace_all": "commit",
    "insert_points": "commit",
    "record_tells": "commit",
    "prune_snapshots": "prune",
}


# ---------------------------------------------------------------------------- records
@dataclass
class Probe:
    """One probe: what was done, what happened, and what was checked."""

    category: str
    name: str
    outcome: str
    checked: int = 0  # told values compared bit-exactly with the study
    lost: int = 0  # told values missing, changed or invented
    ok: bool = True  # False: the outcome is not an allowed one
    detail: str = ""


@dataclass(frozen=True)
class Sizes:
    """How much of each category to run (the test runs a tiny version)."""

    kills: int = KILLS
    kill_targets: tuple[str, ...] = KILL_TARGETS
    spans: tuple[tuple[str, float], ...] | None = None  # phase windows; None: calibrate
    concurrency: tuple[str, ...] = ("in-process", "cross-process", "cli-loop")
    reads: int = CONCURRENT_READS
    cli_tells: int = CLI_TELLS
    corruptions: tuple[str, ...] | None = None  # None: every case
    tamperings: tuple[str, ...] | None = None
    batch_cases: tuple[str, ...] | None = None
    hang_cases: tuple[str, ...] | None = None
    setting_cases: tuple[str, ...] | None = None
    api_cases: tuple[str, ...] | None = None
    cli_cases: tuple[str, ...] | None = None


DEFAULT = Sizes()


@dataclass
class Stored:
    """What a read-only load of a study gives back: per id state, value and design bytes."""

    states: dict[int, str]
    values: dict[int, float]
    designs: dict[int, bytes]

    def told(self) -> dict[int, float]:
        """Values of the points that are not pending."""
        return {i: v for i, v in self.values.items() if self.states[i] != "pending"}


# ---------------------------------------------------------------------------- shared helpers
def tiny_prior() -> DiffusionPrior:
    """The random-weight 2-D MLP prior of tests/test_sigkill.py (same seed, same weights)."""
    torch.manual_seed(0)
    return DiffusionPrior(
        MLPDenoiser(2, hidden=16, depth=2),
        DDIMScheduler(clip_sample=False),
        shape=(2,),
        num_inference_steps=4,
        value_range=None,
    )


def new_sqdf(study: Path | None, batch_size: int = 4) -> SQDF:
    """A cheap SQDF optimizer on the tiny prior, writing through to ``study``."""
    return SQDF(tiny_prior(), batch_size=batch_size, seed=0, config=FAST, study=study)


def random_value(rng: np.random.Generator) -> float:
    """A told value over many magnitudes; sometimes NaN or -inf (failed evaluations)."""
    u = rng.random()
    if u < 0.1:
        return math.nan
    if u < 0.13:
        return -math.inf
    return float(rng.normal()) * 10.0 ** float(rng.integers(-6, 7))


def same_value(a: float, b: float) -> bool:
    """Bit-exact equality (any NaN equals any NaN: failed values are stored as text)."""
    if math.isnan(a) and math.isnan(b):
        return True
    return struct.pack("<d", a) == struct.pack("<d", b)


def read_study(path: Path) -> Stored:
    """Load ``path`` detached (read-only) and return its points."""
    opt = Optimizer.load(path, attach=False)
    return stored_of(opt)


def stored_of(opt: Optimizer) -> Stored:
    """The points of an optimizer as a :class:`Stored`."""
    h = opt.history
    ids = [int(i) for i in h["id"]]
    x = opt.x.detach().cpu().numpy() if ids else np.zeros((0,))
    return Stored(
        states=dict(zip(ids, h["state"].tolist())),
        values=dict(zip(ids, (float(v) for v in h["value"]))),
        designs={i: x[k].tobytes() for k, i in enumerate(ids)},
    )


def told_problems(stored: Stored, told: Mapping[int, float]) -> list[str]:
    """Each told id must be stored told with the same bits (non-finite values as failed)."""
    problems = []
    for i, v in told.items():
        state = stored.states.get(i)
        want = "complete" if math.isfinite(v) else "failed"
        if state is None:
            problems.append(f"id {i} (told {v!r}) is missing")
        elif state != want:
            problems.append(f"id {i} (told {v!r}) has state {state!r}")
        elif not same_value(stored.values[i], v):
            problems.append(f"id {i}: stored {stored.values[i]!r}, told {v!r}")
    return problems


def same_study(got: Stored, want: Stored) -> list[str]:
    """Differences between two studies' points (states, value bits, design bytes)."""
    problems = []
    for i in sorted(set(want.states) | set(got.states)):
        if i not in got.states or i not in want.states:
            problems.append(f"id {i} is {'missing' if i not in got.states else 'extra'}")
        elif got.states[i] != want.states[i]:
            problems.append(f"id {i}: state {got.states[i]!r}, expected {want.states[i]!r}")
        elif not same_value(got.values[i], want.values[i]):
            problems.append(f"id {i}: value {got.values[i]!r}, expected {want.values[i]!r}")
        elif got.designs[i] != want.designs[i]:
            problems.append(f"id {i}: the design differs")
    return problems


def tree_digest(*roots: Path) -> dict[str, str]:
    """Every entry under ``roots`` (not following links): file sha256, link target, folder.

    SQLite's ``-shm`` file is left out: it is the WAL's shared-memory index, which any
    reader of a database with a ``-wal`` file creates or updates (it holds no data).
    """
    out: dict[str, str] = {}
    for root in roots:
        if root.is_symlink() or not root.exists():
            out[str(root)] = f"link:{os.readlink(root)}" if root.is_symlink() else "absent"
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            for name in (*dirnames, *filenames):
                p = Path(dirpath) / name
                if name.endswith("-shm"):
                    continue
                if p.is_symlink():
                    out[str(p)] = f"link:{os.readlink(p)}"
                elif p.is_file():
                    out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
                else:
                    out[str(p)] = "dir"
    return out


def child_env() -> dict[str, str]:
    """Environment of child processes: one thread, this checkout first on the import path (what
    was on ``PYTHONPATH`` stays after it)."""
    paths = [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(paths)}


def child_command(role: str, *args: str) -> list[str]:
    """Command line running one child role of this module."""
    return [sys.executable, "-m", "benchmarks.reliability", "--child", role, *args]


def console_script() -> list[str]:
    """The installed ``sqdf-bbo`` console script (or ``python -m sqdf_bbo.cli``)."""
    script = Path(sys.executable).with_name("sqdf-bbo")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "sqdf_bbo.cli"]


def one_line(text: str, limit: int = 300) -> str:
    """``text`` squeezed onto one line (for details)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def resume_attached(study: Path, before: Mapping[int, float]) -> tuple[list[str], list[str], int]:
    """Attach a killed study: orphan snapshots are pruned, the pending points can be told, a
    new ask works, and everything told before is still there.

    Returns the lost values, the other problems and the number of told values checked.
    """
    # 1. Attach; only the referenced snapshot may remain.
    opt = SQDF.load(study)
    other = []
    snaps = sorted(p.name for p in (study / "snapshots").iterdir())
    store = opt.ledger.store
    ref = store.read_meta().get("snapshot") if store is not None else None
    if snaps not in ([ref], []):
        other.append(f"snapshots after attach: {snaps}, referenced {ref!r}")
    # 2. Tell the pending points, ask again, close.
    pending = opt.pending
    values = [float(k) + 0.125 for k in range(len(pending))]
    if pending:
        opt.tell(pending, values)
    with warnings.catch_warnings():  # told magnitudes up to 1e6 make the surrogate optimistic
        warnings.simplefilter("ignore", RuntimeWarning)
        opt.ask()
    opt.close()
    # 3. Everything told before and now is stored.
    expect = {**before, **dict(zip(pending, values))}
    return told_problems(read_study(study), expect), other, len(expect)


def one_line_error(rc: int, stderr: str, fragment: str = "") -> bool:
    """Exit 2 with exactly one stderr line (no traceback) containing ``fragment``."""
    lines = stderr.strip().splitlines()
    return rc == 2 and len(lines) == 1 and "Traceback" not in stderr and fragment in stderr


def cli_call(argv: list[str]) -> tuple[int, str, str]:
    """Call the CLI entry point in this process; (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli_main(argv)
    return rc, out.getvalue(), err.getvalue()


def cli_study(work: Path, name: str, n: int, seed: int = 0) -> tuple[Path, Path]:
    """A CLI-made sqdf study on the tiny prior with one asked batch of ``n``; (study, batch CSV)."""
    prior_dir = work / "prior"
    if not prior_dir.exists():
        tiny_prior().save(prior_dir)
    study, batch = work / name, work / f"{name}-batch.csv"
    sets = [f"{k}={json.dumps(v)}" for k, v in FAST.items()]
    argv = ["init", "--study", str(study), "--prior", str(prior_dir), "--seed", str(seed)]
    argv += ["--batch-size", "4", *(a for s in sets for a in ("--set", s))]
    for step in (argv, ["ask", "--study", str(study), "--n", str(n), "--out", str(batch)]):
        rc, _, err = cli_call(step)
        if rc != 0:
            raise RuntimeError(f"sqdf-bbo {step[0]} failed: {err}")
    return study, batch
