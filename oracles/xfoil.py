"""Airfoils scored by XFoil (Drela's panel and boundary-layer code): the :class:`XFoilOracle`.

XFoil 6.99 is a system program (Debian/Ubuntu: ``apt-get install xfoil``), not a Python
package. Designs are the same 18-number Kulfan vectors as :class:`~oracles.airfoil.NeuralFoilOracle`'s
(or standardized ones), and the same geometry rules apply before XFoil runs.

One design, one run (:func:`run_xfoil`), in a temporary folder of its own (XFoil reads
``xfoil.def`` and writes scratch files such as ``:00.bl`` into its working directory):

1. the outline (:func:`~oracles.airfoil.kulfan_coordinates`, :data:`OUTLINE_POINTS_PER_SIDE`
   cosine-spaced stations per side, 601 points; a negative trailing-edge gap, which the
   geometry rules tolerate up to ``intersection_tol``, closed to 0) is written as a
   labelled ``.dat`` file, and ``xfoil.def`` sets the panel count;
2. XFoil reads its commands on stdin: load, ``PANE`` (repanel to ``panels`` nodes by
   curvature), ``OPER``, ``VISC Re``, ``VPAR`` ``N n_crit``, ``ITER max_iter``, ``ALFA alpha``;
3. the result is read from stdout: the last iteration's ``CL``, ``CD`` and ``Cm``; it counts
   only when the last boundary-layer residual (``rms``) is below XFoil's own convergence
   threshold 1e-4 (:data:`XFOIL_EPS1`) and XFoil did not print ``VISCAL:  Convergence failed``.

**Headless.** The Debian build traps floating-point exceptions, and with graphics switched
off (``PLOP``, ``G``) its viscous iteration stops on one (SIGFPE) before converging. With
graphics left on and no X display, XFoil solves the operating point, prints the result, and
exits with ``Cannot open display...aborting`` when it tries to plot it. So the run's
environment has no ``DISPLAY`` (no window ever opens), one α is solved per process, and the
exit status does not decide success: the printed, converged result does.

A design fails (NaN and a reason, never an exception) when its geometry is invalid (no XFoil
run; the rules of :func:`~oracles.airfoil.geometry_failures`), when XFoil does not converge,
exits or crashes without a converged result, runs past ``timeout`` (its process group is
killed), prints something unparsable, or returns a non-finite CL or a CD ≤ 0. XFoil also
refuses outlines with an excessive angle between panels (a kink, or a leading edge too sharp
for the points given): it warns at load and stops when it tries to plot the warning.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sqdf_bbo.config import check_fields
from sqdf_bbo.data import KULFAN_DIM, KulfanStandardization

from .airfoil import geometry_failures, kulfan_coordinates, kulfan_thickness
from .base import Evaluation, Oracle
from .command import read_tail, wait_or_kill

__all__ = [
    "XFoilConfig",
    "XFoilResult",
    "XFoilOracle",
    "XFOIL_EPS1",
    "OUTLINE_POINTS_PER_SIDE",
    "find_xfoil",
    "xfoil_script",
    "xfoil_defaults",
    "parse_xfoil_output",
    "run_xfoil",
    "xfoil_aero",
]

#: XFoil's convergence threshold on the boundary-layer rms residual (``EPS1`` in ``VISCAL``).
XFOIL_EPS1 = 1e-4
#: Stations per side of the outline given to XFoil (it repanels to ``panels`` nodes). Fewer
#: make XFoil reject sharp leading edges of the database's Kulfan fits for a panel angle:
#: 27 of the 2174 at 81 per side, 8 at 161, none at 301; L/D moves by a median 0 and a 95th
#: percentile 0.3 % from 161 to 301 (measured at alpha 5, Re 1e6).
OUTLINE_POINTS_PER_SIDE = 301
#: Bytes of XFoil's output kept for parsing (a 100-iteration run prints ~30 kB).
OUTPUT_BYTES = 256 * 1024
_INSTALL = "install it with `apt-get install xfoil` (Debian/Ubuntu) or pass executable=<path>"
_RMS = re.compile(r"^\s*(\d+)\s+rms:\s*(\S+)", re.MULTILINE)
_CL = re.compile(r"\ba =\s*(\S+)\s+CL =\s*(\S+)")
_CD = re.compile(r"\bCm =\s*(\S+)\s+CD =\s*(\S+)")
_NOT_CONVERGED = "VISCAL:  Convergence failed"
_CRASH = re.compile(r"Program received signal .*")
_PANEL_ANGLE = re.compile(r"Excessive panel angle\s+(\S+)\s+at i =\s*(\d+)")


@dataclass(frozen=True)
class XFoilConfig:
    """Operating point, solver settings and validity rules of an XFoil run.

    Attributes:
        alpha: angle of attack in degrees (one per run).
        Re: chord Reynolds number (> 0).
        n_crit: e^n transition amplification factor (9 = average wind tunnel).
        panels: panel nodes after repaneling (``PANE``; XFoil's default 160, at most 368).
        max_iter: viscous iterations before XFoil gives up (``ITER``).
        timeout: seconds one run may take before its process group is killed.
        min_thickness: smallest valid t_max in chord units; ``None`` disables the check
            (the oracle's rule; :func:`xfoil_aero` runs every finite design).
        intersection_tol: how far (chord) the upper surface may dip below the lower one.
        executable: the XFoil program, a name on ``PATH`` or a path.
    """

    alpha: float = 5.0
    Re: float = 1e6
    n_crit: float = 9.0
    panels: int = 160
    max_iter: int = 100
    timeout: float = 30.0
    min_thickness: float | None = 0.12
    intersection_tol: float = 1e-3
    executable: str = "xfoil"

    def __post_init__(self) -> None:
        check_fields(self)
        if not math.isfinite(self.alpha) or not -90 < self.alpha < 90:
            raise ValueError(f"alpha must be a finite angle in (-90, 90) degrees, got {self.alpha}")
        if not self.Re > 0 or not self.n_crit > 0 or self.intersection_tol < 0:
            raise ValueError(
                f"need Re > 0, n_crit > 0 and intersection_tol >= 0; got Re={self.Re}, "
                f"n_crit={self.n_crit}, intersection_tol={self.intersection_tol}"
            )
        if not 20 <= self.panels <= 368:  # 6.99's arrays: 370 nodes, 2 for the trailing edge
            raise ValueError(f"panels must lie in [20, 368] (XFoil's limit), got {self.panels}")
        if self.max_iter < 1:
            raise ValueError(f"max_iter must be >= 1, got {self.max_iter}")
        if not (math.isfinite(self.timeout) and self.timeout > 0):
            raise ValueError(f"timeout must be > 0 seconds, got {self.timeout}")
        if self.min_thickness is not None and not 0 <= self.min_thickness < 1:
            raise ValueError(
                f"min_thickness must lie in [0, 1) or be None, got {self.min_thickness}"
            )
        if not self.executable.strip():
            raise ValueError("executable must name the XFoil program, got an empty string")


@dataclass(frozen=True)
class XFoilResult:
    """One XFoil run: CL, CD, CM (NaN when it failed), whether it converged, why it failed
    (``""`` when it did not), and the wall time of the XFoil process."""

    CL: float
    CD: float
    CM: float
    converged: bool
    failure: str
    seconds: float

    @property
    def LD(self) -> float:
        """CL / CD (NaN when the run failed)."""
        return self.CL / self.CD if self.converged else math.nan


def find_xfoil(executable: str = "xfoil") -> str:
    """The path of ``executable``; a :class:`FileNotFoundError` that says how to install it."""
    path = shutil.which(executable)
    if path is None:
        raise FileNotFoundError(f"XFoil not found: {executable!r} is not an executable; {_INSTALL}")
    return path


def xfoil_defaults(config: XFoilConfig) -> str:
    """The ``xfoil.def`` settings file of a run: XFoil's defaults with ``panels``, Re, n_crit.

    XFoil reads it at start (the only way to set the panel count without its plotting menu).
    """
    return "\n".join(
        [
            f"  {config.panels:4d}       1.0000   0.1500   0.2000 | Npan    PPanel  TErat  REFrat",
            "    1.0000   1.0000   1.0000   1.0000 | XrefS1  XrefS2  XrefP1 XrefP2",
            "   10.0000   0.5500   0.0150   0.8000 | Size    plotAR  CHsize ScrnFr",
            "   11.0000   8.5000   0.0000   0.0000 | Xpage   Ypage   Xmargn Ymargn",
            "  T        T                          | Lcolor  Lcursor",
            "    1.0000  -2.0000  -0.5000          | CPmax   CPmin   CPdel",
            "    0.0900   0.7000   0.0200          | XoffAir ScalAir BLUwt",
            "    0.0000   1.5000   0.5000          | CLmin   CLmax   CLdel",
            "    0.0000   0.0400   0.0100          | CDmin   CDmax   CDdel",
            "   -4.0000  10.0000   2.0000          | ALmin   ALmax   ALdel",
            "   -0.2500   0.0000   0.0500          | CMmin   CMmax   CMdel",
            "   1         0.0000   0.0100          | MAtype  Mach    Vaccel",
            f"   1     {config.Re / 1e6:10.6f} {config.n_crit:8.4f} {config.n_crit:8.4f}"
            " | REtype  Re/10^6 Ncrit1 Ncrit2",
            "    1.0000   1.0000                   | XtripT  XtripB",
            "",
        ]
    )


def xfoil_script(config: XFoilConfig, airfoil_file: str = "airfoil.dat") -> str:
    """XFoil's stdin for one run: answer its ``xfoil.def`` question, load, repanel, solve one α."""
    lines = [
        "Y",  # "Read settings from file xfoil.def ?"
        f"LOAD {airfoil_file}",
        "PANE",
        "OPER",
        f"VISC {config.Re:.10g}",
        "VPAR",
        f"N {config.n_crit:.10g}",
        "",
        f"ITER {config.max_iter}",
        f"ALFA {config.alpha:.10g}",
        "",
        "QUIT",
        "",
    ]
    return "\n".join(lines)


def _status(returncode: int | None) -> str:
    """``exit status N``, ``signal SIGxxx`` or ``killed`` for a finished process."""
    if returncode is None:
        return "killed"
    if returncode < 0:
        with_name = {s.value: s.name for s in signal.Signals}
        return f"signal {with_name.get(-returncode, -returncode)}"
    return f"exit status {returncode}"


def _tail(text: str, lines: int = 3) -> str:
    """The last ``lines`` non-empty lines of ``text``, joined by `` / ``."""
    kept = [ln.strip() for ln in text.splitlines() if ln.strip()][-lines:]
    return " / ".join(kept)


def _failed(reason: str) -> tuple[float, float, float, bool, str]:
    return math.nan, math.nan, math.nan, False, reason


def parse_xfoil_output(
    text: str, returncode: int | None = 0
) -> tuple[float, float, float, bool, str]:
    """``(CL, CD, CM, converged, failure)`` from the stdout of one single-α XFoil run.

    The result is the last printed iteration's ``CL``, ``CD``, ``Cm``; it is accepted when
    the last ``rms`` is below :data:`XFOIL_EPS1` and ``VISCAL:  Convergence failed`` was not
    printed. ``returncode`` only words the reason of a failure (XFoil 6.99 exits with status 1
    or a signal after printing a good result, see the module docstring).
    """
    rms, cl, cd = _RMS.findall(text), _CL.findall(text), _CD.findall(text)
    # 1. no iteration printed: the outline was refused, or XFoil stopped before solving
    if not rms or not cl or not cd:
        kink = _PANEL_ANGLE.search(text)
        if kink:  # XFoil warns at LOAD and stops when it tries to plot the outline
            return _failed(
                f"outline rejected by XFoil: excessive panel angle {kink.group(1)} deg at node "
                f"{kink.group(2)} (a kink, or a leading edge too sharp for the points)"
            )
        crash = _CRASH.search(text)
        detail = crash.group(0).strip() if crash else _tail(text)
        return _failed(
            f"no XFoil result ({_status(returncode)})" + (f": {detail}" if detail else "")
        )
    # 2. converged: the last residual below XFoil's threshold, no "Convergence failed"
    iterations, last = int(rms[-1][0]), rms[-1][1]
    try:
        last_rms = float(last)
    except ValueError:
        return _failed(f"malformed XFoil output: rms {last!r}")
    if _NOT_CONVERGED in text or not last_rms < XFOIL_EPS1:
        how = (
            f"{iterations} iterations ({_NOT_CONVERGED.replace('  ', ' ')})"
            if _NOT_CONVERGED in text
            else f"{iterations} iterations, then XFoil stopped ({_status(returncode)})"
        )
        return _failed(f"not converged after {how}; last rms {last_rms:.2e}")
    # 3. the converged iteration's coefficients
    try:
        lift, drag, moment = float(cl[-1][1]), float(cd[-1][1]), float(cd[-1][0])
    except ValueError:
        return _failed(
            f"malformed XFoil output: CL {cl[-1][1]!r}, CD {cd[-1][1]!r}, Cm {cd[-1][0]!r}"
        )
    if not (math.isfinite(lift) and math.isfinite(moment) and math.isfinite(drag) and drag > 0):
        return _failed(f"non-physical XFoil result CL={lift}, CD={drag}, CM={moment}")
    return lift, drag, moment, True, ""


def run_xfoil(coordinates: np.ndarray, config: XFoilConfig | None = None) -> XFoilResult:
    """One XFoil run on an outline ``coordinates (m, 2)`` (x, y; TE → upper → LE → lower → TE).

    Runs in a temporary folder (removed afterwards), stdin from a command file, stdout and
    stderr to a file, in a process group of its own that is killed at ``config.timeout``.
    Never raises for a failed run: the reason is in :attr:`XFoilResult.failure`.
    """
    config = config or XFoilConfig()
    xy = np.asarray(coordinates, dtype=np.float64)
    if xy.ndim != 2 or xy.shape[1] != 2 or xy.shape[0] < 3:
        raise ValueError(f"coordinates must have shape (m >= 3, 2), got {xy.shape}")
    nan = math.nan
    if not np.isfinite(xy).all():
        return XFoilResult(nan, nan, nan, False, "non-finite coordinates", 0.0)
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}  # never open a window
    with tempfile.TemporaryDirectory(prefix="sqdf-xfoil-") as tmp:
        folder = Path(tmp)
        body = "\n".join(f"{x:.8f} {y:.8f}" for x, y in xy)
        (folder / "airfoil.dat").write_text(f"sqdf-bbo airfoil\n{body}\n")
        (folder / "xfoil.def").write_text(xfoil_defaults(config))
        (folder / "commands.txt").write_text(xfoil_script(config))
        t0 = time.perf_counter()
        with (
            (folder / "commands.txt").open("rb") as stdin,
            tempfile.TemporaryFile(dir=folder) as out,
        ):
            try:
                proc = subprocess.Popen(
                    [config.executable],
                    cwd=folder,
                    env=env,
                    stdin=stdin,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=os.name == "posix",
                )
            except OSError as exc:
                reason = f"could not start {config.executable!r}: {exc}; {_INSTALL}"
                return XFoilResult(nan, nan, nan, False, reason, 0.0)
            returncode = wait_or_kill(proc, config.timeout)
            seconds = time.perf_counter() - t0
            text = read_tail(out, OUTPUT_BYTES)
    if returncode is None:
        return XFoilResult(nan, nan, nan, False, f"timeout after {config.timeout:g} s", seconds)
    cl, cd, cm, converged, failure = parse_xfoil_output(text, returncode)
    return XFoilResult(cl, cd, cm, converged, failure, seconds)


def _as_kulfan(k: Any) -> np.ndarray:
    """Kulfan vectors as float64 ``(n, 18)`` (a single ``(18,)`` vector gets n = 1)."""
    if isinstance(k, torch.Tensor):
        k = k.detach().cpu().numpy()
    arr = np.asarray(k, dtype=np.float64)
    arr = arr[None] if arr.ndim == 1 else arr
    if arr.ndim != 2 or arr.shape[1] != KULFAN_DIM:
        raise ValueError(f"Kulfan vectors must have shape (n, {KULFAN_DIM}), got {arr.shape}")
    return arr


def xfoil_aero(k: Any, config: XFoilConfig | None = None, *, workers: int = 1) -> dict[str, Any]:
    """XFoil at one operating point for Kulfan vectors ``k (n, 18)``, one process each.

    Every finite design is run (no thickness rule: that is the oracle's), with a negative
    trailing-edge gap τ closed (τ = 0): XFoil dies of SIGFPE on a crossed trailing edge,
    which the geometry rules accept up to ``intersection_tol`` (15 of 109 valid prior
    samples had τ in [−0.0005, 0) and crashed before this). ``workers``
    processes run at a time (threads waiting on them). Returns ``{"CL", "CD", "CM", "LD",
    "seconds"}`` (each ``(n,)`` float64, NaN where the run failed), ``"converged"`` (``(n,)``
    bool) and ``"failure"`` (``(n,)`` object: the reason or ``""``).
    """
    config = config or XFoilConfig()
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an int >= 1, got {workers!r}")
    kk = _as_kulfan(k).copy()
    kk[:, 17] = np.maximum(kk[:, 17], 0.0)  # close a crossed trailing edge
    n = kk.shape[0]
    outlines = kulfan_coordinates(kk, OUTLINE_POINTS_PER_SIDE) if n else np.zeros((0, 3, 2))
    if workers == 1 or n <= 1:
        results = [run_xfoil(xy, config) for xy in outlines]
    else:
        with ThreadPoolExecutor(max_workers=min(workers, n)) as pool:
            results = list(pool.map(lambda xy: run_xfoil(xy, config), outlines))
    out: dict[str, Any] = {
        key: np.array([getattr(r, key) for r in results], dtype=np.float64).reshape(n)
        for key in ("CL", "CD", "CM", "LD", "seconds")
    }
    out["converged"] = np.array([r.converged for r in results], dtype=bool).reshape(n)
    out["failure"] = np.array([r.failure for r in results], dtype=object).reshape(n)
    return out


class XFoilOracle(Oracle):
    """Lift-to-drag ratio CL / CD of an airfoil by XFoil, one process per design.

    Designs have shape ``(n, 18)``: Kulfan vectors, or standardized vectors when
    ``standardization`` is given (then k = mean + std · z first). Invalid geometry is a
    failed point without an XFoil run; so are runs that do not converge, crash, time out or
    print nothing usable (module docstring).

    Parallelism: without an ``executor`` a batch runs ``workers`` XFoil processes at a time
    (threads of this process wait on them; default 1). With an ``executor`` (a thread pool, or
    a Dask cluster through :func:`oracles.cluster.dask_executor`) each chunk of ``chunk_size``
    designs is one job that runs its designs ``workers`` at a time on its worker.

    Args:
        alpha, Re, n_crit, panels, max_iter, timeout, min_thickness, intersection_tol,
            executable: see :class:`XFoilConfig`.
        workers: XFoil processes run at a time per batch or chunk.
        standardization: map from designs to Kulfan vectors, or ``None``.
        noise_std, negate, seed, executor, chunk_size, progress: see
            :class:`~oracles.base.Oracle`.

    Raises:
        FileNotFoundError: ``executable`` is not found (with the install command).
    """

    name = "xfoil"
    shape = (KULFAN_DIM,)

    def __init__(
        self,
        *,
        alpha: float = 5.0,
        Re: float = 1e6,
        n_crit: float = 9.0,
        panels: int = 160,
        max_iter: int = 100,
        timeout: float = 30.0,
        min_thickness: float | None = 0.12,
        intersection_tol: float = 1e-3,
        executable: str = "xfoil",
        workers: int = 1,
        standardization: KulfanStandardization | None = None,
        **kwargs: Any,
    ) -> None:
        self.config = XFoilConfig(
            alpha=alpha,
            Re=Re,
            n_crit=n_crit,
            panels=panels,
            max_iter=max_iter,
            timeout=timeout,
            min_thickness=min_thickness,
            intersection_tol=intersection_tol,
            executable=executable,
        )
        find_xfoil(executable)
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
            raise ValueError(f"workers must be an int >= 1, got {workers!r}")
        if standardization is not None and not isinstance(standardization, KulfanStandardization):
            raise TypeError(
                "standardization must be a KulfanStandardization or None, "
                f"got {type(standardization).__name__}"
            )
        self.workers = workers
        self.standardization = standardization
        super().__init__(**kwargs)

    def kulfan(self, x: torch.Tensor | np.ndarray) -> np.ndarray:
        """Kulfan vectors ``(n, 18)`` float64 of designs ``x (n, 18)``."""
        arr = _as_kulfan(x)
        return arr if self.standardization is None else self.standardization.to_kulfan(arr)

    def analyze(self, x: torch.Tensor | np.ndarray) -> dict[str, Any]:
        """Everything known about designs ``x (n, 18)`` at this oracle's operating point.

        Returns ``{"CL", "CD", "CM", "LD", "t_max", "seconds"}`` (each ``(n,)`` float64, NaN
        where the geometry is invalid or XFoil failed; ``seconds`` 0 without a run),
        ``"converged"`` (``(n,)`` bool) and ``"failure"`` (``(n,)`` object: the reason or
        ``""``).
        """
        c = self.config
        k = self.kulfan(x)
        n = k.shape[0]
        failures = geometry_failures(k, c.min_thickness, c.intersection_tol)
        out: dict[str, Any] = {key: np.full(n, np.nan) for key in ("CL", "CD", "CM", "LD", "t_max")}
        out["seconds"] = np.zeros(n)
        out["converged"] = np.zeros(n, dtype=bool)
        finite = np.isfinite(k).all(1)
        if finite.any():
            out["t_max"][finite] = kulfan_thickness(k[finite]).max(1)
        ok = np.array([i not in failures for i in range(n)], dtype=bool)
        if ok.any():
            aero = xfoil_aero(k[ok], c, workers=self.workers)
            for key in ("CL", "CD", "CM", "LD", "seconds", "converged"):
                out[key][ok] = aero[key]
            for i, reason in zip(np.flatnonzero(ok), aero["failure"]):
                if reason:
                    failures[int(i)] = str(reason)
        out["failure"] = np.array([failures.get(i, "") for i in range(n)], dtype=object)
        return out

    def _evaluate(self, x: torch.Tensor) -> Evaluation:
        """L/D of ``x (m, 18)``; failed points as NaN with their reasons."""
        res = self.analyze(x)
        reasons = {i: str(r) for i, r in enumerate(res["failure"]) if r}
        values = res["LD"].copy()
        values[list(reasons)] = np.nan
        return Evaluation(values, reasons)

    def __repr__(self) -> str:
        c = self.config
        return (
            f"XFoilOracle(alpha={c.alpha}, Re={c.Re:g}, n_crit={c.n_crit}, panels={c.panels}, "
            f"max_iter={c.max_iter}, timeout={c.timeout}, min_thickness={c.min_thickness}, "
            f"workers={self.workers}, standardized={self.standardization is not None}, "
            f"noise_std={self.noise_std}, seed={self.seed})"
        )
