"""The ask/tell optimizer base: the base owns the observations, algorithms implement hooks.

Usage (any optimizer)::

    batch = opt.ask()                 # Batch(ids: list[int], x: (n, *shape))
    opt.tell(batch.ids, y)            # y: (n,) floats; NaN / ±inf marks a failed evaluation
    opt.tell_external(x, y)           # data the optimizer did not ask for (e.g. a lab's archive)
    opt.history                       # pandas DataFrame, one row per point
    opt.save(path); opt = type(opt).load(path)

Values are **maximized**.

Writing an algorithm (Nevergrad-style: public ``ask``/``tell`` live here, algorithms
override private hooks; the base does the bookkeeping — ids, pending points, partial
tells in any order, failed points, external points, persistence)::

    class MyOptimizer(Optimizer):
        method = "mine"                       # unique name, used by save/load

        def __init__(self, prior, batch_size=64, seed=0, study=None):
            self.prior = prior                # set your attributes first ...
            super().__init__(prior.shape, batch_size=batch_size, seed=seed, study=study)

        def _propose(self, n):                # REQUIRED
            out = self.prior.sample(n, self.generator, return_trajectory=True)
            return Proposal(out.x, out.trajectory)

        def _fit(self, observations): ...     # optional: new data arrived (a new round)
        def _metrics(self): return {}         # optional: e.g. {"kl_to_prior": ...}
        def _spec(self): return {"prior": self.prior}   # constructor kwargs, for load
        def _extra_state(self): return {...}  # tensors / arrays / JSON values
        def _load_extra_state(self, state): ...

Hooks in detail:

- ``_propose(n) -> Proposal(x (n, *shape), trajectories (n, K+1, *shape) | None)``: the next
  ``n`` designs. Draw randomness only from ``self.generator`` (a ``torch.Generator`` on
  ``self.device``) or ``self.np_rng``; both are saved and restored by the base.
- ``_fit(observations)``: called by the base at the start of ``ask`` when successful
  observations arrived since the last fit; receives **all** successful observations
  (asked and external; failed points are excluded) as one :class:`Observations`: designs
  ``x (m, *shape)``, values ``y (m,)`` float64, sources, rounds and the sampling chains of
  asked points (``observations.chains(K+1)``). ``self.round`` is incremented right after it
  returns.
- ``_metrics() -> dict[str, float]``: diagnostics for benchmarks (public via ``metrics()``).
- ``_spec() -> dict``: the constructor keyword arguments other than ``batch_size``, ``seed``
  and ``study``, JSON values or ``DiffusionPrior`` objects (saved once into the study folder).
  ``_from_spec(spec, batch_size=, seed=)`` (classmethod) rebuilds the object; the default
  calls ``cls(**spec, batch_size=..., seed=...)``.
- ``_extra_state()`` / ``_load_extra_state(state)``: everything else that changes while the
  optimizer runs (weights, buffers, RNGs of sub-objects): nested dicts/lists of tensors,
  numpy arrays and JSON values. Never pickled (safetensors + JSON).

Persistence: with ``study=DIR`` every ask (ids, designs, trajectories, a state snapshot) and
every tell is committed to ``DIR/study.sqlite`` before the call returns (see
:mod:`sqdf_bbo.study.store`); ``load(DIR)`` resumes, pending points stay pending.
"""

from __future__ import annotations

import math
import numbers
import os
import time
import uuid
from abc import ABCMeta, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence, Set
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import pandas as pd
import torch

from sqdf_bbo.optimizers.registry import lookup, register, registered_methods
from sqdf_bbo.study.store import (
    PointRow,
    SnapshotMissing,
    StudyError,
    StudyStore,
    is_study,
    join_state,
    lock_study,
    split_state,
)

__all__ = [
    "Optimizer",
    "Batch",
    "Proposal",
    "Observations",
    "Best",
    "StudyError",
    "registered_methods",
]

T = TypeVar("T", bound="Optimizer")
STATES = ("pending", "complete", "failed")
SOURCES = ("asked", "external")


@dataclass(frozen=True)
class Batch:
    """Designs to evaluate.

    Attributes:
        ids: unique integer ids, one per design (pass them back to ``tell``).
        x: designs, shape ``(n, *shape)``.
    """

    ids: list[int]
    x: torch.Tensor

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class Proposal:
    """What an algorithm's ``_propose(n)`` returns.

    Attributes:
        x: designs, shape ``(n, *shape)``.
        trajectories: the sampling chains x_T … x_0 that produced them,
            shape ``(n, K+1, *shape)``, or ``None``.
    """

    x: torch.Tensor
    trajectories: torch.Tensor | None = None


