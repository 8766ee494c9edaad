"""Reliability probes of study folders (issue 8): run them, count them, and check that nothing told is lost.

Usage::

    python -m benchmarks.reliability [--kills N] [--seed S] [--out FILE.json] [--workdir DIR]
                                     [--disk-full DIR]

Four categories; each probe records an outcome, the number of told values it compared
bit-exactly with what is stored, and the number lost (missing, changed, or invented). A probe
whose outcome is not an allowed one (a wrong exception type, a changed folder, a refused read)
is *unexpected*. Any lost value or unexpected outcome is printed loudly and the exit code is 1.

1. **SIGKILL points** (``KILLS``): a child process (``--child cycle``) creates a study with a
   tiny random-weight MLP prior and asks/tells forever, printing a marker before and after each
   step (the store's ``create``/``write_snapshot``/``insert_points``/``prune_snapshots``/
   ``record_tells`` are wrapped to print too) and each told value (hex) after ``tell`` returns.
   It gets SIGKILL at a seeded random delay after a seeded trigger: the parent sends it during
   the interpreter start; for the other targets (the store assembling a new study, the k-th
   ask, snapshot write, commit or tell; windows measured by a calibration run) the child arms
   a timer thread that sends SIGKILL to its own process, exact to about a millisecond where
   the parent's reaction through the pipe takes 10-100 ms. The parent classifies where the
   kill landed from the last marker, and checks: no study or a complete one (never a half one;
   ``.NAME.creating-*`` leftovers are removed by the next create once older than the store's
   60 s grace, simulated by back-dating them); every printed told value stored bit-exactly;
   nothing invented (at most the one value announced before a ``tell``/``tell_external`` whose
   commit landed before the kill); every printed asked id stored; and that the study resumes
   (attach, orphan snapshots pruned, pending told, ask again).
2. **Concurrent writers**: two optimizers in one process; a second process attaching while a
   writer child runs (StudyError at once), ``CONCURRENT_READS`` read-only loads by that process
   while the writer runs (each must load, and every value it saw must be the one finally
   stored), the ``sqdf-bbo tell`` console script from a second shell (exit 2, one stderr line),
   attaching after the writer was SIGKILLed (its lock dies with it); and ``CLI_TELLS`` sequential
   CLI ``tell`` calls (the CLI entry point, in-process, each loading, telling and closing like the
   console script) while another process polls ``status --json``.
3. **Corruption** (``CORRUPTIONS``): each case damages a copy of a study with told, failed,
   external and excluded points; loading it detached and attached must either give every point
   back intact (state, value bits and design bytes) or raise StudyError; a failed load (and any
   detached load) must leave the folder and any outside folder byte-identical (except SQLite's
   ``-shm`` index, which any reader of a database with a ``-wal`` file creates or updates).
4. **Hostile input** (``API_CASES``, ``CLI_CASES``): the API must raise ValueError / TypeError /
   KeyError, the CLI exit 2 with one stderr line, and the study (in memory and on disk) must be
   unchanged; the few inputs that are valid (a UTF-8 BOM) must store exactly what was given.
5. **Disk full** (only with ``--disk-full DIR``, an empty folder on a small filesystem such as
   a 2 MB tmpfs, which the probe fills): tell, tell_external and ask on a full disk must fail
   without changing the optimizer, a detached load must work, and once space is freed every
   told value is there and the study resumes.

Child processes run this module with ``--child cycle|reader|poller``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import inspect
import io
import json
import math
import os
import platform
import queue
import random
import shutil
import signal
import sqlite3
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import DDIMScheduler

from sqdf_bbo.cli import main as cli_main
from sqdf_bbo.diffusion.networks import MLPDenoiser
from sqdf_bbo.diffusion.prior import DiffusionPrior
from sqdf_bbo.optimizers.base import Optimizer
from sqdf_bbo.optimizers.sqdf import SQDF
from sqdf_bbo.study.store import DB_NAME, StudyError, StudyStore

__all__ = ["Probe", "Sizes", "DEFAULT", "run_all", "summarize", "render_table", "main"]

# ---------------------------------------------------------------------------- counts
KILLS = 30  # category 1: SIGKILLed children (about 6 s each on an idle core)
KILL_TARGETS = ("start", "create", "ask", "snapshot", "commit", "tell")  # cycled, seeded order
KILL_WORKERS = 2  # children running (and being killed) at the same time
CONCURRENT_READS = 12  # category 2: read-only loads by a second process while a writer runs
CLI_TELLS = 24  # category 2: sequential CLI tell calls while another process polls status
# categories 3 and 4: the case lists CORRUPTIONS, API_CASES and CLI_CASES below (every case runs)

DISK_FULL_MAX_BYTES = 64 << 20  # --disk-full refuses larger filesystems (it fills them)

ROOT = Path(__file__).resolve().parents[1]
CREATING_GRACE_S = (
    60.0  # sqdf_bbo.study.store._CREATING_GRACE_S: leftovers younger are never touched
)
FAST = {
    "steps_per_round": 2,
    "finetune_batch_size": 8,
    "rollouts_per_step": 2,
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


# ---------------------------------------------------------------------------- child roles
_T0 = time.monotonic()


_SELF_KILL: dict[str, Any] = {}  # trigger, markers left, delay: see _arm_self_kill


def _mark(*parts: object) -> None:
    """One marker line on stdout in a single ``write`` (atomic on a pipe): a kill can never
    leave half a line, even with ``PYTHONUNBUFFERED`` (where ``print`` writes piece by piece).
    Then fire the armed self-kill if this marker is its trigger."""
    line = " ".join(map(str, (f"{time.monotonic() - _T0:.6f}", *parts))) + "\n"
    os.write(sys.stdout.fileno(), line.encode())
    _fire_if_armed(str(parts[0]))


def _arm_self_kill(trigger: str, occurrence: int, delay: float) -> None:
    """SIGKILL this process ``delay`` s after its ``occurrence``-th ``trigger`` marker."""
    _SELF_KILL.update(trigger=trigger, left=occurrence, delay=delay)


def _fire_if_armed(name: str) -> None:
    """Count a marker; at the armed one, send SIGKILL now or from a timer thread."""
    if _SELF_KILL.get("trigger") != name:
        return
    _SELF_KILL["left"] -= 1
    if _SELF_KILL["left"] > 0:
        return
    delay = _SELF_KILL.pop("delay")
    _SELF_KILL.clear()
    kill = functools.partial(os.kill, os.getpid(), signal.SIGKILL)
    if delay <= 0:
        kill()
    else:
        threading.Timer(delay, kill).start()  # the main thread goes on until it lands


def _marked(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` printing ``name`` before and ``name-end`` after it runs."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _mark(name)
        out = func(*args, **kwargs)
        _mark(f"{name}-end")
        return out

    return wrapper


def _instrument_store() -> None:
    """Wrap the store's writing steps with markers (in the child only)."""
    for name in (*STORE_STEPS, *STORE_STEPS_TELL):
        raw = inspect.getattr_static(StudyStore, name)
        if isinstance(raw, classmethod):
            setattr(StudyStore, name, classmethod(_marked(name, raw.__func__)))
        else:
            setattr(StudyStore, name, _marked(name, raw))


