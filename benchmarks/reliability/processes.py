"""The parent's side of child processes: start them, read their marker lines, kill them."""

from __future__ import annotations

import contextlib
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.reliability.common import ROOT, child_env


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


def parse_event(t: float, line: str) -> Event | None:
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
            ev = parse_event(*item)
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
        ev = parse_event(*item)
        if ev is not None:
            events.append(ev)
    return ChildRun(events, child.returncode, err_path.read_text(), parent_killed)


def wait_for_events(run: Callable[[], list[Event]], name: str, count: int, timeout: float) -> None:
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
        return [ev for ev in (parse_event(t, line) for t, line in list(self._lines)) if ev]

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