@dataclass(frozen=True)
class Observations:
    """Observations in id order.

    Attributes:
        ids: point ids, length m.
        x: designs ``(m, *shape)`` on the optimizer's device.
        y: values ``(m,)`` float64.
        sources: ``"asked"`` or ``"external"`` per point.
        rounds: the round each point was asked in (external points: the round they arrived).
        trajectories: per point, the sampling chain ``(K+1, *shape)`` (CPU) that produced its
            design, or ``None``.
    """

    ids: list[int]
    x: torch.Tensor
    y: torch.Tensor
    sources: list[str]
    rounds: list[int]
    trajectories: list[torch.Tensor | None]

    def __len__(self) -> int:
        return len(self.ids)

    def chains(self, length: int) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        """The sampling chains of exactly ``length`` states, in id order.

        Returns trajectories ``(q, length, *shape)`` on ``x``'s device, their values ``(q,)``
        float64 and rounds. Points without a chain (external points, optimizers that do not
        sample chains) and chains of another length (the number of denoising steps changed
        between rounds) are left out; ``q`` may be 0.
        """
        keep = [
            i for i, t in enumerate(self.trajectories) if t is not None and t.shape[0] == length
        ]
        if not keep:
            empty = torch.empty((0, length, *self.x.shape[1:]), dtype=self.x.dtype)
            return empty.to(self.x.device), self.y[:0], []
        traj = torch.stack([self.trajectories[i] for i in keep]).to(self.x.device)
        return traj, self.y[keep], [self.rounds[i] for i in keep]


@dataclass(frozen=True)
class Best:
    """The best successful observation so far (values are maximized)."""

    id: int
    x: torch.Tensor
    value: float


@dataclass
class _Point:
    id: int
    round: int
    source: str
    state: str
    value: float
    asked_at: float
    told_at: float | None
    x: torch.Tensor  # (*shape), CPU
    traj: torch.Tensor | None  # (K+1, *shape), CPU
    reason: str | None = None  # why it failed, when someone said


def _tensor_bytes(t: torch.Tensor) -> bytes:
    return t.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes()


