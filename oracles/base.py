"""The :class:`Oracle` base: the expensive black box, evaluated in batches.

An oracle maps a batch of designs ``x (n, *shape)`` to values ``(n,)``
(float64) that the optimizer **maximizes**. The base does everything but the
evaluation itself (BoTorch ``test_functions/base.py`` style):

1. checks the batch shape;
2. evaluates it through the one required hook ``_evaluate(x) -> (n,)``, serially
   or in chunks on any ``concurrent.futures.Executor``;
3. turns every failure into NaN: an exception raised by ``_evaluate`` for the
   whole batch is retried point by point to isolate the failing points; a
   non-finite value, or a reason reported through :class:`Evaluation`, marks
   that point failed; the reasons land in ``oracle.failures`` (last call) and
   ``oracle.failure_log`` (all calls) — a point's failure never raises. A failure of the
   executor itself (a worker died, the chunk could not be pickled, no result within
   ``chunk_timeout``) says nothing about the design: such points are also listed in
   ``oracle.transient_failures``; reasons from
   ``_evaluate`` and non-finite values are design failures;
4. adds observation noise ``N(0, noise_std²)`` from the oracle's own seeded
   generator (one draw per point, failed or not, so the stream does not depend
   on which points failed);
5. negates when ``negate=True`` (``y = −(f(x) + ε)``, BoTorch's order).

A subclass declares ``shape`` (and optionally ``bounds``, ``optimal_value``,
``name``) and implements ``_evaluate``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from sqdf_bbo.progress import progress_bar

__all__ = ["Oracle", "DifferentiableOracle", "Evaluation", "ChunkTimeout", "evaluate_chunk"]


class ChunkTimeout(Exception):
    """A job submitted to the executor gave no result within the oracle's ``chunk_timeout``."""


@dataclass
class Evaluation:
    """What ``_evaluate`` may return instead of a plain tensor.

    Attributes:
        values: ``(n,)`` values; NaN where a point failed.
        reasons: ``{local index: reason}`` of the failed points.
    """

    values: torch.Tensor | np.ndarray | list[float]
    reasons: dict[int, str] = field(default_factory=dict)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def evaluate_chunk(oracle: Oracle, x: torch.Tensor) -> tuple[np.ndarray, dict[int, str]]:
    """Evaluate one chunk ``x (m, *shape)`` noise-free; never raises.

    Module-level so that process pools can pickle it. Returns float64 values
    ``(m,)`` (NaN for failed points) and ``{local index: reason}``.
    """
    m = x.shape[0]
    try:
        return _checked(oracle._evaluate(x), m)
    except Exception as exc:  # noqa: BLE001 - a failure of the black box becomes NaN
        if m == 1:
            return np.full(1, np.nan), {0: _describe(exc)}
        # isolate the failing points: evaluate one by one
        values = np.full(m, np.nan)
        reasons: dict[int, str] = {}
        for i in range(m):
            try:
                v, r = _checked(oracle._evaluate(x[i : i + 1]), 1)
                values[i] = v[0]
                if r:
                    reasons[i] = r[0]
            except Exception as point_exc:  # noqa: BLE001
                reasons[i] = _describe(point_exc)
        return values, reasons


def _checked(out: Any, m: int) -> tuple[np.ndarray, dict[int, str]]:
    """Validate ``_evaluate``'s output: ``(m,)`` values, non-finite → failed with a reason."""
    reasons: dict[int, str] = {}
    if isinstance(out, Evaluation):
        reasons = {int(k): str(v) for k, v in out.reasons.items()}
        out = out.values
    if isinstance(out, torch.Tensor):
        out = out.detach().to("cpu", torch.float64).numpy()
    values = np.asarray(out, dtype=np.float64).reshape(-1) if np.ndim(out) <= 1 else None
    if values is None or values.shape[0] != m:
        got = np.shape(out)
        raise ValueError(f"_evaluate must return {m} values (shape ({m},)), got shape {got}")
    values = values.copy()
    for i in np.flatnonzero(~np.isfinite(values)):
        reasons.setdefault(int(i), f"non-finite value {values[i]}")
    for i in reasons:
        values[i] = np.nan
    return values, reasons


