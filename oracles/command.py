"""An external program (a simulator, a lab's scoring script) as an oracle.

Protocol, per batch (or per chunk with an executor):

1. the designs are written to ``<dir>/designs.npy`` (float64 array of shape
   ``(n, *shape)``) or ``<dir>/designs.csv`` (``n`` lines, each the ``prod(shape)``
   flattened coordinates in C order, comma-separated, full precision);
2. the program runs as ``argv + [in_path, out_path]`` (``shell=False`` — paths
   are arguments, never spliced into a shell string), with stdin from
   ``/dev/null``, in a process session and group of its own on POSIX. Its
   stdout and stderr go to anonymous temporary files (in the call's folder),
   never into the caller's memory; only their last :data:`TAIL_BYTES` bytes
   are read back, for failure reasons;
3. it writes ``out_path``: ``values.csv`` (default) — ``n`` non-empty lines,
   line ``i`` being ``value`` or ``value,reason`` (``nan`` marks a failed
   point; the optional reason is kept) — or ``values.npy`` (float64 ``(n,)``);
4. a timeout, a non-zero exit status, a missing, unreadable or oversized
   output file (see :meth:`CommandOracle.values_size_limit`), or a wrong
   number of values fails every point of that call; an unparsable line fails
   that point only. Reasons land in ``oracle.failures``.

At the timeout (or when the caller is interrupted while waiting) the whole
process group is killed with SIGKILL, so the helpers the program started
(a solver it forked, ``sh -c 'solver & wait'``) die with it; where process
groups do not exist (Windows) only the program itself is killed. After a
normal exit, processes the program deliberately left running are not touched.
Not tracked: a grandchild that leaves the group on purpose (``setsid``, a daemon,
``nohup setsid solver &``) is in a session of its own and survives the timeout; a
simulator that detaches its workers must stop them itself (or run them under a job
scheduler that does).
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import signal
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from sqdf_bbo.text import parse_real

from .base import Evaluation, Oracle

__all__ = ["CommandOracle", "wait_or_kill", "read_tail"]

_FORMATS = ("npy", "csv")

#: Bytes kept from the end of the program's stdout and stderr (for failure reasons).
TAIL_BYTES = 4096
#: Largest ``values.csv`` line the size bound allows: a full-precision float
#: (at most 24 characters) plus a reason of about a thousand characters.
CSV_BYTES_PER_VALUE = 1024
#: Fixed allowance on top of the per-value bound (the ``.npy`` header, blank lines).
VALUES_SLACK_BYTES = 64 * 1024

_POSIX = os.name == "posix"


@dataclass(frozen=True)
class _Run:
    """How one run of the program ended.

    Attributes:
        returncode: the exit status; ``None`` when it was killed at the timeout.
        stdout: the last :data:`TAIL_BYTES` bytes of its stdout, decoded.
        stderr: the last :data:`TAIL_BYTES` bytes of its stderr, decoded.
    """

    returncode: int | None
    stdout: str
    stderr: str


def _fail_all(n: int, reason: str) -> Evaluation:
    """An :class:`Evaluation` failing all ``n`` points with the same reason."""
    return Evaluation(np.full(n, np.nan), dict.fromkeys(range(n), reason))


def read_tail(stream: IO[bytes], limit: int = TAIL_BYTES) -> str:
    """The last ``limit`` bytes written to ``stream`` (an open binary file), decoded."""
    size = stream.seek(0, os.SEEK_END)
    stream.seek(max(0, size - limit))
    return stream.read(limit).decode(errors="replace")


def _read_bounded(path: Path, limit: int) -> bytes | None:
    """The bytes of ``path``, or ``None`` when it holds more than ``limit`` (reads at most ``limit + 1``)."""
    with path.open("rb") as f:
        data = f.read(limit + 1)
    return None if len(data) > limit else data


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL ``proc`` and its process group (POSIX), then reap ``proc``.

    Must run before ``proc`` is reaped: until then its pid names its group.
    """
    if _POSIX:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        proc.kill()
    proc.wait()


