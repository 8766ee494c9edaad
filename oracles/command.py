"""An external program (a simulator, a lab's scoring script) as an oracle.

Protocol, per batch (or per chunk with an executor):

1. the designs are written to ``<dir>/designs.npy`` (float64 array of shape
   ``(n, *shape)``) or ``<dir>/designs.csv`` (``n`` lines, each the ``prod(shape)``
   flattened coordinates in C order, comma-separated, full precision);
2. the program runs as ``argv + [in_path, out_path]`` with
   ``subprocess.run(..., shell=False)`` — paths are arguments, never spliced
   into a shell string;
3. it writes ``out_path``: ``values.csv`` (default) — ``n`` non-empty lines,
   line ``i`` being ``value`` or ``value,reason`` (``nan`` marks a failed
   point; the optional reason is kept) — or ``values.npy`` (float64 ``(n,)``);
4. a timeout, a non-zero exit status, a missing or unreadable output file,
   or a wrong number of values fails every point of that call; an unparsable
   line fails that point only. Reasons land in ``oracle.failures``.
"""

from __future__ import annotations

import contextlib
import math
import os
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .base import Evaluation, Oracle

__all__ = ["CommandOracle"]

_FORMATS = ("npy", "csv")


def _tail(text: str | bytes | None, limit: int = 300) -> str:
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    text = text.strip()
    return text if len(text) <= limit else "…" + text[-limit:]


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

    def read_values(self, path: Path, n: int) -> Evaluation:
        """Parse the program's output for ``n`` designs (see the module docstring)."""
        everyone = dict.fromkeys(range(n))
        if not path.is_file():
            return Evaluation(
                np.full(n, np.nan), {i: f"no output file {path.name} written" for i in everyone}
            )
        if self.output_format == "npy":
            try:
                arr = np.load(path, allow_pickle=False)
                values = np.asarray(arr, dtype=np.float64).reshape(-1)
            except Exception as exc:  # noqa: BLE001
                return Evaluation(
                    np.full(n, np.nan),
                    {i: f"unreadable output {path.name}: {exc}" for i in everyone},
                )
            if values.shape[0] != n:
                return Evaluation(
                    np.full(n, np.nan),
                    {i: f"expected {n} output values, got {values.shape[0]}" for i in everyone},
                )
            return Evaluation(values)
        try:
            lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
        except (OSError, UnicodeDecodeError) as exc:
            return Evaluation(
                np.full(n, np.nan), {i: f"unreadable output {path.name}: {exc}" for i in everyone}
            )
        if len(lines) != n:
            return Evaluation(
                np.full(n, np.nan),
                {i: f"expected {n} output lines, got {len(lines)}" for i in everyone},
            )
        values = np.full(n, np.nan)
        reasons: dict[int, str] = {}
        for i, line in enumerate(lines):
            token, _, message = line.partition(",")
            try:
                values[i] = float(token)
            except ValueError:
                reasons[i] = f"unparsable output line {i + 1}: {_tail(line, 80)!r}"
                continue
            if not math.isfinite(values[i]):
                reasons[i] = message.strip() or f"program returned {token.strip()}"
        return Evaluation(values, reasons)

    # ---------------------------------------------------------------- evaluation
    def _evaluate(self, x: torch.Tensor) -> Evaluation:
        n = x.shape[0]

        def fail_all(reason: str) -> Evaluation:
            return Evaluation(np.full(n, np.nan), dict.fromkeys(range(n), reason))

        tmp = tempfile.mkdtemp(prefix="sqdf-oracle-", dir=self.workdir)
        folder = Path(tmp)
        in_path = folder / f"designs.{self.input_format}"
        out_path = folder / f"values.{self.output_format}"
        try:
            self.write_designs(x, in_path)
            env = None if self.env is None else {**os.environ, **self.env}
            try:
                proc = subprocess.run(
                    [*self.argv, str(in_path), str(out_path)],
                    shell=False,
                    cwd=self.cwd,
                    env=env,
                    capture_output=True,
                    timeout=self.timeout,
                    check=False,
                )
            except subprocess.TimeoutExpired as exc:
                return fail_all(
                    f"timeout after {self.timeout:g} s: {_tail(exc.stderr)}".rstrip(": ")
                )
            except OSError as exc:
                return fail_all(f"could not start {self.argv[0]!r}: {exc}")
            if proc.returncode != 0:
                return fail_all(f"exit status {proc.returncode}: {_tail(proc.stderr)}".rstrip(": "))
            return self.read_values(out_path, n)
        finally:
            if not self.keep_files:
                for p in (in_path, out_path):
                    p.unlink(missing_ok=True)
                # the program left other files: keep the folder for inspection
                with contextlib.suppress(OSError):
                    folder.rmdir()