def child_cycle(study: Path, seed: int, kill_at: tuple[str, int, float] | None = None) -> None:
    """Create (or attach) ``study`` and ask/tell/tell_external forever, printing each step.

    Each batch of 4 keeps its last point pending. ``TELL id hex`` is printed before a tell
    and ``TOLD id hex`` after it returned; ``EXT hex`` / ``EXTED id hex`` likewise for
    ``tell_external``; ``ASKED ids`` after an ask returned. ``kill_at`` (trigger marker,
    occurrence, delay) arms a SIGKILL of this process.
    """
    if kill_at is not None:
        _arm_self_kill(*kill_at)
    _instrument_store()
    rng = np.random.default_rng(seed)
    _mark("CREATE")
    opt = SQDF.load(study) if study.exists() else new_sqdf(study)
    _mark("READY")
    while True:
        _mark("ASK")
        batch = opt.ask()
        _mark("ASKED", *batch.ids)
        for i in batch.ids[:3]:
            v = random_value(rng)
            _mark("TELL", i, v.hex())
            opt.tell([i], [v])
            _mark("TOLD", i, v.hex())
        v = random_value(rng)
        x = torch.from_numpy(rng.normal(size=(1, 2)))
        _mark("EXT", v.hex())
        (j,) = opt.tell_external(x, [v])
        _mark("EXTED", j, v.hex())


def child_reader(study: Path, reads: int) -> None:
    """Try to attach ``study`` (a writer holds it), then load it read-only ``reads`` times.

    Prints ``ATTACH {json}`` then one ``READ {json}`` per load (the told values it saw, hex).
    """
    t = time.monotonic()
    try:
        Optimizer.load(study).close()
        attach: dict[str, Any] = {"outcome": "accepted"}
    except Exception as err:  # the outcome is reported, whatever its type
        attach = {"outcome": type(err).__name__, "message": str(err)}
    attach["seconds"] = time.monotonic() - t
    print("ATTACH", json.dumps(attach), flush=True)
    for _ in range(reads):
        try:
            told = read_study(study).told()
            read: dict[str, Any] = {"ok": True, "told": {i: v.hex() for i, v in told.items()}}
        except Exception as err:  # reported to the parent, which judges it
            read = {"ok": False, "type": type(err).__name__, "message": str(err)}
        print("READ", json.dumps(read), flush=True)
        time.sleep(0.05)


def child_status_poller(study: Path, stop: Path) -> None:
    """Poll ``sqdf-bbo status --json`` (the CLI entry point) until ``stop`` exists.

    Prints ``STATUS rc complete failed`` per poll (``-1`` counts when it failed).
    """
    print("POLLING", flush=True)
    while not stop.exists():
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = cli_main(["status", "--study", str(study), "--json"])
        if rc == 0:
            st = json.loads(out.getvalue())
            print("STATUS", rc, st["complete"], st["failed"], flush=True)
        else:
            print("STATUS", rc, -1, -1, one_line(err.getvalue()), flush=True)
        time.sleep(0.02)


# ---------------------------------------------------------------------------- running children
@dataclass
class Event:
    """One marker line of a child: the parent's receive time, the name, its arguments, and
    the child's own clock (seconds since its imports finished)."""

    t: float
    name: str
    args: list[str]
    child_t: float = 0.0


@dataclass
class ChildRun:
    """What a killed child printed, and how it ended."""

    events: list[Event]
    returncode: int | None
    stderr: str
    parent_killed: bool = True  # False: the child killed itself as armed


def _pump(stream: Any, sink: queue.Queue[tuple[float, str] | None]) -> None:
    """Copy ``stream``'s lines into ``sink`` with their receive times; ``None`` at EOF."""
    for line in stream:
        sink.put((time.monotonic(), line))
    sink.put(None)


def _event(t: float, line: str) -> Event | None:
    """Parse a line ``<child time> NAME args...`` ending in a newline; other lines (e.g.
    warnings) and a last line cut short by the kill (it was never completely printed) give
    ``None``."""
    parts = line.split()
    if len(parts) < 2 or not line.endswith("\n"):
        return None
    try:
        float(parts[0])
    except ValueError:
        return None
    return Event(t, parts[1], parts[2:], float(parts[0]))


def run_and_kill(
    cmd: list[str],
    trigger: str | None,
    occurrence: int,
    delay: float,
    err_path: Path,
    timeout: float = 180.0,
    self_kill: bool = False,
) -> ChildRun:
    """Start ``cmd``, SIGKILL it ``delay`` s after its ``occurrence``-th ``trigger`` line
    (after its start when ``trigger`` is ``None``), and collect everything it printed.

    ``self_kill``: the child was armed to kill itself; only wait for it (and SIGKILL it at
    the deadline, which :attr:`ChildRun.parent_killed` then reports)."""
    # 1. Start the child; a thread moves its stdout lines into a queue with receive times.
    lines: queue.Queue[tuple[float, str] | None] = queue.Queue()
    with open(err_path, "w") as err:
        child = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=err, text=True, cwd=ROOT, env=child_env()
        )
    pump = threading.Thread(target=_pump, args=(child.stdout, lines), daemon=True)
    pump.start()
    events: list[Event] = []
    parent_killed = not self_kill
    try:
        if self_kill:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=timeout)
            parent_killed = child.poll() is None
        # 2. Wait for the trigger (or the child's own end, or the deadline).
        seen, deadline, ended = 0, time.monotonic() + timeout, False
        while not self_kill and trigger is not None and seen < occurrence and not ended:
            try:
                item = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if item is None:
                ended = True
                break
            ev = _event(*item)
            if ev is not None:
                events.append(ev)
                seen += ev.name == trigger
        # 3. Kill after the delay; the lines written before the kill are still in the pipe.
        if parent_killed:
            time.sleep(0.0 if self_kill else delay)
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    pump.join(timeout=60)
    while True:
        item = lines.get()
        if item is None:
            break
        ev = _event(*item)
        if ev is not None:
            events.append(ev)
    return ChildRun(events, child.returncode, err_path.read_text(), parent_killed)


# ---------------------------------------------------------------------------- category 1
@dataclass(frozen=True)
class KillPlan:
    """Kill ``delay`` s after the ``occurrence``-th ``trigger`` marker (``None``: the start)."""

    target: str
    trigger: str | None
    occurrence: int
    delay: float


@dataclass
class ChildLog:
    """A killed cycle child's output, read back: told, announced and asked points."""

    told: dict[int, float]
    announced: list[tuple[int | None, float]]  # TELL/EXT printed, TOLD/EXTED not (≤ 1)
    asked: list[int]
    landed: str  # where the kill landed


def _durations(events: list[Event]) -> dict[str, float]:
    """Median seconds of each phase in a calibration run: by the child's clock, except the
    start-up (imports), timed by the parent up to the first marker."""

    def spans(start: str, end: str, skip: int = 0) -> list[float]:
        out, t0 = [], None
        for ev in events:
            if ev.name == start:
                t0 = ev.child_t
            elif ev.name == end and t0 is not None:
                out.append(ev.child_t - t0)
                t0 = None
        return out[skip:] or [0.05]

    first = {ev.name: ev.t for ev in reversed(events)}
    return {
        "create": statistics.median(spans("create", "create-end")),
        "ask": statistics.median(spans("ASK", "write_snapshot", skip=1)),
        "snapshot": statistics.median(spans("write_snapshot", "write_snapshot-end", skip=1)),
        "commit": statistics.median(spans("insert_points", "insert_points-end")),
        "tell": statistics.median(spans("TELL", "TOLD")),
        "startup": first.get("CREATE", 5.0),
    }


def calibrate(work: Path) -> dict[str, float]:
    """Run a cycle child for a few rounds, twice (the first warms the file caches), and
    measure the phases of the second (seconds)."""
    for attempt in ("cold", "warm"):
        study = work / f"calibration-{attempt}" / "s"
        study.parent.mkdir(parents=True)
        start = time.monotonic()
        cmd = child_command("cycle", str(study), "0")
        run = run_and_kill(cmd, "TOLD", 12, 0.0, study.parent / "err")
    events = [Event(ev.t - start, ev.name, ev.args, ev.child_t) for ev in run.events]
    if not any(ev.name == "TOLD" for ev in events):
        raise RuntimeError(f"the calibration child told nothing: {run.stderr[-2000:]}")
    return _durations(events)