class Oracle(ABC):
    """A batch black box ``x (n, *shape) -> (n,)`` float64 to maximize; NaN marks a failed point.

    Args:
        noise_std: σ of the additive observation noise ``N(0, σ²)`` (0: exact).
        negate: return ``−f`` (turns a minimization problem into maximization).
        seed: seed of the oracle's generator (the noise).
        executor: optional ``concurrent.futures.Executor`` (thread pool,
            process pool, a cluster executor); chunks are submitted to it.
            For process pools the oracle must be picklable (the executor and
            the generator are not sent).
        chunk_size: points per submitted job; default 1 (one job per point)
            with an executor, the whole batch without.
        chunk_timeout: seconds to wait for each submitted job's result (needs an
            ``executor``; ``None``: no limit). A job without a result in time (it hangs,
            its worker was stopped or lost) is cancelled and its points fail with the
            reason ``"executor: no result within ... s (chunk_timeout)"``, as transient
            failures. Results are awaited in submission order, each for at most
            ``chunk_timeout`` after the previous one came back, so a call with k stuck
            jobs returns after about k × ``chunk_timeout``. A cancelled job may keep
            running where the executor cannot stop it (a thread, a running Dask task).
        progress: show a tqdm bar over the chunks of each call (slow simulators).

    Attributes:
        failures: ``{index in the last batch: reason}`` of the last call.
        transient_failures: the indices of the last call's failures that say nothing about
            the design (executor failures: ``"executor: ..."`` reasons); the others are
            design failures. ``Optimizer.run`` tells both with the values.
        failure_log: every failure so far as ``(call number, index, reason, transient)``.
        n_calls, n_evaluations: batches and points evaluated so far.
    """

    name: ClassVar[str] = "oracle"
    shape: tuple[int, ...] = ()
    bounds: tuple[float, float] | None = None
    _optimal_value: float | None = None

    def __init__(
        self,
        *,
        noise_std: float = 0.0,
        negate: bool = False,
        seed: int = 0,
        executor: Executor | None = None,
        chunk_size: int | None = None,
        chunk_timeout: float | None = None,
        progress: bool = False,
    ) -> None:
        if not (
            isinstance(noise_std, (int, float)) and math.isfinite(noise_std) and noise_std >= 0
        ):
            raise ValueError(f"noise_std must be a finite number >= 0, got {noise_std!r}")
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise TypeError(f"seed must be an int, got {type(seed).__name__}")
        if executor is not None and not isinstance(executor, Executor):
            raise TypeError(
                f"executor must be a concurrent.futures.Executor, got {type(executor).__name__}"
            )
        if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
            raise ValueError(f"chunk_size must be an int >= 1 or None, got {chunk_size!r}")
        if chunk_timeout is not None:
            if isinstance(chunk_timeout, bool) or not isinstance(chunk_timeout, (int, float)):
                raise TypeError(f"chunk_timeout must be a number, got {chunk_timeout!r}")
            if not (math.isfinite(chunk_timeout) and chunk_timeout > 0):
                raise ValueError(
                    f"chunk_timeout must be a finite number > 0, got {chunk_timeout!r}"
                )
            if executor is None:
                raise ValueError(
                    "chunk_timeout needs an executor: a call in this process cannot be "
                    "interrupted (run the jobs on a thread or process pool, or use "
                    "CommandOracle's own timeout)"
                )
        self.shape = tuple(int(s) for s in self.shape)
        if not self.shape or any(s < 1 for s in self.shape):
            raise ValueError(
                f"{type(self).__name__}.shape must be a non-empty tuple of sizes >= 1, got {self.shape}"
            )
        self.noise_std = float(noise_std)
        self.negate = bool(negate)
        self.seed = seed
        self.executor = executor
        self.chunk_size = chunk_size
        self.chunk_timeout = None if chunk_timeout is None else float(chunk_timeout)
        self.progress = bool(progress)
        self.generator = torch.Generator().manual_seed(seed)
        self.failures: dict[int, str] = {}
        self.transient_failures: set[int] = set()
        self.failure_log: list[tuple[int, int, str, bool]] = []
        self.n_calls = 0
        self.n_evaluations = 0

    # ------------------------------------------------------------------ pickling
    def __getstate__(self) -> dict[str, Any]:
        """Workers get the oracle without its executor, generator and logs (noise is added by the caller)."""
        state = self.__dict__.copy()
        state["executor"] = None
        state["generator"] = None
        state["failure_log"] = []
        return state

    # ------------------------------------------------------------------ properties
    @property
    def dim(self) -> int:
        """Number of design coordinates, ``prod(shape)``."""
        return math.prod(self.shape)

    @property
    def last_failures(self) -> dict[int, str]:
        """Alias of :attr:`failures` (reasons of the last call's failed points)."""
        return self.failures

    @property
    def optimal_value(self) -> float | None:
        """Best noise-free value in this oracle's orientation (after ``negate``), if known."""
        if self._optimal_value is None:
            return None
        return -self._optimal_value if self.negate else self._optimal_value

    def reseed(self, seed: int) -> None:
        """Restart the noise stream from ``seed``."""
        self.seed = int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)

    # ------------------------------------------------------------------ evaluation
    def _check(self, x: Any) -> torch.Tensor:
        """The batch as a tensor of real numbers of this oracle's shape (``TypeError`` for
        complex, boolean or non-numeric input, which a cast would silently change)."""
        if not isinstance(x, torch.Tensor):
            arr = np.asarray(x)
            if arr.dtype.kind not in "iuf":
                raise TypeError(f"{self.name} oracle expects real numbers, got dtype {arr.dtype}")
            x = torch.as_tensor(arr.astype(np.float32))
        if x.dtype.is_complex or x.dtype == torch.bool:
            raise TypeError(f"{self.name} oracle expects real numbers, got dtype {x.dtype}")
        if x.ndim != len(self.shape) + 1 or tuple(x.shape[1:]) != self.shape:
            raise ValueError(
                f"{self.name} oracle expects a batch of shape (n, {', '.join(map(str, self.shape))}), "
                f"got {tuple(x.shape)}"
            )
        return x.detach()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Values of the batch ``x (n, *shape)``: ``(n,)`` float64 on ``x``'s device, NaN where failed."""
        x = self._check(x)
        n = x.shape[0]
        values = np.full(n, np.nan)
        reasons: dict[int, str] = {}
        transient: set[int] = set()
        if n:
            # 1. evaluate, serially or chunk by chunk on the executor
            size = self.chunk_size or (1 if self.executor is not None else n)
            starts = list(range(0, n, size))
            bar = progress_bar(
                total=n, progress=self.progress, desc=f"oracle {self.name}", leave=False
            )
            if self.executor is None:
                results = []
                for s in starts:
                    results.append(evaluate_chunk(self, x[s : s + size]))
                    bar.update(results[-1][0].shape[0])
            else:
                cpu = x.cpu()
                futures = [
                    self.executor.submit(evaluate_chunk, self, cpu[s : s + size]) for s in starts
                ]
                results = []
                for s, fut in zip(starts, futures):
                    m = min(size, n - s)
                    try:
                        results.append(self._result(fut))
                    except Exception as exc:  # noqa: BLE001 - e.g. a worker died or pickling failed
                        reason = f"executor: {_describe(exc)}"
                        results.append((np.full(m, np.nan), dict.fromkeys(range(m), reason)))
                        transient.update(range(s, s + m))
                    bar.update(m)
            bar.close()
            for s, (v, r) in zip(starts, results):
                values[s : s + v.shape[0]] = v
                reasons.update({s + i: msg for i, msg in r.items()})
        # 2. noise from the oracle's generator (one draw per point), then negation
        if self.noise_std > 0 and n:
            values = (
                values
                + self.noise_std
                * torch.randn(n, generator=self.generator, dtype=torch.float64).numpy()
            )
        if self.negate:
            values = -values
        self.n_calls += 1
        self.n_evaluations += n
        self.failures = dict(sorted(reasons.items()))
        self.transient_failures = transient
        self.failure_log.extend(
            (self.n_calls, i, msg, i in transient) for i, msg in self.failures.items()
        )
        return torch.as_tensor(values, dtype=torch.float64).to(x.device)

    def _result(self, fut: Future) -> tuple[np.ndarray, dict[int, str]]:
        """A submitted chunk's result, waited for at most ``chunk_timeout`` seconds; a job
        still without a result then is cancelled and raises :class:`ChunkTimeout`."""
        try:
            return fut.result(timeout=self.chunk_timeout)
        except TimeoutError:
            if fut.done():  # the job itself raised a TimeoutError
                raise
            fut.cancel()
            raise ChunkTimeout(
                f"no result within {self.chunk_timeout:g} s (chunk_timeout); the job was "
                "cancelled (a worker stopped, lost or stuck)"
            ) from None

    @abstractmethod
    def _evaluate(self, x: torch.Tensor) -> torch.Tensor | np.ndarray | Evaluation:
        """Noise-free values of ``x (m, *shape)``: ``(m,)``, NaN or :class:`Evaluation` reasons for failures.

        May raise: the base then retries point by point and records the exception as the reason.
        """

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, shape={self.shape}, noise_std={self.noise_std}, "
            f"negate={self.negate}, seed={self.seed})"
        )


class DifferentiableOracle(Oracle):
    """An oracle given by a differentiable torch function ``evaluate_true`` (synthetic benchmarks).

    Implement ``evaluate_true(x (n, *shape)) -> (n,)`` (noise-free, before
    ``negate``); calling the oracle evaluates it without gradients, and
    :meth:`true_value` gives the differentiable noise-free value in the
    oracle's orientation (for upper-bound baselines and analytic checks).
    """

    def _evaluate(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.evaluate_true(x)

    @abstractmethod
    def evaluate_true(self, x: torch.Tensor) -> torch.Tensor:
        """Noise-free value of ``x (n, *shape)``, shape ``(n,)``, differentiable in ``x``."""

    def true_value(self, x: torch.Tensor) -> torch.Tensor:
        """Noise-free value after ``negate``, differentiable in ``x``; shape ``(n,)``."""
        f = self.evaluate_true(x)
        return -f if self.negate else f
