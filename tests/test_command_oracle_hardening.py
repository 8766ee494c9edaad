"""CommandOracle hardening: the timeout kills the whole process group, output is never buffered
in memory (bounded stdout/stderr tails), and oversized values files are refused unread."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from oracles.command import CSV_BYTES_PER_VALUE, VALUES_SLACK_BYTES, CommandOracle

REPO = Path(__file__).resolve().parents[1]


def python_program(code: str) -> list[str]:
    """argv running ``code`` in a fresh Python; the oracle appends ``in_path out_path``."""
    return [sys.executable, "-c", textwrap.dedent(code)]


def is_alive(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie (killed, not yet reaped by its new parent) counts as dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError, IndexError):
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    return True


def gone_within(pid: int, seconds: float) -> bool:
    """Poll ``is_alive`` until ``pid`` is gone or ``seconds`` have passed."""
    deadline = time.monotonic() + seconds
    while is_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# ----------------------------------------------------------------------------- D11: timeout


@pytest.mark.skipif(os.name != "posix" or shutil.which("sh") is None, reason="POSIX sh")
def test_timeout_kills_the_programs_children(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    oracle = CommandOracle(
        ["sh", "-c", 'sleep 30 & echo $! > "$PIDFILE"; wait'],
        (2,),
        timeout=1.0,
        env={"PIDFILE": str(pidfile)},
    )
    pid = None
    try:
        y = oracle(torch.zeros(3, 2))
        pid = int(pidfile.read_text())
        assert gone_within(pid, 3.0), f"grandchild {pid} survived the timeout"
    finally:
        if pid is not None and is_alive(pid):
            os.kill(pid, signal.SIGKILL)
    assert torch.isnan(y).all()
    assert sorted(oracle.failures) == [0, 1, 2]
    assert all(r.startswith("timeout after 1 s") for r in oracle.failures.values())


@pytest.mark.skipif(os.name != "posix" or shutil.which("sh") is None, reason="POSIX sh")
def test_interrupt_while_waiting_kills_the_process_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # in its own session the program no longer gets the terminal's Ctrl-C: the oracle kills it
    pidfile = tmp_path / "grandchild.pid"
    real_wait = subprocess.Popen.wait
    started: list[int] = []

    def interrupted_wait(proc: subprocess.Popen[bytes], timeout: float | None = None) -> int:
        if started:  # the oracle reaping the killed program
            return real_wait(proc, timeout)
        started.append(proc.pid)
        deadline = time.monotonic() + 5.0
        while not pidfile.exists() or not pidfile.read_text().strip():
            assert time.monotonic() < deadline, "the program never started its child"
            time.sleep(0.02)
        raise KeyboardInterrupt

    monkeypatch.setattr(subprocess.Popen, "wait", interrupted_wait)
    oracle = CommandOracle(
        ["sh", "-c", 'sleep 30 & echo $! > "$PIDFILE"; wait'],
        (2,),
        timeout=None,
        env={"PIDFILE": str(pidfile)},
    )
    pid = None
    try:
        with pytest.raises(KeyboardInterrupt):
            oracle(torch.zeros(1, 2))
        pid = int(pidfile.read_text())
        assert gone_within(pid, 3.0) and gone_within(started[0], 3.0)
    finally:
        if pid is not None and is_alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_timeout_reason_carries_the_stderr_tail() -> None:
    program = python_program(
        """
        import sys, time
        sys.stderr.write("meshing step 7\\n"); sys.stderr.flush()
        time.sleep(30)
        """
    )
    oracle = CommandOracle(program, (2,), timeout=1.0)
    oracle(torch.zeros(1, 2))
    assert oracle.failures == {0: "timeout after 1 s: meshing step 7"}


# ----------------------------------------------------------------------------- D12: output size

RSS_PROBE = """
import contextlib, json, sys
import torch
from oracles.command import CommandOracle

size = int(sys.argv[1])
child = (
    "import sys; sys.stdout.buffer.write(b'x' * {size}); sys.stdout.flush(); "
    "open(sys.argv[2], 'w').write('1.0\\\\n2.0\\\\n')"
)

def oracle(n_bytes):
    return CommandOracle([sys.executable, "-c", child.format(size=n_bytes)], (2,), timeout=60)

def status_kib(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":"))

oracle(0)(torch.zeros(2, 2))  # warm-up: the same code paths, no output
with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak (VmHWM) to the current RSS, dropping the import peak
before = status_kib("VmRSS")
o = oracle(size)
y = o(torch.zeros(2, 2))
peak = status_kib("VmHWM")
print(json.dumps({"growth": (peak - before) * 1024, "y": y.tolist(), "failures": o.failures}))
"""


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="Linux /proc")
def test_big_stdout_does_not_grow_the_caller() -> None:
    printed = 50_000_000
    proc = subprocess.run(
        [sys.executable, "-c", RSS_PROBE, str(printed)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["y"] == [1.0, 2.0] and report["failures"] == {}
    # peak RSS during the call minus RSS before it: bounded tails only, not the 50 MB. VmHWM,
    # not ru_maxrss: on Linux ru_maxrss keeps the peak of the process image before exec (here
    # the forked pytest), VmHWM is this image's own peak.
    assert report["growth"] < printed / 10, report


def test_failure_reason_is_a_bounded_tail_of_the_output() -> None:
    program = python_program(
        """
        import sys
        sys.stdout.write("chatter\\n" * 200_000 + "solver diverged at step 12\\n")
        sys.exit(4)
        """
    )
    oracle = CommandOracle(program, (2,))
    oracle(torch.zeros(2, 2))
    reason = oracle.failures[0]
    assert reason.startswith("exit status 4: …") and reason.endswith("solver diverged at step 12")
    assert len(reason) < 400


# ----------------------------------------------------------------------------- values file size


@pytest.mark.parametrize("fmt", ["csv", "npy"])
def test_oversized_values_file_is_refused(fmt: str) -> None:
    writer = (
        "open(sys.argv[2], 'w').write('1.0,' + 'x' * 200_000 + '\\n')"
        if fmt == "csv"
        else "import numpy as np; np.save(sys.argv[2], np.zeros(100_000))"
    )
    oracle = CommandOracle(python_program(f"import sys; {writer}"), (2,), output_format=fmt)
    y = oracle(torch.zeros(1, 2))
    limit = (CSV_BYTES_PER_VALUE if fmt == "csv" else 8) + VALUES_SLACK_BYTES
    assert oracle.values_size_limit(1) == limit
    assert torch.isnan(y).all()
    reason = oracle.failures[0]
    assert reason.startswith(f"output values.{fmt} is larger than the {limit} bytes that 1 values")
    assert reason.endswith("; not read")


def test_values_file_within_the_bound_keeps_long_reasons() -> None:
    long_reason = "r" * 900
    program = python_program(
        f"""
        import sys
        with open(sys.argv[2], "w") as f:
            f.write("nan,{long_reason}\\n" + "2.5\\n" * 2)
        """
    )
    oracle = CommandOracle(program, (2,))
    y = oracle(torch.zeros(3, 2))
    assert torch.isnan(y[0]) and y[1:].tolist() == [2.5, 2.5]
    assert oracle.failures == {0: long_reason}