def plan_kills(
    n: int, targets: Sequence[str], seed: int, spans: Mapping[str, float]
) -> list[KillPlan]:
    """``n`` kills cycling through ``targets`` (each block of them shuffled), seeded delays."""
    rng = random.Random(seed)
    order: list[str] = []
    while len(order) < n:
        block = list(targets)
        rng.shuffle(block)
        order.extend(block)
    plans = []
    for target in order[:n]:
        if target == "start":  # anywhere in interpreter start-up and imports
            plans.append(KillPlan(target, None, 0, rng.uniform(0.0, spans["startup"])))
        elif target == "create":  # while the store assembles the new folder
            plans.append(KillPlan(target, "create", 1, rng.uniform(0.0, spans["create"])))
        elif target == "ask":  # the 2nd/3rd ask fits the surrogate and fine-tunes first
            plans.append(KillPlan(target, "ASK", rng.randint(2, 3), rng.uniform(0, spans["ask"])))
        elif target == "snapshot":  # the 1st snapshot is the creation's
            k = rng.randint(2, 4)
            plans.append(KillPlan(target, "write_snapshot", k, rng.uniform(0, spans["snapshot"])))
        elif target == "commit":  # inserts of asks and of tell_external alternate
            k = rng.randint(2, 5)
            plans.append(KillPlan(target, "insert_points", k, rng.uniform(0, spans["commit"])))
        else:
            k = rng.randint(1, 7)
            plans.append(KillPlan(target, "record_tells", k, rng.uniform(0.0, spans["tell"])))
    return plans


def landing(events: Sequence[Event]) -> str:
    """Where a kill landed: the open call (create/ask/tell/external) and its last store step."""
    if not any(ev.name == "CREATE" for ev in events):
        return "startup (imports)"
    call, step = None, None
    for ev in events:
        if ev.name in CALLS:
            call, step = CALLS[ev.name], None
        elif ev.name in CALL_ENDS:
            call, step = None, None
        elif ev.name.removesuffix("-end") in STEP_LABELS:
            step = ev.name
    if call is None:
        return "between calls"
    if step is None:
        first = {"create": "build", "ask": "fit + propose", "tell": "check", "external": "check"}
        return f"{call}/{first[call]}"
    label = STEP_LABELS[step.removesuffix("-end")]
    return f"{call}/{'after ' if step.endswith('-end') else ''}{label}"


def read_log(run: ChildRun) -> ChildLog:
    """Told values, announced-but-unconfirmed values and asked ids of a killed child."""
    told: dict[int, float] = {}
    announced: list[tuple[int | None, float]] = []
    asked: list[int] = []
    for ev in run.events:
        if ev.name == "TELL":
            announced = [(int(ev.args[0]), float.fromhex(ev.args[1]))]
        elif ev.name == "EXT":
            announced = [(None, float.fromhex(ev.args[0]))]
        elif ev.name in ("TOLD", "EXTED"):
            told[int(ev.args[0])] = float.fromhex(ev.args[1])
            announced = []
        elif ev.name == "ASKED":
            asked.extend(int(a) for a in ev.args)
    return ChildLog(told, announced, asked, landing(run.events))


def invented(stored: Stored, log: ChildLog) -> list[str]:
    """Told points the child never confirmed, beyond the one announced at the kill."""
    extra = sorted(set(stored.told()) - set(log.told))
    problems = []
    for i in extra:
        match = [
            v for j, v in log.announced if (j == i or j is None) and same_value(v, stored.values[i])
        ]
        if not match or len(extra) > 1:
            problems.append(
                f"id {i} is told ({stored.values[i]!r}) but was never told by the child"
            )
    return problems


def creating_leftovers(study: Path) -> list[Path]:
    """``.NAME.creating-*`` folders beside ``study``."""
    return sorted(study.parent.glob(f".{study.name}.creating-*"))


def resume_fresh(study: Path) -> tuple[list[str], list[str], int, int]:
    """After a kill before the study existed: a later create at the same path works and
    removes the leftovers (back-dated past the store's grace period).

    Returns the lost values, the other problems, the number of told values checked and the
    number of creation leftovers found.
    """
    # 1. A leftover is only removed once older than the grace: simulate that time passing.
    old = time.time() - 2 * CREATING_GRACE_S
    leftovers = creating_leftovers(study)
    for p in leftovers:
        os.utime(p, (old, old))
    # 2. Create, ask, tell, close; then check what is stored and that the leftovers are gone.
    values = [0.25, -1.5, math.nan, 7.0]
    opt = new_sqdf(study)
    batch = opt.ask()
    opt.tell(batch.ids, values)
    opt.close()
    lost = told_problems(read_study(study), dict(zip(batch.ids, values)))
    other = [f"leftover {p.name} was not removed" for p in creating_leftovers(study)]
    return lost, other, len(values), len(leftovers)


def resume_attached(study: Path, before: Mapping[int, float]) -> tuple[list[str], list[str], int]:
    """Attach a killed study: orphan snapshots are pruned, the pending points can be told, a
    new ask works, and everything told before is still there.

    Returns the lost values, the other problems and the number of told values checked.
    """
    # 1. Attach; only the referenced snapshot may remain.
    opt = SQDF.load(study)
    other = []
    snaps = sorted(p.name for p in (study / "snapshots").iterdir())
    ref = opt._store.read_meta().get("snapshot") if opt._store is not None else None
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


def check_kill(study: Path, run: ChildRun, plan: KillPlan) -> Probe:
    """Judge one killed child: what it printed against what the study holds, then resume."""
    log = read_log(run)
    name = f"kill {plan.target} (trigger {plan.trigger} #{plan.occurrence} + {plan.delay:.3f}s)"
    probe = Probe("sigkill", name, log.landed)
    other: list[str] = []
    notes: list[str] = []
    if run.returncode != -signal.SIGKILL:
        other.append(f"child ended with {run.returncode}: {one_line(run.stderr[-500:])}")
    if plan.trigger is not None and run.parent_killed:
        other.append("the armed SIGKILL never fired (killed at the deadline)")
    if not study.exists():
        # 1. No study: nothing may have been told, and a later create must work.
        probe.outcome = f"{log.landed} -> no study"
        lost = [f"id {i} told without a study" for i in log.told]
        more_lost, more, checked, leftovers = resume_fresh(study)
        notes.append(f"{leftovers} creation leftover(s), removed by the next create")
    else:
        # 2. A study: complete (loads), holds every printed value and asked id, invents nothing.
        if log.landed.startswith("create/"):
            probe.outcome = f"{log.landed} -> complete study"
        try:
            stored = read_study(study)
        except StudyError as err:
            probe.ok, probe.lost = False, len(log.told)
            probe.detail = f"half-made study: {one_line(str(err))}"
            return probe
        lost = told_problems(stored, log.told) + invented(stored, log)
        other += [f"asked id {i} is missing" for i in log.asked if i not in stored.states]
        other += [f"leftover {p.name} beside a study" for p in creating_leftovers(study)]
        more_lost, more, checked = resume_attached(study, log.told)
    probe.checked = len(log.told) + checked
    probe.lost = len(lost) + len(more_lost)
    problems = lost + more_lost + other + more
    probe.ok = not problems
    probe.detail = "; ".join(problems[:5] or notes)
    return probe