def _bytes_tensor(b: bytes, dtype: torch.dtype, shape: tuple[int, ...]) -> torch.Tensor:
    flat = torch.frombuffer(bytearray(b), dtype=torch.uint8).view(dtype)
    per = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    if shape and shape[0] == -1:
        if flat.numel() % per:
            raise StudyError(f"stored array of {flat.numel()} values does not fit shape {shape}")
        shape = (flat.numel() // per, *shape[1:])
    if flat.numel() != int(np.prod(shape)):
        raise StudyError(f"stored array of {flat.numel()} values does not fit shape {shape}")
    return flat.reshape(shape)


class _OptimizerMeta(ABCMeta):
    """Runs ``_finish_init`` after the subclass ``__init__`` (creates the study folder)."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        obj = super().__call__(*args, **kwargs)
        obj._finish_init()
        return obj


_LOAD_ATTEMPTS = 8  # detached loads racing a writer's snapshot replacement


def _retrying_snapshot_races(path: Path, read: Callable[[StudyStore], T]) -> T:
    """``read(store)`` on a read-only store of ``path`` inside one read transaction, retried
    when a writer replaced the referenced snapshot meanwhile (its old folder is pruned right
    after the new pointer is committed, so a reader can find it gone)."""
    for attempt in range(_LOAD_ATTEMPTS):
        try:
            store = StudyStore.open(path, read_only=True)
            try:
                with store.reading():
                    return read(store)
            finally:
                store.close()
        except SnapshotMissing as err:
            if attempt + 1 == _LOAD_ATTEMPTS or not _snapshot_moved(path, err.name):
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


def _snapshot_moved(path: Path, name: str) -> bool:
    """Whether the study at ``path`` now references a snapshot other than ``name``."""
    try:
        store = StudyStore.open(path, read_only=True)
    except SnapshotMissing as err:
        return err.name != name
    except StudyError:
        return False
    try:
        return str(store.read_meta().get("snapshot")) != name
    finally:
        store.close()


class Optimizer(metaclass=_OptimizerMeta):
    """Ask/tell optimizer base (see the module docstring for the hooks).

    Args:
        shape: design shape, e.g. ``(2,)`` or ``(1, 8, 8)``.
        batch_size: default number of designs per ``ask()``.
        seed: seeds ``self.generator`` (torch) and ``self.np_rng`` (numpy).
        study: folder to write the study through to (created; must not hold a study yet);
            ``None`` keeps everything in memory until ``save``.
        device: where designs and ``self.generator`` live.
        dtype: design dtype.
    """

    method: ClassVar[str] = ""
    #: Most designs one ``ask`` may return (larger requests: ask in several calls).
    max_ask: ClassVar[int] = 100_000

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("method")
        if name:
            register(name, cls)

    def __init__(
        self,
        shape: Sequence[int],
        *,
        batch_size: int = 64,
        seed: int = 0,
        study: str | Path | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        shape = tuple(int(s) for s in shape)
        if not shape or any(s < 1 for s in shape):
            raise ValueError(f"shape must be a non-empty tuple of positive ints, got {shape}")
        self.batch_size = self._check_count(batch_size, "batch_size")
        if self.batch_size > self.max_ask:
            raise ValueError(f"batch_size must be at most {self.max_ask}, got {batch_size}")
        seed = self.check_seed(seed)
        if not self.method:
            raise TypeError(
                f"{type(self).__name__} must set a class attribute `method` (a unique name)"
            )
        self.shape: tuple[int, ...] = shape
        self.seed = int(seed)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.dtype = dtype
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(self.seed)
        self.np_rng = np.random.default_rng(self.seed)
        self.round = 0
        self._fitted_count = 0
        self._refit_pending = False  # a fitted observation was marked failed since the fit
        self._points: dict[int, _Point] = {}
        self._next_id = 0
        self._store: StudyStore | None = None
        self._study_request = None if study is None else Path(study)
        self._study_uid = uuid.uuid4().hex  # shared by every saved copy of this study

    # ------------------------------------------------------------------ hooks
    @abstractmethod
    def _propose(self, n: int) -> Proposal:
        """Return ``n`` new designs ``(n, *shape)`` (and optionally their trajectories)."""

    def _fit(self, observations: Observations) -> None:  # noqa: B027 - optional hook
        """Learn from all successful observations (designs, values, rounds, chains)."""

    def _metrics(self) -> dict[str, float]:
        """Diagnostics (e.g. estimated KL of the sampler to the prior)."""
        return {}

    def _spec(self) -> dict[str, Any]:
        """Constructor kwargs besides batch_size/seed/study (JSON values or DiffusionPriors)."""
        return {}

    @classmethod
    def _from_spec(
        cls: type[T], spec: dict[str, Any], *, batch_size: int, seed: int, **runtime: Any
    ) -> T:
        return cls(**spec, **runtime, batch_size=batch_size, seed=seed)

    def _extra_state(self) -> dict[str, Any]:
        """Algorithm state to save: nested dicts/lists of tensors, arrays, JSON values."""
        return {}

    def _load_extra_state(self, state: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        """Restore what ``_extra_state`` returned."""

    # ------------------------------------------------------------------ validation helpers
    @staticmethod
    def check_seed(seed: Any) -> int:
        """``seed`` as an int in [0, 2**62) (torch generators take signed 64-bit seeds and
        sub-objects derive theirs by adding small offsets); ``ValueError`` otherwise."""
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        if seed >= 2**62:
            raise ValueError(f"seed must be < 2**62, got {seed}")
        return int(seed)

    @staticmethod
    def _check_count(n: Any, what: str) -> int:
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or int(n) < 1:
            raise ValueError(f"{what} must be a positive int, got {n!r}")
        return int(n)

    def _as_ids(self, ids: Any) -> list[int]:
        if isinstance(ids, torch.Tensor):
            if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
                raise TypeError(f"ids must be integers, got a tensor of dtype {ids.dtype}")
            return [int(i) for i in ids.reshape(-1).tolist()]
        if isinstance(ids, np.ndarray):
            if not np.issubdtype(ids.dtype, np.integer):
                raise TypeError(f"ids must be integers, got an array of dtype {ids.dtype}")
            return [int(i) for i in ids.reshape(-1)]
        if isinstance(ids, numbers.Integral) and not isinstance(ids, bool):
            return [int(ids)]
        if isinstance(ids, (str, bytes, Mapping, Set)) or not isinstance(ids, Iterable):
            raise TypeError(
                f"ids must be a sequence of ints (list, tuple, array, tensor), "
                f"got {type(ids).__name__}"
            )
        out = []
        for i in ids:
            if isinstance(i, bool) or not isinstance(i, numbers.Integral):
                raise TypeError(f"ids must be ints, got {i!r} ({type(i).__name__})")
            out.append(int(i))
        return out

    @property
    def value_limit(self) -> float:
        """Largest magnitude a told value may have: √(largest float of ``self.dtype``)
        (1.8e19 for float32), so that standardizing values never overflows."""
        return math.sqrt(torch.finfo(self.dtype).max)

    def _as_values(self, y: Any, n: int) -> np.ndarray:
        """Values as float64 ``(n,)``; ``None`` entries become NaN (failed)."""
        if isinstance(y, torch.Tensor):
            if y.dtype.is_complex or y.dtype == torch.bool:
                raise TypeError(f"values must be real numbers, got a tensor of dtype {y.dtype}")
            arr = y.detach().to("cpu", torch.float64).numpy()
        elif isinstance(y, np.ndarray):
            if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)):
                raise TypeError(f"values must be real numbers, got an array of dtype {y.dtype}")
            arr = y.astype(np.float64)
        elif isinstance(y, numbers.Real) and not isinstance(y, bool):
            arr = np.array([float(y)])
        elif isinstance(y, (str, bytes, Mapping, Set)) or not isinstance(y, Iterable):
            raise TypeError(
                f"values must be a sequence of floats (list, tuple, array, tensor), "
                f"got {type(y).__name__}"
            )
        else:
            vals = []
            for v in y:
                if v is None:
                    vals.append(math.nan)
                elif (
                    isinstance(v, numbers.Real)
                    and not isinstance(v, bool)
                    or isinstance(v, torch.Tensor)
                    and v.numel() == 1
                    and v.dtype.is_floating_point
                ):
                    vals.append(float(v))
                else:
                    raise TypeError(
                        f"values must be real numbers (NaN or None for a failed evaluation), "
                        f"got {v!r} ({type(v).__name__})"
                    )
            arr = np.asarray(vals, dtype=np.float64)
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim != 1 or arr.shape[0] != n:
            raise ValueError(f"expected {n} values of shape ({n},), got shape {tuple(arr.shape)}")
        limit = self.value_limit
        with np.errstate(invalid="ignore"):
            huge = np.isfinite(arr) & (np.abs(arr) > limit)
        if huge.any():
            k = int(np.flatnonzero(huge)[0])
            raise ValueError(
                f"value {float(arr[k])!r} (position {k}) is too large for the model's {self.dtype} "
                f"arithmetic: values must lie within ±{limit:.3g} (the square root of the "
                "largest float, so that their squares stay finite); rescale the oracle's "
                "output, or tell NaN to record a failed evaluation"
            )
        return arr.copy()

    def _as_designs(self, x: Any, what: str = "x") -> torch.Tensor:
        if isinstance(x, np.ndarray):
            if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
                raise TypeError(f"{what} must hold real numbers, got an array of dtype {x.dtype}")
            x = torch.from_numpy(np.ascontiguousarray(x))
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{what} must be a torch.Tensor or numpy array, got {type(x).__name__}")
        if x.dtype.is_complex or x.dtype == torch.bool:
            raise TypeError(f"{what} must hold real numbers, got dtype {x.dtype}")
        if x.ndim != len(self.shape) + 1 or tuple(x.shape[1:]) != self.shape:
            raise ValueError(
                f"{what} must have shape (n, {', '.join(map(str, self.shape))}), "
                f"got {tuple(x.shape)}"
            )
        if x.shape[0] < 1:
            raise ValueError(f"{what} holds no designs")
        x = x.detach().to(self.device, self.dtype)
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{what} contains NaN or inf")
        return x

    # ------------------------------------------------------------------ public API
    def ask(self, n: int | None = None) -> Batch:
        """Propose ``n`` designs (default ``batch_size``); they are pending until told.

        Refits first (``_fit``, a new round) when successful observations arrived since
        the last fit.
        """
        n = self.batch_size if n is None else self._check_count(n, "n")
        if n > self.max_ask:
            raise ValueError(
                f"n={n} designs is more than one ask may return ({self.max_ask}); "
                "ask in several calls"
            )
        # 1. A new round when new successful observations exist.
        n_ok = self._count("complete")
        if n_ok > 0 and (n_ok > self._fitted_count or self._refit_pending):
            self._fit(self.observations())
            self.round += 1
            self._fitted_count = n_ok
            self._refit_pending = False
        # 2. Proposal, checked before it is recorded.
        prop = self._propose(n)
        x = self._check_proposal(prop, n)
        traj = prop.trajectories
        # 3. Record (durably first, then in memory).
        now = time.time()
        ids = list(range(self._next_id, self._next_id + n))
        x_cpu = x.detach().to("cpu")
        t_cpu = None if traj is None else traj.detach().to("cpu", self.dtype)
        points = [
            _Point(
                i,
                self.round,
                "asked",
                "pending",
                math.nan,
                now,
                None,
                x_cpu[k].clone(),
                None if t_cpu is None else t_cpu[k].clone(),
            )
            for k, i in enumerate(ids)
        ]
        self._persist_new(points)
        for p in points:
            self._points[p.id] = p
        self._next_id += n
        return Batch(ids=ids, x=x.clone())

    def _check_proposal(self, prop: Any, n: int) -> torch.Tensor:
        name = type(self).__name__
        if not isinstance(prop, Proposal):
            raise TypeError(f"{name}._propose must return a Proposal, got {type(prop).__name__}")
        x = prop.x
        if not isinstance(x, torch.Tensor) or tuple(x.shape) != (n, *self.shape):
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise RuntimeError(f"{name}._propose({n}) returned x of shape {got}")
        if not bool(torch.isfinite(x).all()):
            raise RuntimeError(f"{name}._propose returned non-finite designs")
        t = prop.trajectories
        if t is not None and (
            not isinstance(t, torch.Tensor)
            or t.ndim != len(self.shape) + 2
            or t.shape[0] != n
            or tuple(t.shape[2:]) != self.shape
        ):
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise RuntimeError(
                f"{name}._propose returned trajectories of shape {got}; expected (n, K+1, *shape)"
            )
        return x.detach().to(self.device, self.dtype)

    def tell(self, ids: Any, y: Any) -> None:
        """Report values for asked points, in any order and in any subsets.

        Args:
            ids: ids from ``ask`` (a list, array, tensor, or one int).
            y: values ``(n,)``; NaN, ±inf or ``None`` mark a failed evaluation (recorded,
               excluded from fitting, state "failed").

        Raises ``KeyError`` (unknown id), ``ValueError`` (already told, duplicates, wrong
        length) or ``TypeError`` (non-numeric); the state is unchanged when it raises.
        """
        id_list = self._as_ids(ids)
        if not id_list:
            raise ValueError("tell needs at least one id")
        values = self._as_values(y, len(id_list))
        seen: set[int] = set()
        for i in id_list:
            if i in seen:
                raise ValueError(f"id {i} appears twice in this tell")
            seen.add(i)
            p = self._points.get(i)
            if p is None:
                raise KeyError(f"unknown id {i}: it was never returned by ask()")
            if p.source != "asked":
                raise ValueError(f"id {i} is an external observation and cannot be told again")
            if p.state != "pending":
                raise ValueError(f"id {i} was already told (state {p.state!r}, value {p.value!r})")
        now = time.time()
        updates = [
            (i, "complete" if math.isfinite(v) else "failed", float(v), now)
            for i, v in zip(id_list, values.tolist())
        ]
        if self._store is not None:
            self._store.record_tells(updates)
        for i, state, v, t in updates:
            p = self._points[i]
            p.state, p.value, p.told_at = state, v, t

    def tell_external(self, x: Any, y: Any) -> list[int]:
        """Add observations the optimizer did not ask for (e.g. historical lab data).

        Args:
            x: designs ``(n, *shape)`` (tensor or numpy array).
            y: values ``(n,)``; non-finite values are recorded as failed.

        Returns the new ids. External points have no trajectories; they enter the
        surrogate's training data at the next round.
        """
        xt = self._as_designs(x)
        values = self._as_values(y, xt.shape[0])
        now = time.time()
        n = xt.shape[0]
        ids = list(range(self._next_id, self._next_id + n))
        x_cpu = xt.to("cpu")
        points = [
            _Point(
                i,
                self.round,
                "external",
                "complete" if math.isfinite(v) else "failed",
                float(v),
                now,
                now,
                x_cpu[k].clone(),
                None,
            )
            for k, (i, v) in enumerate(zip(ids, values.tolist()))
        ]
        self._persist_new(points, snapshot=False)
        for p in points:
            self._points[p.id] = p
        self._next_id += n
        return ids

    def mark_failed(self, ids: Any, reason: str = "") -> None:
        """Mark points failed after the fact (a bad assay, a mistyped value, a broken run).

        Complete points keep their told value (shown in ``history``) but leave the
        surrogate's training data: the next ``ask`` refits without them (a new round).
        Pending points become failed without a value.

        Args:
            ids: ids of pending or complete points (asked or external).
            reason: why, stored with each point (``history["reason"]``).

        Raises ``KeyError`` (unknown id), ``ValueError`` (already failed, duplicates) or
        ``TypeError``; nothing changes when it raises.
        """
        if not isinstance(reason, str):
            raise TypeError(f"reason must be a string, got {type(reason).__name__}")
        id_list = self._as_ids(ids)
        if not id_list:
            raise ValueError("mark_failed needs at least one id")
        if len(set(id_list)) != len(id_list):
            raise ValueError("an id appears twice in this mark_failed call")
        for i in id_list:
            p = self._points.get(i)
            if p is None:
                raise KeyError(f"unknown id {i}")
            if p.state == "failed":
                why = f" ({p.reason})" if p.reason else ""
                raise ValueError(f"id {i} is already failed{why}")
        refit = self._refit_pending or any(self._points[i].state == "complete" for i in id_list)
        why = reason or None
        now = time.time()
        updates = [(i, self._points[i].value, why, now) for i in id_list]
        if self._store is not None:
            self._store.mark_failed(updates, {**self._meta(), "refit_pending": refit})
        for i in id_list:
            p = self._points[i]
            p.state, p.reason = "failed", why
            if p.told_at is None:
                p.told_at = now
        self._refit_pending = refit

    def run(
        self,
        oracle: Callable[[torch.Tensor], Any],
        budget: int,
        *,
        batch_size: int | None = None,
        progress: bool = True,
        callback: Callable[[Optimizer, Batch, Any], None] | None = None,
    ) -> pd.DataFrame:
        """Ask, evaluate with ``oracle(x (n, *shape)) -> (n,)`` and tell until ``budget`` evaluations.

        Returns ``history``. If the oracle raises, its batch stays pending and the error
        propagates (nothing told is lost).
        """
        budget = self._check_count(budget, "budget")
        bs = self.batch_size if batch_size is None else self._check_count(batch_size, "batch_size")
        from sqdf_bbo.progress import progress_bar

        used = 0
        with progress_bar(total=budget, progress=progress, desc=type(self).__name__) as bar:
            while used < budget:
                batch = self.ask(min(bs, budget - used))
                y = oracle(batch.x)
                self.tell(batch.ids, y)
                used += len(batch)
                bar.update(len(batch))
                best = self.best()
                bar.set_postfix(
                    round=self.round, best=None if best is None else f"{best.value:.4g}"
                )
                if callback is not None:
                    callback(self, batch, y)
        return self.history

    # ------------------------------------------------------------------ views
    def _count(self, state: str) -> int:
        return sum(1 for p in self._points.values() if p.state == state)

    @property
    def pending(self) -> list[int]:
        """Ids asked but not told yet."""
        return [i for i, p in self._points.items() if p.state == "pending"]

    def counts(self) -> dict[str, int]:
        """Number of points per state (pending / complete / failed)."""
        return {s: self._count(s) for s in STATES}

    def __len__(self) -> int:
        return len(self._points)

    @property
    def history(self) -> pd.DataFrame:
        """One row per point: id, round, state, value, source, asked_at, told_at (UTC times),
        reason.

        ``value`` is NaN while pending and the told value for failed points (NaN/±inf, or
        the value a point had when :meth:`mark_failed` excluded it); ``reason`` says why a
        point failed when someone said (``None`` otherwise).
        """
        pts = sorted(self._points.values(), key=lambda p: p.id)
        df = pd.DataFrame(
            {
                "id": pd.Series([p.id for p in pts], dtype="int64"),
                "round": pd.Series([p.round for p in pts], dtype="int64"),
                "state": pd.Series([p.state for p in pts], dtype="object"),
                "value": pd.Series([p.value for p in pts], dtype="float64"),
                "source": pd.Series([p.source for p in pts], dtype="object"),
                "asked_at": pd.to_datetime(
                    pd.Series([p.asked_at for p in pts], dtype="float64"), unit="s", utc=True
                ),
                "told_at": pd.to_datetime(
                    pd.Series(
                        [math.nan if p.told_at is None else p.told_at for p in pts],
                        dtype="float64",
                    ),
                    unit="s",
                    utc=True,
                ),
                "reason": pd.Series([p.reason for p in pts], dtype="object"),
            }
        )
        return df

    def designs(self, ids: Any | None = None) -> torch.Tensor:
        """Designs ``(n, *shape)`` of the given ids (all points, in id order, if ``None``)."""
        if ids is None:
            id_list = sorted(self._points)
        else:
            id_list = self._as_ids(ids)
            unknown = [i for i in id_list if i not in self._points]
            if unknown:
                raise KeyError(f"unknown ids {unknown[:10]}")
        if not id_list:
            return torch.empty((0, *self.shape), dtype=self.dtype, device=self.device)
        return torch.stack([self._points[i].x for i in id_list]).to(self.device)

    @property
    def x(self) -> torch.Tensor:
        """All designs ``(n, *shape)`` in id order (same rows as ``history``)."""
        return self.designs()

    def observations(self, include_failed: bool = False) -> Observations:
        """Told points (complete, plus failed if asked) with their designs and values."""
        keep = ("complete", "failed") if include_failed else ("complete",)
        pts = [p for p in sorted(self._points.values(), key=lambda p: p.id) if p.state in keep]
        if pts:
            x = torch.stack([p.x for p in pts]).to(self.device)
        else:
            x = torch.empty((0, *self.shape), dtype=self.dtype, device=self.device)
        y = torch.tensor([p.value for p in pts], dtype=torch.float64, device=self.device)
        return Observations(
            [p.id for p in pts],
            x,
            y,
            [p.source for p in pts],
            [p.round for p in pts],
            [p.traj for p in pts],
        )

    def best(self) -> Best | None:
        """The highest successful observation (``None`` before any)."""
        pts = [p for p in self._points.values() if p.state == "complete"]
        if not pts:
            return None
        p = max(pts, key=lambda q: (q.value, -q.id))
        return Best(p.id, p.x.to(self.device).clone(), p.value)

    def metrics(self) -> dict[str, float]:
        """Round, counts and the algorithm's own diagnostics (``_metrics``)."""
        out: dict[str, float] = {"round": float(self.round)}
        out.update({f"n_{k}": float(v) for k, v in self.counts().items()})
        out.update(self._metrics())
        return out

    @property
    def study(self) -> Path | None:
        """The study folder this optimizer writes through to (``None`` if in memory only)."""
        return None if self._store is None else self._store.path

    def __repr__(self) -> str:
        c = self.counts()
        where = f", study={str(self.study)!r}" if self.study else ""
        return (
            f"{type(self).__name__}(shape={self.shape}, batch_size={self.batch_size}, "
            f"seed={self.seed}, round={self.round}, pending={c['pending']}, "
            f"complete={c['complete']}, failed={c['failed']}{where})"
        )

    def close(self) -> None:
        """Close the study store (the optimizer keeps working in memory)."""
        if self._store is not None:
            self._store.close()
            self._store = None

    def __enter__(self: T) -> T:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ persistence
    def _rows(self, points: Iterable[_Point]) -> list[PointRow]:
        return [
            PointRow(
                p.id,
                p.round,
                p.source,
                p.state,
                p.value,
                p.asked_at,
                p.told_at,
                _tensor_bytes(p.x),
                None if p.traj is None else _tensor_bytes(p.traj),
                p.reason,
            )
            for p in points
        ]

    def _meta(self) -> dict[str, Any]:
        return {
            "round": self.round,
            "fitted_count": self._fitted_count,
            "refit_pending": self._refit_pending,
        }

    def _snapshot(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        extra_json, tensors = split_state(self._extra_state(), prefix="extra")
        tensors["rng/torch"] = self.generator.get_state().clone()
        state = {
            "extra": extra_json,
            "numpy_rng": self.np_rng.bit_generator.state,
            "round": self.round,
            "fitted_count": self._fitted_count,
        }
        return state, tensors

    def _persist_new(self, points: list[_Point], snapshot: bool = True) -> None:
        if self._store is None:
            return
        meta = self._meta()
        if snapshot:
            state, tensors = self._snapshot()
            meta["snapshot"] = self._store.write_snapshot(state, tensors)
        self._store.insert_points(self._rows(points), meta)
        if snapshot:
            self._store.prune_snapshots()

    def _header(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "class": f"{type(self).__module__}.{type(self).__qualname__}",
            "shape": list(self.shape),
            "dtype": str(self.dtype).removeprefix("torch."),
            "batch_size": self.batch_size,
            "seed": self.seed,
            "study_uid": self._study_uid,
        }

    def _encoded_spec(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Spec with DiffusionPriors replaced by ``{"__prior__": key}``; returns (json, objects)."""
        from sqdf_bbo.diffusion.prior import DiffusionPrior

        objects: dict[str, Any] = {}
        out: dict[str, Any] = {}
        for k, v in self._spec().items():
            if isinstance(v, DiffusionPrior):
                objects[k] = v
                out[k] = {"__prior__": k}
            else:
                split, tensors = split_state(v)
                if tensors:
                    raise TypeError(f"_spec entry {k!r} holds tensors; put them in _extra_state")
                out[k] = split
        return out, objects

    def _create_store(self, path: Path) -> StudyStore:
        spec_json, objects = self._encoded_spec()

        def write_objects(folder: Path) -> None:
            for key, prior in objects.items():
                prior.save(folder / key)

        store = StudyStore.create(path, {**self._header(), "spec": spec_json}, write_objects)
        return store

    def _finish_init(self) -> None:
        if self._study_request is None:
            return
        path, self._study_request = self._study_request, None
        store = self._create_store(path)
        try:
            state, tensors = self._snapshot()
            name = store.write_snapshot(state, tensors)
            store.replace_all(self._rows(self._points.values()), {**self._meta(), "snapshot": name})
        except BaseException:
            store.close()
            raise
        self._store = store

    def save(self, path: str | Path) -> Path:
        """Write the whole study (observations, weights, RNG states, config) to ``path``.

        ``path`` must be new/empty, this optimizer's own study folder, or a folder an
        earlier ``save`` of this same study wrote (it is then updated in place).
        """
        path = Path(path).expanduser().absolute()
        if self._store is not None and path == self._store.path:
            store, own = self._store, True
        elif is_study(path):
            store, own = StudyStore.open(path), False
            uid = store.read_meta().get("study_uid")
            if uid is None or uid != self._study_uid:
                store.close()
                raise StudyError(
                    f"{path} holds another study; save to a new folder or load that study"
                )
            lost = self._would_lose(store)
            if lost:
                store.close()
                raise StudyError(
                    f"{path} holds {len(lost)} observation(s) this optimizer does not have "
                    f"(e.g. id {lost[0]}, told after it was loaded); saving would lose them — "
                    "load the study again instead"
                )
        else:
            store, own = self._create_store(path), False
        try:
            state, tensors = self._snapshot()
            name = store.write_snapshot(state, tensors)
            store.replace_all(self._rows(self._points.values()), {**self._meta(), "snapshot": name})
            store.prune_snapshots()
        finally:
            if not own:
                store.close()
        return path

    def _would_lose(self, store: StudyStore) -> list[int]:
        """Ids whose stored state is newer than (or differs from) this optimizer's."""
        lost = []
        for r in store.read_points():
            mine = self._points.get(r.id)
            told_there = r.state != "pending"
            same = mine is not None and (
                mine.state == r.state
                and (mine.value == r.value or (math.isnan(mine.value) and math.isnan(r.value)))
            )
            if mine is None or (told_there and not same):
                lost.append(r.id)
        return lost

    @classmethod
    def load(
        cls: type[T],
        path: str | Path,
        *,
        attach: bool = True,
        device: torch.device | str | None = None,
        **runtime: Any,
    ) -> T:
        """Load a study written by ``save`` or ``study=``.

        Args:
            path: the study folder.
            attach: keep writing through to ``path`` (resume the study); ``False`` loads a
                detached in-memory copy and never writes to ``path``.
            device: move the optimizer there (default: the saved prior's device, CPU).
            runtime: constructor arguments that cannot be stored in a study folder because
                they are code, e.g. ``feature_map=`` of :class:`~sqdf_bbo.SQDF`; pass the same
                ones as when the study was made.

        A corrupted or foreign folder raises :class:`StudyError` and nothing on disk changes.
        Attaching takes the study's writer lock first (a second writer gets that error at
        once). A detached load may run while a writer works: it reads one committed state
        and retries when the writer replaced the snapshot it was reading.
        """
        path = Path(path).expanduser().absolute()
        lock_fd = None
        if attach:
            # validate read-only first (a failed load writes nothing, not even a .lock), then
            # take the writer lock before reading the state, so a second writer fails at once
            _retrying_snapshot_races(path, lambda store: None)
            lock_fd = lock_study(path)
        try:
            obj = _retrying_snapshot_races(
                path, lambda store: cls._load_from(store, device, runtime)
            )
            if attach:
                store = StudyStore.open(path, lock_fd=lock_fd)
                lock_fd = None  # the store owns the lock now
                obj._store = store
                store.prune_snapshots()
        finally:
            if lock_fd is not None:
                os.close(lock_fd)
        return obj

    @classmethod
    def _load_from(
        cls: type[T], store: StudyStore, device: Any, runtime: dict[str, Any] | None = None
    ) -> T:
        from sqdf_bbo.diffusion.prior import DiffusionPrior

        # 1. Read everything stored first (metadata, points, the referenced snapshot): a
        #    writer may replace the snapshot at any time, so the window between reading its
        #    pointer and its files stays milliseconds, before the slow rebuild below.
        meta = store.read_meta()
        rows = store.read_points()
        snap = meta.get("snapshot")
        stored = None if snap is None else store.read_snapshot(str(snap))
        # 2. Rebuild the optimizer and restore it.
        method = meta.get("method")
        target = lookup(str(method))
        if cls is not Optimizer and cls.method != method:
            raise StudyError(
                f"the study at {store.path} was made by method {method!r}, not {cls.method!r}; "
                "load it with sqdf_bbo.Optimizer.load or the matching class"
            )
        if target is None:
            raise StudyError(
                f"the study at {store.path} uses method {method!r}, which is not registered; "
                f"known methods: {sorted(registered_methods())} (import the module that defines it first)"
            )
        try:
            spec: dict[str, Any] = {}
            for k, v in dict(meta.get("spec") or {}).items():
                if isinstance(v, dict) and set(v) == {"__prior__"}:
                    folder = store.objects_dir / str(v["__prior__"])
                    prior = DiffusionPrior.load(folder, device=device or "cpu")
                    spec[k] = prior
                else:
                    spec[k] = v
            obj = target._from_spec(
                spec,
                batch_size=int(meta["batch_size"]),
                seed=int(meta["seed"]),
                **(runtime or {}),
            )
        except StudyError:
            raise
        except Exception as err:
            raise StudyError(f"cannot rebuild the optimizer of {store.path}: {err}") from err
        if list(obj.shape) != list(meta["shape"]):
            raise StudyError(
                f"{store.path}: stored shape {meta['shape']} differs from the optimizer's {obj.shape}"
            )
        try:
            dtype = getattr(torch, str(meta["dtype"]))
            if not isinstance(dtype, torch.dtype):
                raise TypeError(meta["dtype"])
            points = {}
            for r in rows:
                x = _bytes_tensor(r.x, dtype, obj.shape).to(obj.dtype)
                traj = None
                if r.traj is not None:
                    traj = _bytes_tensor(r.traj, dtype, (-1, *obj.shape)).to(obj.dtype)
                if r.state not in STATES or r.source not in SOURCES:
                    raise StudyError(f"point {r.id} has state {r.state!r} / source {r.source!r}")
                points[r.id] = _Point(
                    r.id,
                    r.round,
                    r.source,
                    r.state,
                    r.value,
                    r.asked_at,
                    r.told_at,
                    x,
                    traj,
                    r.reason,
                )
            if stored is not None:
                state, tensors = stored
                try:
                    obj.generator.set_state(tensors["rng/torch"])
                except RuntimeError:  # saved on another device kind: reseed deterministically
                    import warnings

                    warnings.warn(
                        f"the random state in {store.path} was saved on another device kind; "
                        "reseeding (results continue but are not bit-identical)",
                        stacklevel=3,
                    )
                    obj.generator.manual_seed(obj.seed + 1_000_003 * (len(points) + 1))
                obj.np_rng.bit_generator.state = state["numpy_rng"]
                obj._load_extra_state(join_state(state["extra"], tensors))
        except StudyError:
            raise
        except Exception as err:
            raise StudyError(f"{store.path}: the stored state cannot be restored ({err})") from err
        obj._points = points
        obj._next_id = max(points, default=-1) + 1
        obj.round = int(meta["round"])
        obj._fitted_count = int(meta.get("fitted_count", 0))
        obj._refit_pending = bool(meta.get("refit_pending", False))
        obj._study_uid = meta["study_uid"]
        return obj
