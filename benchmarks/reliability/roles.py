"""The child processes' side: ``python -m benchmarks.reliability --child cycle|reader|poller``.

A ``cycle`` child asks and tells forever, printing a marker line before and after each step
(and the store's writing steps, wrapped), and can be armed to SIGKILL itself at a marker; a
``reader`` attaches and loads read-only; a ``poller`` polls ``sqdf-bbo status --json``."""

from __future__ import annotations

import contextlib
import functools
import inspect
import io
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.reliability.common import (
    STORE_STEPS,
    STORE_STEPS_TELL,
    new_sqdf,
    one_line,
    random_value,
    read_study,
)
from sqdf_bbo.cli import main as cli_main
from sqdf_bbo.optimizers.base import Optimizer
from sqdf_bbo.optimizers.sqdf import SQDF
from sqdf_bbo.study.store import StudyStore

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