def kill_one(work: Path, k: int, plan: KillPlan, seed: int) -> tuple[Path, ChildRun]:
    """Run the ``k``-th cycle child in its own folder and kill it as ``plan`` says."""
    study = work / f"kill-{k:03d}" / "s"
    study.parent.mkdir(parents=True)
    cmd = child_command("cycle", str(study), str(seed + k))
    err = study.parent / "err"
    if plan.trigger is None:  # sent by this process
        return study, run_and_kill(cmd, None, 0, plan.delay, err)
    cmd += [plan.trigger, str(plan.occurrence), repr(plan.delay)]  # armed in the child
    return study, run_and_kill(cmd, plan.trigger, plan.occurrence, plan.delay, err, self_kill=True)


def sigkill_probes(work: Path, sizes: Sizes, seed: int, log: Callable[[str], None]) -> list[Probe]:
    """Category 1: calibrate, then kill ``sizes.kills`` children at seeded points
    (``KILL_WORKERS`` children at a time; each is judged as soon as it was killed)."""
    if sizes.kills <= 0:
        return []
    spans = dict(sizes.spans) if sizes.spans is not None else calibrate(work)
    log("calibration (s): " + ", ".join(f"{k} {v:.3f}" for k, v in spans.items()))
    plans = plan_kills(sizes.kills, sizes.kill_targets, seed, spans)
    probes = []
    with ThreadPoolExecutor(max_workers=KILL_WORKERS) as pool:
        runs = pool.map(lambda kp: kill_one(work, kp[0], kp[1], seed), enumerate(plans))
        for k, (plan, (study, run)) in enumerate(zip(plans, runs)):
            probes.append(check_kill(study, run, plan))
            log(f"  [{k + 1}/{sizes.kills}] {probes[-1].name}: {probes[-1].outcome}")
    return probes


# ---------------------------------------------------------------------------- category 2
def expect_study_error(action: Callable[[], Any]) -> tuple[str, float]:
    """Run ``action``; return what happened (``"StudyError: <reason>"``, another type, or
    ``"accepted"``) and the seconds it took."""
    t = time.monotonic()
    try:
        result = action()
    except StudyError as err:
        return f"StudyError: {error_reason(str(err))}", time.monotonic() - t
    except Exception as err:  # a wrong type is the finding
        return f"{type(err).__name__}: {one_line(str(err), 120)}", time.monotonic() - t
    getattr(result, "close", lambda: None)()  # a second writer was let in: let go of it
    return "accepted", time.monotonic() - t


def probe_in_process(work: Path) -> list[Probe]:
    """Two optimizers of one process on one study: the second writer is refused at once,
    a detached load works, and after ``close`` the study attaches again."""
    study = work / "in-process"
    first = new_sqdf(study)
    batch = first.ask()
    told = dict(zip(batch.ids[:3], [1.5, math.nan, -(2.0**-40)]))
    first.tell(list(told), list(told.values()))
    probes = []
    # 1. A second attach and a second create are refused (the flock / the existing study).
    for name, action, expected in (
        ("second attach, same process", lambda: SQDF.load(study), "locked by the writer"),
        ("second create, same path", lambda: new_sqdf(study), "already a study"),
    ):
        outcome, seconds = expect_study_error(action)
        probes.append(
            Probe(
                "concurrency",
                name,
                outcome,
                ok=outcome == f"StudyError: {expected}" and seconds < 30,
                detail=f"{seconds:.2f}s",
            )
        )
    # 2. A detached load sees every told value; the first writer still works.
    problems = told_problems(read_study(study), told)
    first.tell(batch.ids[3], 4.0)
    told[batch.ids[3]] = 4.0
    first.close()
    # 3. Closed: the study attaches again and holds everything.
    again = SQDF.load(study)
    problems += told_problems(stored_of(again), told)
    again.close()
    probes.append(
        Probe(
            "concurrency",
            "detached load while attached, attach after close",
            "loaded intact" if not problems else "values differ",
            checked=2 * len(told),
            lost=len(problems),
            ok=not problems,
            detail="; ".join(problems[:3]),
        )
    )
    return probes