def wait_or_kill(proc: subprocess.Popen[bytes], timeout: float | None) -> int | None:
    """Wait for ``proc`` (started in a session of its own); its exit status, or ``None`` when
    it ran past ``timeout`` seconds. At the timeout, or when the caller is interrupted while
    waiting, its whole process group is killed (SIGKILL) and reaped."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    finally:
        if proc.returncode is None:  # the timeout, or the caller was interrupted
            _kill_group(proc)


def _reason(head: str, run: _Run) -> str:
    """``head``, followed by the tail of stderr (or of stdout when stderr is empty)."""
    detail = _tail(run.stderr) or _tail(run.stdout)
    return f"{head}: {detail}" if detail else head


def _tail(text: str | bytes | None, limit: int = 300) -> str:
    """The last ``limit`` characters of ``text``, stripped (``…`` marks a cut)."""
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    text = text.strip()
    return text if len(text) <= limit else "…" + text[-limit:]


def _parse_npy(data: bytes, name: str, n: int) -> Evaluation:
    """Values from the bytes of a ``.npy`` file holding ``n`` numbers."""
    try:
        values = np.asarray(np.load(io.BytesIO(data), allow_pickle=False), dtype=np.float64)
    except Exception as exc:  # noqa: BLE001
        return _fail_all(n, f"unreadable output {name}: {exc}")
    values = values.reshape(-1)
    if values.shape[0] != n:
        return _fail_all(n, f"expected {n} output values, got {values.shape[0]}")
    return Evaluation(values)


def _parse_csv(data: bytes, name: str, n: int) -> Evaluation:
    """Values (and per-point reasons) from the bytes of a ``values.csv`` with ``n`` lines."""
    try:
        text = data.decode()
    except UnicodeDecodeError as exc:
        return _fail_all(n, f"unreadable output {name}: {exc}")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if len(lines) != n:
        return _fail_all(n, f"expected {n} output lines, got {len(lines)}")
    values = np.full(n, np.nan)
    reasons: dict[int, str] = {}
    for i, line in enumerate(lines):
        token, _, message = line.partition(",")
        try:
            values[i] = parse_real(token, overflow=True)
        except ValueError:
            reasons[i] = f"unparsable output line {i + 1}: {_tail(line, 80)!r}"
            continue
        if not math.isfinite(values[i]):
            reasons[i] = message.strip() or f"program returned {token.strip()}"
    return Evaluation(values, reasons)


class CommandOracle(Oracle):
    """Runs ``argv + [in_path, out_path]`` for each batch (or chunk) and reads the values back.

    Args:
        argv: the command, e.g. ``[sys.executable, "simulate.py", "--fast"]``.
        shape: the design shape.
        timeout: seconds per run (``None``: no limit).
        input_format: ``"npy"`` (default) or ``"csv"``.
        output_format: ``"csv"`` (default) or ``"npy"``.
        cwd: working directory of the program (default: the current one).
        env: extra environment variables for the program (added to ``os.environ``).
        workdir: parent folder for the per-call temporary folders (default: the
            system temp dir).
        keep_files: keep each call's folder (for debugging) instead of deleting it.
        name: a label for logs and reports.
        noise_std, negate, seed, executor, chunk_size: see :class:`~oracles.base.Oracle`
            (with an executor each chunk runs the program once; default one point per run).
    """

    def __init__(
        self,
        argv: Sequence[str | os.PathLike[str]],
        shape: Sequence[int],
        *,
        timeout: float | None = 600.0,
        input_format: str = "npy",
        output_format: str = "csv",
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        workdir: str | os.PathLike[str] | None = None,
        keep_files: bool = False,
        name: str = "command",
        **kwargs: Any,
    ) -> None:
        if isinstance(argv, (str, bytes)) or not isinstance(argv, Sequence) or not argv:
            raise TypeError(
                "argv must be a non-empty list of strings, e.g. [sys.executable, 'simulate.py'] "
                f"(no shell string), got {argv!r}"
            )
        if not all(isinstance(a, (str, os.PathLike)) for a in argv):
            raise TypeError(f"every argv entry must be a str or path, got {argv!r}")
        if input_format not in _FORMATS or output_format not in _FORMATS:
            raise ValueError(
                f"input_format and output_format must be one of {_FORMATS}, "
                f"got {input_format!r} and {output_format!r}"
            )
        if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
            raise ValueError(f"timeout must be > 0 seconds or None, got {timeout!r}")
        self.argv = [os.fspath(a) for a in argv]
        self.shape = tuple(int(s) for s in shape)
        self.timeout = None if timeout is None else float(timeout)
        self.input_format = input_format
        self.output_format = output_format
        self.cwd = None if cwd is None else os.fspath(cwd)
        self.env = None if env is None else {str(k): str(v) for k, v in env.items()}
        self.workdir = None if workdir is None else os.fspath(workdir)
        self.keep_files = bool(keep_files)
        self.name = str(name)
        super().__init__(**kwargs)

    # --------------------------------------------------------------------- files
    def write_designs(self, x: torch.Tensor, path: Path) -> None:
        """Write ``x (n, *shape)`` to ``path`` in ``input_format``."""
        arr = x.detach().to("cpu", torch.float64).numpy()
        if self.input_format == "npy":
            np.save(path, arr, allow_pickle=False)
        else:
            np.savetxt(path, arr.reshape(arr.shape[0], -1), delimiter=",", fmt="%.17g")

    def values_size_limit(self, n: int) -> int:
        """Most bytes the values file of ``n`` designs may hold before it is refused unread.

        ``.npy``: 8 bytes per float64 value; ``.csv``: :data:`CSV_BYTES_PER_VALUE`
        per line; both plus :data:`VALUES_SLACK_BYTES`. A larger file cannot be a
        valid answer (or carries reasons nobody reads), and reading it whole
        could exhaust the caller's memory.
        """
        per_value = 8 if self.output_format == "npy" else CSV_BYTES_PER_VALUE
        return n * per_value + VALUES_SLACK_BYTES

    def read_values(self, path: Path, n: int) -> Evaluation:
        """Parse the program's output for ``n`` designs (see the module docstring)."""
        if path.is_symlink() or (path.exists() and not path.is_file()):
            return _fail_all(n, f"output {path.name} is not a regular file (a folder or a link)")
        if not path.is_file():
            return _fail_all(n, f"no output file {path.name} written")
        limit = self.values_size_limit(n)
        try:
            data = _read_bounded(path, limit)
        except OSError as exc:
            return _fail_all(n, f"unreadable output {path.name}: {exc}")
        if data is None:
            return _fail_all(
                n,
                f"output {path.name} is larger than the {limit} bytes that {n} values may take "
                f"({path.stat().st_size} bytes); not read",
            )
        if self.output_format == "npy":
            return _parse_npy(data, path.name, n)
        return _parse_csv(data, path.name, n)

    # ---------------------------------------------------------------- evaluation
    def _run(self, args: list[str], folder: Path) -> _Run:
        """Run ``args`` in its own process group, output to temporary files in ``folder``.

        Raises:
            OSError: the program could not be started.
        """
        env = None if self.env is None else {**os.environ, **self.env}
        with (
            tempfile.TemporaryFile(dir=folder) as out,
            tempfile.TemporaryFile(dir=folder) as err,
        ):
            proc = subprocess.Popen(
                args,
                shell=False,
                cwd=self.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=_POSIX,
            )
            returncode = wait_or_kill(proc, self.timeout)
            return _Run(returncode, read_tail(out), read_tail(err))

    def _evaluate(self, x: torch.Tensor) -> Evaluation:
        """Values of ``x (n, *shape)`` from one run of the program; failures as reasons."""
        n = x.shape[0]
        tmp = tempfile.mkdtemp(prefix="sqdf-oracle-", dir=self.workdir)
        folder = Path(tmp)
        in_path = folder / f"designs.{self.input_format}"
        out_path = folder / f"values.{self.output_format}"
        try:
            self.write_designs(x, in_path)
            try:
                run = self._run([*self.argv, str(in_path), str(out_path)], folder)
            except OSError as exc:
                return _fail_all(n, f"could not start {self.argv[0]!r}: {exc}")
            if run.returncode is None:
                return _fail_all(n, _reason(f"timeout after {self.timeout:g} s", run))
            if run.returncode != 0:
                return _fail_all(n, _reason(f"exit status {run.returncode}", run))
            return self.read_values(out_path, n)
        finally:
            if not self.keep_files:
                for p in (in_path, out_path):
                    if p.is_symlink() or p.is_file():  # a folder the program made stays
                        p.unlink()
                # the program left other files: keep the folder for inspection
                with contextlib.suppress(OSError):
                    folder.rmdir()