def cli_tell_subprocess(study: Path, csv_path: Path) -> tuple[int, str]:
    """Run the ``sqdf-bbo tell`` console script from a second shell; (exit code, stderr)."""
    done = subprocess.run(
        [*console_script(), "tell", "--study", str(study), str(csv_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=child_env(),
        timeout=300,
    )
    return done.returncode, done.stderr


def one_line_error(rc: int, stderr: str, fragment: str = "") -> bool:
    """Exit 2 with exactly one stderr line (no traceback) containing ``fragment``."""
    lines = stderr.strip().splitlines()
    return rc == 2 and len(lines) == 1 and "Traceback" not in stderr and fragment in stderr


def _wait_for(run: Callable[[], list[Event]], name: str, count: int, timeout: float) -> None:
    """Wait until ``run()`` holds ``count`` events called ``name``."""
    deadline = time.monotonic() + timeout
    while sum(ev.name == name for ev in run()) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"no {count} {name} lines after {timeout:.0f}s")
        time.sleep(0.05)


class BackgroundChild:
    """A child process whose stdout lines are collected by a thread (``lines()``)."""

    def __init__(self, cmd: list[str], err_path: Path) -> None:
        """Start ``cmd``; stderr goes to ``err_path``."""
        self.err_path = err_path
        with open(err_path, "w") as err:
            self.proc = subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=err, text=True, cwd=ROOT, env=child_env()
            )
        self._lines: list[tuple[float, str]] = []
        self._thread = threading.Thread(target=self._collect, daemon=True)
        self._thread.start()

    def _collect(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.append((time.monotonic(), line))

    def lines(self) -> list[str]:
        """The lines printed so far."""
        return [line for _, line in list(self._lines)]

    def events(self) -> list[Event]:
        """The marker lines printed so far."""
        return [ev for ev in (_event(t, line) for t, line in list(self._lines)) if ev]

    def finish(self, kill: bool = False, timeout: float = 300) -> int:
        """SIGKILL (``kill``) or wait for the child; then read the rest of its output."""
        if kill and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._thread.join(timeout=60)
        return int(self.proc.returncode)


def error_reason(message: str) -> str:
    """A short name for why a study refused: the writer's lock, a vanished snapshot, other."""
    if "open for writing elsewhere" in message:
        return "locked by the writer"
    if "already holds a study" in message:
        return "already a study"
    if "snapshot" in message and ("No such file" in message or ": missing (" in message):
        return "snapshot pruned under the reader"
    return one_line(message, 60)


def _attach_probe(res: Mapping[str, Any]) -> Probe:
    """Judge the second process's attach attempt (``ATTACH`` line)."""
    message = str(res.get("message", ""))
    locked = res["outcome"] == "StudyError" and "open for writing elsewhere" in message
    return Probe(
        "concurrency",
        "second process attaches while a writer runs",
        f"{res['outcome']}: {error_reason(message)}" if message else res["outcome"],
        ok=locked and res["seconds"] < 60,
        detail=f"{res['seconds']:.2f}s {one_line(message, 160)}",
    )


def _read_probe(res: Mapping[str, Any], final: Stored) -> Probe:
    """Judge one read-only load of the second process (``READ`` line) against the final study."""
    name = "read-only load while a writer runs"
    if not res["ok"]:
        outcome = f"read failed ({res['type']}: {error_reason(res['message'])})"
        return Probe("concurrency", name, outcome, ok=False, detail=one_line(res["message"], 200))
    seen = {int(i): float.fromhex(h) for i, h in res["told"].items()}
    problems = [
        f"reader saw id {i} = {v!r}, stored {final.values.get(i)!r}"
        for i, v in seen.items()
        if i not in final.values or not same_value(final.values[i], v)
    ]
    outcome = "read ok" if not problems else "read differs"
    detail = "; ".join(problems[:3])
    return Probe("concurrency", name, outcome, len(seen), len(problems), not problems, detail)


def _reader_probes(lines: list[str], final: Stored) -> list[Probe]:
    """Judge the second process's attach attempt and read-only loads."""
    probes = []
    for line in lines:
        kind, _, payload = line.partition(" ")
        if kind == "ATTACH":
            probes.append(_attach_probe(json.loads(payload)))
        elif kind == "READ":
            probes.append(_read_probe(json.loads(payload), final))
    return probes


def _shell_probe(rc: int, stderr: str, still_pending: bool) -> Probe:
    """Judge ``sqdf-bbo tell`` from a second shell: exit 2, one line, the writer's lock."""
    outcome = f"exit {rc}: {error_reason(stderr)}" if stderr.strip() else f"exit {rc}"
    ok = one_line_error(rc, stderr, "open for writing elsewhere") and still_pending
    name = "sqdf-bbo tell from a second shell while a writer runs"
    return Probe("concurrency", name, outcome, ok=ok, detail=one_line(stderr, 200))


def probe_cross_process(work: Path, reads: int) -> list[Probe]:
    """A writer child holds a study; a second process attaches (refused) and reads
    (allowed); the console script tells from a second shell (refused, exit 2); the writer
    is SIGKILLed; every value it confirmed is stored and the study attaches again."""
    study = work / "cross" / "s"
    study.parent.mkdir(parents=True)
    # 1. The writer runs until killed; wait until it told a few values.
    writer = BackgroundChild(child_command("cycle", str(study), "7"), study.parent / "w.err")
    try:
        _wait_for(writer.events, "TOLD", 6, timeout=300)
        asked = [ev for ev in writer.events() if ev.name == "ASKED"]
        pending_id = int(asked[0].args[3])  # the writer never tells the 4th point of a batch
        # 2. A second process: attach, then read-only loads while the writer keeps writing.
        reader = subprocess.run(
            child_command("reader", str(study), str(reads)),
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=child_env(),
            timeout=600,
        )
        # 3. The console script from a second shell.
        csv_path = study.parent / "late.csv"
        csv_path.write_text(f"id,value\n{pending_id},0.5\n")
        rc, stderr = cli_tell_subprocess(study, csv_path)
    finally:
        writer.finish(kill=True)
    # 4. The writer is dead: judge what it confirmed, then attach (its lock died with it).
    log = read_log(ChildRun(writer.events(), writer.proc.returncode, ""))
    final = read_study(study)
    probes = _reader_probes(reader.stdout.splitlines(), final)
    probes.append(_shell_probe(rc, stderr, final.states.get(pending_id) == "pending"))
    lost = told_problems(final, log.told) + invented(final, log)
    more_lost, more, checked = resume_attached(study, log.told)
    problems = lost + more_lost + more
    probes.append(
        Probe(
            "concurrency",
            "writer SIGKILLed: its values stored, study attaches again",
            "attached" if not problems else "attach problems",
            checked=len(log.told) + checked,
            lost=len(lost) + len(more_lost),
            ok=not problems,
            detail="; ".join(problems[:3]),
        )
    )
    return probes


def _cli(argv: list[str]) -> tuple[int, str, str]:
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
        rc, _, err = _cli(step)
        if rc != 0:
            raise RuntimeError(f"sqdf-bbo {step[0]} failed: {err}")
    return study, batch


def probe_cli_loop(work: Path, tells: int, seed: int) -> list[Probe]:
    """``tells`` sequential CLI tell calls while another process polls ``status --json``."""
    # 1. A study with enough pending points; the poller starts and signals it is polling.
    study, _ = cli_study(work / "cli-loop", "s", tells)
    stop = study.parent / "stop"
    poller = BackgroundChild(child_command("poller", str(study), str(stop)), study.parent / "p.err")
    rng = np.random.default_rng(seed)
    told: dict[int, float] = {}
    probes = []
    try:
        deadline = time.monotonic() + 300
        while not any(line.startswith("STATUS") for line in poller.lines()):
            if time.monotonic() > deadline or poller.proc.poll() is not None:
                raise RuntimeError(
                    f"the status poller did not start: {poller.err_path.read_text()}"
                )
            time.sleep(0.05)
        # 2. One tell per call, each a one-row CSV with a value written by repr.
        for i in range(tells):
            v = random_value(rng)
            path = study.parent / f"t{i}.csv"
            path.write_text(f"id,value\n{i},{'nan' if math.isnan(v) else repr(v)}\n")
            rc, _, err = _cli(["tell", "--study", str(study), str(path)])
            if rc == 0:
                told[i] = v
            probes.append(
                Probe(
                    "concurrency",
                    "CLI tell while a reader polls status",
                    "told (exit 0)" if rc == 0 else f"exit {rc}",
                    ok=rc == 0,
                    detail=one_line(err, 200),
                )
            )
    finally:
        stop.write_text("")
        poller.finish()
    # 3. Every poll succeeded and saw counts that only grow; every value is stored.
    polls = [line.split() for line in poller.lines() if line.startswith("STATUS")]
    counts = [int(p[2]) + int(p[3]) for p in polls if p[1] == "0"]
    failed = [" ".join(p) for p in polls if p[1] != "0"]
    ok = not failed and counts == sorted(counts) and counts[-1] <= len(told)
    probes.append(
        Probe(
            "concurrency",
            f"status --json polled {len(polls)} times during the tells",
            "polls ok" if ok else "poll problems",
            ok=ok,
            detail="; ".join(failed[:3]),
        )
    )
    lost = told_problems(read_study(study), told)
    probes.append(
        Probe(
            "concurrency",
            "values of the CLI tell loop",
            "stored" if not lost else "lost",
            checked=len(told),
            lost=len(lost),
            ok=not lost,
            detail="; ".join(lost[:3]),
        )
    )
    return probes


def concurrency_probes(
    work: Path, sizes: Sizes, seed: int, log: Callable[[str], None]
) -> list[Probe]:
    """Category 2: the probe groups named in ``sizes.concurrency``."""
    probes: list[Probe] = []
    if "in-process" in sizes.concurrency:
        probes += probe_in_process(work)
    if "cross-process" in sizes.concurrency:
        probes += probe_cross_process(work, sizes.reads)
    if "cli-loop" in sizes.concurrency:
        probes += probe_cli_loop(work, sizes.cli_tells, seed)
    log(f"  {len(probes)} concurrency probes")
    return probes


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
    ("version", "2"),
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


def corruption_probe(case: Case, base: Path, want: Stored, root: Path) -> Probe:
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
        "corruption",
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


# ---------------------------------------------------------------------------- category 4
@dataclass
class ApiContext:
    """The ids of an attached hostile-input study."""

    pending: list[int]
    complete: int
    failed: int
    external: int


@dataclass(frozen=True)
class ApiCase:
    """``call(opt, ctx)`` must raise one of ``expect`` and change nothing."""

    name: str
    call: Callable[[SQDF, ApiContext], Any]
    expect: tuple[type[BaseException], ...]


V, T, K = (ValueError,), (TypeError,), (KeyError,)


def _api_cases() -> list[ApiCase]:
    """Hostile calls of the ask/tell API."""
    x_nan = torch.tensor([[math.nan, 0.0]])
    x_inf = torch.tensor([[0.0, math.inf]])
    return [
        ApiCase("tell 1e39", lambda o, c: o.tell(c.pending[:2], [0.0, 1e39]), V),
        ApiCase("tell -1e20", lambda o, c: o.tell(c.pending[:1], [-1e20]), V),
        ApiCase("tell_external value 1e39", lambda o, c: o.tell_external(torch.zeros(1, 2), [1e39]), V),
        ApiCase("tell_external design with NaN", lambda o, c: o.tell_external(x_nan, [1.0]), V),
        ApiCase("tell_external design with inf", lambda o, c: o.tell_external(x_inf, [1.0]), V),
        ApiCase("tell values as a dict", lambda o, c: o.tell(c.pending[:2], {1.0: "a", 2.0: "b"}), T),
        ApiCase("tell values as a set", lambda o, c: o.tell(c.pending[:2], {1.0, 2.0}), T),
        ApiCase("tell ids as a dict", lambda o, c: o.tell({i: 0 for i in c.pending[:2]}, [1.0, 2.0]), T),
        ApiCase("tell a string value", lambda o, c: o.tell(c.pending[:1], ["1.0"]), T),
        ApiCase("tell a complex value", lambda o, c: o.tell(c.pending[:1], [1 + 2j]), T),
        ApiCase("tell a bool value", lambda o, c: o.tell(c.pending[:1], [True]), T),
        ApiCase("tell a float id", lambda o, c: o.tell([1.5], [1.0]), T),
        ApiCase("tell a bool id", lambda o, c: o.tell([True], [1.0]), T),
        ApiCase("tell an unknown id", lambda o, c: o.tell([c.pending[0], 10**6], [1.0, 2.0]), K),
        ApiCase("tell a negative id", lambda o, c: o.tell([-1], [1.0]), K),
        ApiCase("tell an id beyond int64", lambda o, c: o.tell([2**70], [1.0]), K),
        ApiCase("tell a duplicate id", lambda o, c: o.tell([c.pending[0]] * 2, [1.0, 2.0]), V),
        ApiCase("tell an already-told id", lambda o, c: o.tell([c.pending[0], c.complete], [1.0, 2.0]), V),
        ApiCase("tell an already-failed id", lambda o, c: o.tell([c.failed], [1.0]), V),
        ApiCase("tell an external id", lambda o, c: o.tell([c.external], [1.0]), V),
        ApiCase("tell no ids", lambda o, c: o.tell([], []), V),
        ApiCase("tell 2 ids, 3 values", lambda o, c: o.tell(c.pending[:2], [1.0, 2.0, 3.0]), V),
        ApiCase("tell values of shape (2, 2)", lambda o, c: o.tell(c.pending[:2], np.ones((2, 2))), V),
        ApiCase("tell_external design of shape (1, 3)", lambda o, c: o.tell_external(torch.zeros(1, 3), [1.0]), V),
        ApiCase("tell_external no designs", lambda o, c: o.tell_external(torch.zeros(0, 2), []), V),
        ApiCase("tell_external designs as a list", lambda o, c: o.tell_external([[0.0, 1.0]], [1.0]), T),
        ApiCase("tell_external string designs", lambda o, c: o.tell_external(np.array([["a", "b"]]), [1.0]), T),
        ApiCase("ask 10**12", lambda o, c: o.ask(10**12), V),
        ApiCase("ask 0", lambda o, c: o.ask(0), V),
        ApiCase("ask -3", lambda o, c: o.ask(-3), V),
        ApiCase("ask 2.5", lambda o, c: o.ask(2.5), V),
        ApiCase("ask '4'", lambda o, c: o.ask("4"), V),
        ApiCase("mark_failed an unknown id", lambda o, c: o.mark_failed([c.complete, 999]), K),
        ApiCase("mark_failed an already-failed id", lambda o, c: o.mark_failed([c.failed]), V),
        ApiCase("mark_failed a duplicate id", lambda o, c: o.mark_failed([c.complete] * 2), V),
        ApiCase("mark_failed reason 3", lambda o, c: o.mark_failed([c.complete], reason=3), T),
        ApiCase("new optimizer batch_size 10**9", lambda o, c: SQDF(o.prior, batch_size=10**9), V),
        ApiCase("new optimizer seed 2**63", lambda o, c: SQDF(o.prior, seed=2**63), V),
        ApiCase("new optimizer steps_per_round 2.5",
                lambda o, c: SQDF(o.prior, config={**FAST, "steps_per_round": 2.5}), (TypeError, ValueError)),
        ApiCase("new optimizer unknown config key",
                lambda o, c: SQDF(o.prior, config={"no_such_field": 1}), (TypeError, ValueError)),
    ]  # fmt: skip


API_CASES = tuple(c.name for c in _api_cases())


def error_class(err: BaseException, expected: tuple[type[BaseException], ...]) -> str:
    """``ValueError``, or ``ConfigError (a ValueError)`` for a subclass of an expected type."""
    name = type(err).__name__
    base = next(e.__name__ for e in expected if isinstance(err, e))
    return name if name == base else f"{name}, a {base}"


def api_probe(case: ApiCase, opt: SQDF, ctx: ApiContext) -> Probe:
    """Run one hostile API call; compare the study in memory and on disk before and after."""
    study = opt.study
    assert study is not None
    before, on_disk = stored_of(opt), read_study(study)
    try:
        case.call(opt, ctx)
        outcome = "ACCEPTED"
    except case.expect as err:
        outcome = f"refused ({error_class(err, case.expect)})"
    except Exception as err:  # a wrong type is the finding
        outcome = f"wrong error {type(err).__name__}: {one_line(str(err), 120)}"
    changed = same_study(stored_of(opt), before) + same_study(read_study(study), on_disk)
    ok = outcome.startswith("refused") and not changed
    return Probe(
        "hostile input",
        f"API: {case.name}",
        outcome,
        len(before.told()),
        len(changed),
        ok,
        "; ".join(changed[:3]),
    )


def api_probes(work: Path, names: tuple[str, ...] | None) -> list[Probe]:
    """Every hostile API case on one attached study (or those in ``names``)."""
    opt = new_sqdf(work / "hostile-api", batch_size=6)
    batch = opt.ask()
    opt.tell(batch.ids[:2], [1.25, math.nan])
    (ext,) = opt.tell_external(torch.tensor([[0.5, 0.5]]), [2.5])
    ctx = ApiContext(batch.ids[2:], batch.ids[0], batch.ids[1], ext)
    try:
        return [api_probe(c, opt, ctx) for c in _api_cases() if names is None or c.name in names]
    finally:
        opt.close()


@dataclass
class CliContext:
    """Paths and ids of the hostile-CLI studies."""

    work: Path
    study: Path
    other: Path
    batch: Path
    other_batch: Path
    pending: list[int]
    complete: int
    failed: int


@dataclass(frozen=True)
class CliCase:
    """``argv(ctx)`` must exit 2 with one stderr line and change nothing; ``accept`` cases
    must instead succeed and store exactly ``accept(ctx)`` (id → value)."""

    name: str
    argv: Callable[[CliContext], list[str]]
    accept: Callable[[CliContext], dict[int, float]] | None = None
    creates: Callable[[CliContext], Path] | None = None  # must not exist afterwards


def write_file(ctx: CliContext, name: str, text: str, encoding: str = "utf-8") -> str:
    """Write ``text`` to a file of the hostile-CLI folder; return its path."""
    path = ctx.work / name
    path.write_bytes(text.encode(encoding))
    return str(path)


def batch_with_values(
    ctx: CliContext, batch: Path, name: str, edit: Callable[[list[list[str]]], None] | None = None
) -> str:
    """An asked batch file with a value column (what a lab sends back), optionally edited."""
    rows = [line.split(",") for line in batch.read_text().splitlines()]
    rows[0].append("value")
    for r in rows[1:]:
        r.append("0.75")
    if edit is not None:
        edit(rows)
    return write_file(ctx, name, "\n".join(",".join(r) for r in rows) + "\n")


def _tell(ctx: CliContext, name: str, text: str, encoding: str = "utf-8") -> list[str]:
    """``tell`` argv for a results file with ``text``."""
    return ["tell", "--study", str(ctx.study), write_file(ctx, name, text, encoding)]


def _add(ctx: CliContext, name: str, text: str) -> list[str]:
    """``add`` argv for a data file with ``text``."""
    return ["add", "--study", str(ctx.study), write_file(ctx, name, text)]


def _set_x0(rows: list[list[str]]) -> None:
    rows[1][1] = repr(float(rows[1][1]) + 0.5)


def _drop_x1(rows: list[list[str]]) -> None:
    for r in rows:
        del r[2]


def _init(ctx: CliContext, *extra: str) -> list[str]:
    """``init`` argv of a new study ``ctx.work/new`` with ``extra`` options."""
    return ["init", "--study", str(ctx.work / "new"), "--prior", str(ctx.work / "prior"), *extra]


def _cli_cases() -> list[CliCase]:
    """Hostile calls of the CLI."""
    s = lambda c: str(c.study)  # noqa: E731
    p0 = lambda c: c.pending[0]  # noqa: E731
    new = lambda c: c.work / "new"  # noqa: E731
    return [
        CliCase("tell: duplicate value column", lambda c: _tell(c, "dup.csv", f"id,value,value\n{p0(c)},1,2\n")),
        CliCase("tell: short row", lambda c: _tell(c, "short.csv", f"id,value\n{p0(c)},1\n{c.pending[1]}\n")),
        CliCase("tell: extra non-empty field", lambda c: _tell(c, "extra.csv", f"id,value\n{p0(c)},1,9\n")),
        CliCase("tell: BOM and duplicate id column", lambda c: _tell(c, "bomdup.csv", f"\ufeffid,id,value\n{p0(c)},{p0(c)},1\n")),
        CliCase("tell: UTF-16 file", lambda c: _tell(c, "u16.csv", f"id,value\n{p0(c)},1\n", "utf-16")),
        CliCase("tell: another study's batch file", lambda c: ["tell", "--study", s(c), batch_with_values(c, c.other_batch, "other.csv")]),
        CliCase("tell: x columns differ from the asked design", lambda c: ["tell", "--study", s(c), batch_with_values(c, c.batch, "movedx.csv", _set_x0)]),
        CliCase("tell: x1 column missing", lambda c: ["tell", "--study", s(c), batch_with_values(c, c.batch, "nox1.csv", _drop_x1)]),
        CliCase("tell: id 'a'", lambda c: _tell(c, "ida.csv", "id,value\na,1\n")),
        CliCase("tell: id 1.5", lambda c: _tell(c, "idf.csv", "id,value\n1.5,1\n")),
        CliCase("tell: value 'abc'", lambda c: _tell(c, "abc.csv", f"id,value\n{p0(c)},abc\n")),
        CliCase("tell: value 1e39", lambda c: _tell(c, "huge.csv", f"id,value\n{p0(c)},1e39\n")),
        CliCase("tell: value 1e20", lambda c: _tell(c, "big.csv", f"id,value\n{p0(c)},1e20\n")),
        CliCase("tell: unknown id", lambda c: _tell(c, "unknown.csv", f"id,value\n{p0(c)},1\n999,1\n")),
        CliCase("tell: already-told id", lambda c: _tell(c, "again.csv", f"id,value\n{p0(c)},1\n{c.complete},2\n")),
        CliCase("tell: the same id twice", lambda c: _tell(c, "twice.csv", f"id,value\n{p0(c)},1\n{p0(c)},2\n")),
        CliCase("tell: empty file", lambda c: _tell(c, "empty.csv", "")),
        CliCase("tell: header only", lambda c: _tell(c, "header.csv", "id,value\n")),
        CliCase("tell: no value column", lambda c: _tell(c, "novalue.csv", f"id,y\n{p0(c)},1\n")),
        CliCase("tell: missing file", lambda c: ["tell", "--study", s(c), str(c.work / "nope.csv")]),
        CliCase("add: x1 column missing", lambda c: _add(c, "add1.csv", "x0,value\n0.1,1\n")),
        CliCase("add: an extra x2 column", lambda c: _add(c, "add3.csv", "x0,x1,x2,value\n0.1,0.2,0.3,1\n")),
        CliCase("add: value 1e39", lambda c: _add(c, "addhuge.csv", "x0,x1,value\n0.1,0.2,1e39\n")),
        CliCase("add: design nan", lambda c: _add(c, "addnan.csv", "x0,x1,value\nnan,0.2,1\n")),
        CliCase("ask: --n 10**12", lambda c: ["ask", "--study", s(c), "--n", str(10**12), "--out", str(c.work / "b.csv")]),
        CliCase("ask: --n 0", lambda c: ["ask", "--study", s(c), "--n", "0", "--out", str(c.work / "b.csv")]),
        CliCase("ask: --n -1", lambda c: ["ask", "--study", s(c), "--n", "-1", "--out", str(c.work / "b.csv")]),
        CliCase("ask: --out not a .csv", lambda c: ["ask", "--study", s(c), "--out", str(c.work / "b.txt")]),
        CliCase("fail: unknown id", lambda c: ["fail", "--study", s(c), "--ids", f"{c.complete},999"]),
        CliCase("fail: ids a,b", lambda c: ["fail", "--study", s(c), "--ids", "a,b"]),
        CliCase("fail: already-failed id", lambda c: ["fail", "--study", s(c), "--ids", str(c.failed)]),
        CliCase("init: --set unknown key", lambda c: _init(c, "--set", "no_such_field=1"), creates=new),
        CliCase("init: --set steps_per_round=2.5", lambda c: _init(c, "--set", "steps_per_round=2.5"), creates=new),
        CliCase("init: --set alpha=nan", lambda c: _init(c, "--set", "alpha=nan"), creates=new),
        CliCase("init: --set progress=maybe", lambda c: _init(c, "--set", "progress=maybe"), creates=new),
        CliCase("init: --set without =", lambda c: _init(c, "--set", "steps_per_round"), creates=new),
        CliCase("init: --seed 2**64", lambda c: _init(c, "--seed", str(2**64)), creates=new),
        CliCase("init: --batch-size 0", lambda c: _init(c, "--batch-size", "0"), creates=new),
        CliCase("init: over an existing study", lambda c: ["init", "--study", s(c), "--prior", str(c.work / "prior")]),
        CliCase("status: a folder that is not a study", lambda c: ["status", "--study", str(c.work)]),
        CliCase("tell: UTF-8 BOM (valid: must store the value)",
                lambda c: _tell(c, "bom.csv", f"\ufeffid,value\n{c.pending[-1]},0.3125\n"),
                accept=lambda c: {c.pending[-1]: 0.3125}),
    ]  # fmt: skip


CLI_CASES = tuple(c.name for c in _cli_cases())


def cli_probe(case: CliCase, ctx: CliContext) -> Probe:
    """Run one hostile CLI call; exit 2 + one line + nothing changed (or an exact accept)."""
    before = read_study(ctx.study)
    rc, _, err = _cli(case.argv(ctx))
    after = read_study(ctx.study)
    if case.accept is not None:
        expect = case.accept(ctx)
        want = Stored(dict(before.states), dict(before.values), before.designs)
        for i, v in expect.items():
            want.states[i], want.values[i] = "complete", v
        changed = same_study(after, want)
        ok = rc == 0 and not changed
        outcome = "accepted exactly" if ok else f"exit {rc}"
    else:
        changed = same_study(after, before)
        made = case.creates is not None and case.creates(ctx).exists()
        ok = one_line_error(rc, err) and not changed and not made
        outcome = (
            "exit 2, one line" if one_line_error(rc, err) else f"exit {rc}: {one_line(err, 80)}"
        )
        changed += ["a study folder was created"] if made else []
    return Probe(
        "hostile input",
        f"CLI {case.name}",
        outcome,
        len(before.told()),
        len(changed),
        ok,
        "; ".join(changed[:3]) or one_line(err, 160),
    )


def cli_probes(work: Path, names: tuple[str, ...] | None) -> list[Probe]:
    """Every hostile CLI case on a CLI-made study (or those in ``names``)."""
    folder = work / "hostile-cli"
    study, batch = cli_study(folder, "a", 6)
    other, other_batch = cli_study(folder, "b", 6, seed=1)
    told = folder / "told.csv"
    told.write_text("id,value\n0,1.25\n1,nan\n")
    if _cli(["tell", "--study", str(study), str(told)])[0] != 0:
        raise RuntimeError("could not tell the hostile-CLI study")
    ctx = CliContext(folder, study, other, batch, other_batch, [2, 3, 4, 5], 0, 1)
    return [cli_probe(c, ctx) for c in _cli_cases() if names is None or c.name in names]


def hostile_probes(work: Path, sizes: Sizes, seed: int, log: Callable[[str], None]) -> list[Probe]:
    """Category 4: hostile API and CLI input."""
    probes = api_probes(work, sizes.api_cases) + cli_probes(work, sizes.cli_cases)
    log(f"  {len(probes)} hostile-input probes")
    return probes


# ---------------------------------------------------------------------------- disk full
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


# ---------------------------------------------------------------------------- report
CATEGORIES: dict[str, Callable[[Path, Sizes, int, Callable[[str], None]], list[Probe]]] = {
    "sigkill": sigkill_probes,
    "concurrency": concurrency_probes,
    "corruption": corruption_probes,
    "hostile input": hostile_probes,
}


def run_all(
    work: Path, sizes: Sizes = DEFAULT, seed: int = 0, log: Callable[[str], None] = print
) -> list[Probe]:
    """Run every category in ``work`` (a folder that may be deleted afterwards)."""
    probes: list[Probe] = []
    for name, run in CATEGORIES.items():
        t = time.monotonic()
        log(f"{name} ...")
        folder = work / name.replace(" ", "-")
        folder.mkdir(parents=True, exist_ok=True)
        probes += run(folder, sizes, seed, log)
        log(f"  done in {time.monotonic() - t:.0f}s")
    return probes


def summarize(probes: Iterable[Probe]) -> dict[str, dict[str, Any]]:
    """Per category: probes, told values checked, lost, unexpected outcomes, outcome counts."""
    out: dict[str, dict[str, Any]] = {}
    for p in probes:
        row = out.setdefault(
            p.category,
            {"probes": 0, "checked": 0, "lost": 0, "unexpected": 0, "outcomes": Counter()},
        )
        row["probes"] += 1
        row["checked"] += p.checked
        row["lost"] += p.lost
        row["unexpected"] += not p.ok
        row["outcomes"][p.outcome] += 1
    for row in out.values():
        row["outcomes"] = dict(row["outcomes"].most_common())
    return out


def render_table(summary: Mapping[str, Mapping[str, Any]]) -> str:
    """The per-category table (Markdown)."""
    lines = [
        "| category | probes | told values checked | lost | unexpected | outcomes |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name, row in summary.items():
        outcomes = ", ".join(f"{k} {v}" for k, v in row["outcomes"].items())
        lines.append(
            f"| {name} | {row['probes']} | {row['checked']} | {row['lost']} | "
            f"{row['unexpected']} | {outcomes} |"
        )
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    """Where the probes ran."""
    return {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "sqlite": sqlite3.sqlite_version,
    }


def without_paths(probes: Iterable[Probe], places: Mapping[str, Path | None]) -> list[Probe]:
    """The probes with each folder of ``places`` written as ``<name>`` in their details."""
    out = []
    for p in probes:
        detail = p.detail
        for name, folder in places.items():
            if folder is not None:
                detail = detail.replace(str(folder), f"<{name}>")
        out.append(Probe(p.category, p.name, p.outcome, p.checked, p.lost, p.ok, detail))
    return out


def report(probes: list[Probe], args: argparse.Namespace, seconds: float) -> dict[str, Any]:
    """The JSON document of one run."""
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "args": {"kills": args.kills, "seed": args.seed, "disk_full": args.disk_full is not None},
        "seconds": round(seconds, 1),
        "summary": summarize(probes),
        "probes": [asdict(p) for p in probes],
    }


def shout(probes: Sequence[Probe]) -> int:
    """Print every lost value and unexpected outcome loudly; the exit code (0 or 1)."""
    bad = [p for p in probes if p.lost or not p.ok]
    if not bad:
        return 0
    lost = sum(p.lost for p in probes)
    print("\n" + "!" * 78, file=sys.stderr)
    print(
        f"!!! RELIABILITY FAILURE: {lost} told value(s) lost, {len(bad)} probe(s) failed",
        file=sys.stderr,
    )
    for p in bad:
        print(
            f"!!! [{p.category}] {p.name}: {p.outcome} (lost {p.lost}) {p.detail}", file=sys.stderr
        )
    print("!" * 78, file=sys.stderr)
    return 1


# ---------------------------------------------------------------------------- entry point
def build_parser() -> argparse.ArgumentParser:
    """Command line of ``python -m benchmarks.reliability``."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.reliability", description=__doc__.splitlines()[0]
    )
    p.add_argument("--kills", type=int, default=KILLS, help=f"SIGKILL points (default {KILLS})")
    p.add_argument("--seed", type=int, default=0, help="seed of kill points and values")
    p.add_argument("--out", type=Path, default=None, help="write the JSON report here")
    p.add_argument("--workdir", type=Path, default=None, help="keep the probe folders here")
    p.add_argument(
        "--disk-full",
        type=Path,
        default=None,
        metavar="DIR",
        help="also run the disk-full probes in DIR, an empty folder on a small filesystem "
        "(e.g. mount -t tmpfs -o size=2m tmpfs DIR); they fill it",
    )
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("child_args", nargs="*", help=argparse.SUPPRESS)
    return p


def run_child(role: str, args: Sequence[str]) -> int:
    """Run a child role (``cycle``, ``reader``, ``poller``) of the probes."""
    if role == "cycle":
        kill_at = (args[2], int(args[3]), float(args[4])) if len(args) > 2 else None
        child_cycle(Path(args[0]), int(args[1]), kill_at)
    elif role == "reader":
        child_reader(Path(args[0]), int(args[1]))
    elif role == "poller":
        child_status_poller(Path(args[0]), Path(args[1]))
    else:
        raise SystemExit(f"unknown child role {role!r}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the probes, print the table, write the JSON; exit 1 if anything was lost."""
    args = build_parser().parse_args(argv)
    if args.child is not None:
        return run_child(args.child, args.child_args)
    torch.set_num_threads(1)
    if args.disk_full is not None:
        check_disk_full_dir(args.disk_full)  # before the long part, not after it
    sizes = Sizes(kills=args.kills)
    t = time.monotonic()
    with contextlib.ExitStack() as stack:
        work = args.workdir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="sqdf-reliability-"))
        )
        work.mkdir(parents=True, exist_ok=True)
        work = work.absolute()  # the store writes absolute paths into its messages
        probes = without_paths(run_all(work, sizes, args.seed), {"work": work})
    if args.disk_full is not None:
        print("disk full ...")
        probes += without_paths(disk_full_probes(args.disk_full), {"disk-full": args.disk_full})
    doc = report(probes, args, time.monotonic() - t)
    print()
    print(render_table(doc["summary"]))
    print(f"\n{len(probes)} probes in {doc['seconds']:.0f}s on {machine()['cpus']} CPUs")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {args.out}")
    return shout(probes)


if __name__ == "__main__":
    sys.exit(main())
