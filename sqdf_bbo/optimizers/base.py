"""The ask/tell optimizer base: the base owns the observations, algorithms implement hooks.

Usage (any optimizer)::

    batch = opt.ask()                 # Batch(ids: list[int], x: (n, *shape))
    batch = opt.ask(n, conditions=c)  # a conditional prior: one condition per design
    opt.tell(batch.ids, y)            # y: (n,) floats; NaN / ±inf marks a failed evaluation
    opt.tell_external(x, y)           # data the optimizer did not ask for (e.g. a lab's archive)
    opt.history                       # pandas DataFrame, one row per point
    opt.save(path); opt = type(opt).load(path)

Values are **maximized**.

Length: one class whose public calls (ask, tell, mark_failed, run, the views, save/load) all
share its point bookkeeping; input checks (:mod:`.inputs`), feasible proposals under known
constraints (:mod:`.feasible`) and persistence (:mod:`sqdf_bbo.study.persist`) live apart.

Writing an algorithm (Nevergrad-style: public ``ask``/``tell`` live here, algorithms
override private hooks; the base does the bookkeeping — ids, pending points, partial tells in
any order, failed points, external points, persistence): subclass :class:`Optimizer`, set a
unique ``method`` and implement ``_propose``; the other hooks are optional. Each hook's
docstring below states its contract; docs/ask_tell.md has a complete example.

A subclass's ``__init__`` may call ``super().__init__`` anywhere: with ``study=DIR`` the
study folder (``_spec()`` and a first snapshot) is created once the whole construction has
returned, and the study bookkeeping (``opt.ledger``, :class:`~sqdf_bbo.study.ledger.Ledger`)
exists before any ``__init__`` code runs.

The state a study stores is said explicitly: ``spec()`` (the constructor's arguments),
``state_dict()`` / ``load_state_dict()`` (the algorithm's state, from the ``_extra_state`` /
``_load_extra_state`` hooks) and ``ledger`` (points and counters); :mod:`sqdf_bbo.study.persist`
uses nothing else.

Persistence (``study=DIR``, ``save``, ``load``): :mod:`sqdf_bbo.study.persist`. Inputs are
checked by :mod:`sqdf_bbo.optimizers.inputs`.
"""

from __future__ import annotations

import math
import time
from abc import ABCMeta, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import pandas as pd
import torch

from sqdf_bbo.constraints import Constraint, Constraints, as_constraints
from sqdf_bbo.optimizers import inputs
from sqdf_bbo.optimizers.batch import Batch, Proposal
from sqdf_bbo.optimizers.feasible import propose_feasible
from sqdf_bbo.optimizers.registry import OPTIMIZERS, class_for_study, registered_methods
from sqdf_bbo.progress import progress_bar
from sqdf_bbo.study import persist
from sqdf_bbo.study.errors import StudyError
from sqdf_bbo.study.ledger import Ledger
from sqdf_bbo.study.points import (
    STATES,
    Best,
    Observations,
    Point,
    best_of,
    history_frame,
    observations_of,
    state_of,
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


class _Constructed(ABCMeta):
    """Opens the requested study folder once the whole ``__init__`` chain has returned (so
    a subclass may call ``super().__init__`` at any point of its own)."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        obj = super().__call__(*args, **kwargs)
        obj._open_requested_study()
        return obj


def _ledger_field(name: str, doc: str) -> property:
    def get(self: Optimizer) -> Any:
        return getattr(self.ledger, name)

    def put(self: Optimizer, value: Any) -> None:
        setattr(self.ledger, name, value)

    return property(get, put, doc=doc)


class Optimizer(metaclass=_Constructed):
    """Ask/tell optimizer base (see the module docstring for the hooks).

    Args:
        shape: design shape, e.g. ``(2,)`` or ``(1, 8, 8)``.
        batch_size: default number of designs per ``ask()``.
        seed: seeds ``self.generator`` (torch) and ``self.np_rng`` (numpy).
        study: folder to write the study through to (created once the object is built;
            must not hold a study yet); ``None`` keeps everything in memory until ``save``.
        device: where designs and ``self.generator`` live.
        dtype: design dtype.
        constraints: known constraints, callables ``c(x (n, *shape)) -> (n,) | (n, m)``
            feasible where ≥ 0, or :class:`~sqdf_bbo.constraints.Constraint` objects, or a
            :class:`~sqdf_bbo.constraints.Constraints`: ``ask`` never returns a design that
            violates one (:mod:`sqdf_bbo.optimizers.feasible`). They are code, so a study
            records only their names: pass them again to ``load(path, constraints=...)``.
        state_shape: the shape of the sampler's states when it differs from the designs'
            (a latent prior: its chains live in the latent space); default ``shape``.
    """

    method: ClassVar[str] = ""
    #: Most designs one ``ask`` may return (larger requests: ask in several calls).
    max_ask: ClassVar[int] = 100_000
    #: ``seed`` as a valid int, or ``ValueError`` (for subclasses that need it early).
    check_seed = staticmethod(inputs.check_seed)
    #: ``False`` for algorithms whose ``_propose`` makes its designs feasible itself (and
    #: must not be called again for the rows a known constraint rejects), e.g. CMA-ES.
    redraws_for_constraints: ClassVar[bool] = True

    def __init_subclass__(cls, register: bool = True, **kwargs: Any) -> None:
        """A subclass with its own ``method`` registers itself (:mod:`.registry`), unless it is
        declared ``class Mine(Optimizer, register=False)`` (e.g. a test's: its own ``load``
        still finds it)."""
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("method")
        if name and register:
            OPTIMIZERS.register(name, cls)

    def __init__(
        self,
        shape: Sequence[int],
        *,
        batch_size: int = 64,
        seed: int = 0,
        study: str | Path | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
        constraints: Constraints | Sequence[Callable[..., Any] | Constraint] | None = None,
        state_shape: Sequence[int] | None = None,
    ) -> None:
        shape = tuple(int(s) for s in shape)
        if not shape or any(s < 1 for s in shape):
            raise ValueError(f"shape must be a non-empty tuple of positive ints, got {shape}")
        self.batch_size = inputs.check_count(batch_size, "batch_size")
        if self.batch_size > self.max_ask:
            raise ValueError(f"batch_size must be at most {self.max_ask}, got {batch_size}")
        seed = inputs.check_seed(seed)
        if not self.method:
            raise TypeError(
                f"{type(self).__name__} must set a class attribute `method` (a unique name)"
            )
        self.shape: tuple[int, ...] = shape
        self.state_shape: tuple[int, ...] = (
            shape if state_shape is None else tuple(int(s) for s in state_shape)
        )
        self.seed = int(seed)
        self.constraints: Constraints | None = as_constraints(constraints)
        #: share of the designs drawn by the last ``ask`` that satisfied the known constraints
        self.constraint_acceptance = math.nan
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.dtype = dtype
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(self.seed)
        self.np_rng = np.random.default_rng(self.seed)
        self._requested_study = study  # created once construction returns (_Constructed)

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        obj = super().__new__(cls)
        obj.ledger = Ledger()  # before any __init__ code: the study's bookkeeping
        return obj

    def _open_requested_study(self) -> None:
        """Create the ``study=`` folder holding the finished object (``_spec()`` and a first
        snapshot); called once the whole ``__init__`` chain has returned."""
        study = self.__dict__.pop("_requested_study", None)
        if study is not None and self.ledger.store is None:
            self.ledger.store = persist.create(self, study)

    ledger: Ledger
    round = _ledger_field("round", "Rounds fitted so far (a new round at each refit).")
    _points = _ledger_field("points", "Every point by id.")
    _next_id = _ledger_field("next_id", "The id the next point gets.")
    _fitted_count = _ledger_field("fitted_count", "Successful points the last fit saw.")
    _refit_pending = _ledger_field("refit_pending", "A fitted point was excluded since.")
    _store = _ledger_field("store", "The open study store, or None.")
    _study_uid = _ledger_field("uid", "The study's id, shared by its saved copies.")

    @property
    def study_uid(self) -> str:
        """The study's id, shared by every saved copy of it (CSV files carry it)."""
        return self.ledger.uid

    # ------------------------------------------------------------------ the state a study stores
    def spec(self) -> dict[str, Any]:
        """The constructor's arguments a study stores (the ``_spec`` hook)."""
        return self._spec()

    def state_dict(self) -> dict[str, Any]:
        """The algorithm's state a study snapshots (the ``_extra_state`` hook)."""
        return self._extra_state()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (the ``_load_extra_state`` hook)."""
        self._load_extra_state(state)

    def settings_changed(self, changes: dict[str, tuple[Any, Any]]) -> None:
        """Let restored parts follow changed settings (the ``_settings_changed`` hook)."""
        self._settings_changed(changes)

    # ------------------------------------------------------------------ hooks
    @abstractmethod
    def _propose(self, n: int) -> Proposal:
        """REQUIRED: the next ``n`` designs, ``Proposal(x (n, *shape), trajectories (n, K+1,
        *shape) | None)``. Draw randomness only from ``self.generator`` (a ``torch.Generator``
        on ``self.device``) or ``self.np_rng``; the base saves and restores both."""

    def _check_conditions(self, conditions: Any, n: int) -> list[Any]:
        """Conditions of ``n`` designs (``ask`` / ``tell_external``), checked and normalized.
        Default: this optimizer takes none (``TypeError``). A conditional optimizer returns
        one value per design and its ``_propose(n, conditions=...)`` takes them."""
        raise TypeError(f"{type(self).__name__} takes no conditions (its prior is unconditional)")

    def _fit(self, observations: Observations) -> None:  # noqa: B027 - optional hook
        """Learn from **all** successful observations (asked and external; failed points are
        excluded): designs ``x (m, *shape)``, values ``y (m,)`` float64, sources, rounds and
        the sampling chains of asked points (``observations.chains(K+1)``). Called at the start
        of ``ask`` when successful values arrived since the last fit; ``self.round`` is
        incremented right after it returns."""

    def _refit_needed(self) -> bool:
        """Whether ``ask`` should refit although no new successful value arrived (e.g. new
        failures that teach a feasibility model). Default ``False``."""
        return False

    def _unfit(self) -> None:  # noqa: B027 - optional hook
        """Forget every fit (the sampler before the first ``_fit``): called at the start of
        ``ask`` once every successful observation was excluded (``mark_failed``)."""

    def _metrics(self) -> dict[str, float]:
        """Diagnostics for benchmarks, public via ``metrics()`` (e.g. the KL to the prior)."""
        return {}

    def _spec(self) -> dict[str, Any]:
        """The constructor's keyword arguments other than ``batch_size``, ``seed`` and
        ``study``: JSON values or ``DiffusionPrior`` objects (saved once into the study
        folder). ``_from_spec`` rebuilds the object from them."""
        return {}

    @classmethod
    def _from_spec(
        cls: type[T], spec: dict[str, Any], *, batch_size: int, seed: int, **runtime: Any
    ) -> T:
        return cls(**spec, **runtime, batch_size=batch_size, seed=seed)

    def _extra_state(self) -> dict[str, Any]:
        """Everything else that changes while the optimizer runs (weights, buffers, RNGs of
        sub-objects): nested dicts/lists of tensors, numpy arrays and JSON values; never
        pickled (safetensors + JSON)."""
        return {}

    def _load_extra_state(self, state: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        """Restore what ``_extra_state`` returned."""

    def _settings_changed(self, changes: dict[str, tuple[Any, Any]]) -> None:  # noqa: B027
        """After ``load(..., config_changes=)`` rebuilt the optimizer and restored its state
        (``changes``: dotted key → (old, new)): make parts that restored their own copy of a
        setting follow it, or raise ``ValueError`` if the state cannot take the change."""

    @property
    def value_limit(self) -> float:
        """Largest magnitude a told value may have: √(largest float of ``self.dtype``)
        (1.8e19 for float32), so that standardizing values never overflows."""
        return inputs.value_limit(self.dtype)

    # ------------------------------------------------------------------ public API
    def ask(self, n: int | None = None, *, conditions: Any = None) -> Batch:
        """Propose ``n`` designs (default ``batch_size``); they are pending until told.

        ``conditions``: for a conditional prior, one condition per design (a list of class
        labels, prompts or embedding tensors; ``n`` defaults to its length); stored with
        each point (``history["condition"]``).

        Refits first (``_fit``, a new round) when successful observations arrived since
        the last fit, or when some were excluded since (``mark_failed``); when every one was
        excluded, ``_unfit`` returns the optimizer to its state before any fit (a new round).
        With known constraints the batch holds only designs that satisfy them; it is shorter
        (with a ``RuntimeWarning``) when the sampler could not find n feasible designs within
        ``max_draws_factor · n`` draws.
        """
        if n is None and conditions is not None and not isinstance(conditions, (str, int)):
            n = len(conditions)
        n = self.batch_size if n is None else inputs.check_count(n, "n")
        conds = None if conditions is None else self._check_conditions(conditions, n)
        if conds is None and getattr(self, "conditional", False):
            raise TypeError(
                f"{type(self).__name__} samples a conditional prior: pass one condition per "
                "design, e.g. ask(n, conditions=[label] * n)"
            )
        if conds is not None and self.constraints is not None:
            raise NotImplementedError(
                "known constraints with conditions are not supported yet (the redraws would "
                "have to keep each row's condition)"
            )
        if n > self.max_ask:
            raise ValueError(
                f"n={n} designs is more than one ask may return ({self.max_ask}); "
                "ask in several calls"
            )
        # 1. A new round when new successful observations exist, or fitted ones were excluded.
        n_ok = self._count("complete")
        refit = n_ok > self._fitted_count or (self._refit_pending and self._fitted_count > 0)
        if refit or (n_ok > 0 and self._refit_needed()):
            if n_ok:
                self._fit(self.observations())
            else:
                self._unfit()
            self.round += 1
            self._fitted_count = n_ok
            self._refit_pending = False
        # 2. Proposal, checked before it is recorded (and, with known constraints, redrawn
        #    until its designs satisfy them).
        if self.constraints is None:
            x, traj = self._checked_proposal(n, conds)
        else:
            prop, drawn = propose_feasible(
                self._checked_proposal,
                n,
                self.constraints,
                type(self).__name__,
                redraw=self.redraws_for_constraints,
            )
            x, traj = prop.x, prop.trajectories
            n = x.shape[0]
            if self.redraws_for_constraints:
                self.constraint_acceptance = n / drawn
        # 3. Record (durably first, then in memory): one pending point per design.
        now = time.time()
        ids = list(range(self._next_id, self._next_id + n))
        xs = [row.clone() for row in x.detach().to("cpu")]
        ts = (
            [None] * n if traj is None else [t.clone() for t in traj.detach().to("cpu", self.dtype)]
        )
        cs = [None] * n if conds is None else conds
        points = [
            Point(
                i, self.round, "asked", "pending", math.nan, now, None, xs[k], ts[k],
                condition=cs[k],
            )
            for k, i in enumerate(ids)
        ]  # fmt: skip
        self._add(points, snapshot_state=True)
        return Batch(ids=ids, x=x.clone(), conditions=conds)

    def _checked_proposal(
        self, n: int, conditions: list[Any] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``_propose(n)``'s designs ``(n, *shape)`` and trajectories, checked."""
        prop = self._propose(n) if conditions is None else self._propose(n, conditions=conditions)
        x = inputs.check_proposal(self, prop, n)
        return x, prop.trajectories

    def _add(self, points: list[Point], snapshot_state: bool) -> None:
        """Record new points: durably first (with a snapshot after an ask), then in memory."""
        persist.record_new(self, points, snapshot_state)
        for p in points:
            self._points[p.id] = p
        self._next_id += len(points)

    def tell(self, ids: Any, y: Any, *, reasons: Any = None, transient: Any = None) -> None:
        """Report values for asked points, in any order and in any subsets.

        Args:
            ids: ids from ``ask`` (a list, array, tensor, or one int).
            y: values ``(n,)``; NaN, ±inf or ``None`` mark a failed evaluation (recorded,
               excluded from fitting, state "failed"). By default a failed evaluation is a
               **design failure** (``transient=False``): the oracle said the design failed.
            reasons: why the failed points failed (``history["reason"]``): a sequence with one
               ``str`` or ``None`` per id, or a mapping ``{id: reason}``.
            transient: which failed points failed for reasons that say nothing about the
               design (a worker died, a job timed out, a sample was dropped): ``True`` for
               all, a sequence of bools (one per id) or a collection of ids.

        Raises ``KeyError`` (unknown id), ``ValueError`` (already told, duplicates, wrong
        length, a reason or a transient flag given for a finite value) or ``TypeError``
        (non-numeric); the state is unchanged when it raises.
        """
        id_list = inputs.as_ids(ids)
        if not id_list:
            raise ValueError("tell needs at least one id")
        values = inputs.as_values(y, len(id_list), self.dtype)
        why = inputs.as_reasons(reasons, id_list)
        flags = inputs.as_transient(transient, id_list)
        inputs.check_tell(self._points, id_list, values, why, flags)
        now = time.time()
        updates = [
            (i, state_of(v), float(v), now, r, t)
            for i, v, r, t in zip(id_list, values.tolist(), why, flags)
        ]
        if self._store is not None:
            self._store.record_tells(updates)
        for i, state, v, t, r, flag in updates:
            p = self._points[i]
            p.state, p.value, p.told_at, p.reason, p.transient = state, v, t, r, flag

    def tell_external(
        self,
        x: Any,
        y: Any,
        *,
        reasons: Any = None,
        transient: Any = None,
        conditions: Any = None,
    ) -> list[int]:
        """Add observations the optimizer did not ask for, e.g. a lab's archive (the offline
        and warm-start workflow, docs/offline.md): designs ``x (n, *shape)`` (tensor or numpy
        array) and values ``y (n,)``; NaN, ±inf or ``None`` mark a failed point (by default a
        **design failure**, as in :meth:`tell`).

        Args:
            reasons: why the failed rows failed: a sequence with one ``str`` or ``None`` per
                row, or a mapping ``{row index: reason}``.
            transient: which failed rows failed for reasons that say nothing about the design:
                ``True`` for all, a sequence of bools (one per row) or a collection of row
                indices.
            conditions: for a conditional prior, the condition each row was made under (one
                per row: class labels, prompts or embedding tensors).

        Returns the new ids (one per row, in row order). The points are recorded with source
        ``"external"`` and no trajectory, and are fitted at the next ``ask`` (a new round, so
        its batch is already fine-tuned against them). Raises like :meth:`tell` (a reason or a
        transient flag for a finite value is a ``ValueError``); nothing is recorded when it
        raises.
        """
        xt = inputs.as_designs(x, self.shape, self.device, self.dtype)
        values = inputs.as_values(y, xt.shape[0], self.dtype)
        conds = None if conditions is None else self._check_conditions(conditions, xt.shape[0])
        if conds is None and getattr(self, "conditional", False):
            raise TypeError(
                f"{type(self).__name__} samples a conditional prior: pass the conditions the "
                "external designs were made under (conditions=...)"
            )
        cs = [None] * xt.shape[0] if conds is None else conds
        n = xt.shape[0]
        rows = list(range(n))
        why = inputs.as_reasons(reasons, rows)
        flags = inputs.as_transient(transient, rows)
        inputs.check_external(values, why, flags)
        now = time.time()
        ids = list(range(self._next_id, self._next_id + n))
        x_cpu = xt.to("cpu")
        points = [
            Point(
                i,
                self.round,
                "external",
                state_of(v),
                float(v),
                now,
                now,
                x_cpu[k].clone(),
                reason=why[k],
                transient=flags[k],
                condition=cs[k],
            )
            for k, (i, v) in enumerate(zip(ids, values.tolist()))
        ]
        self._add(points, snapshot_state=False)
        return ids

    def mark_failed(self, ids: Any, reason: str = "", *, transient: bool = True) -> None:
        """Mark points failed after the fact (a bad assay, a mistyped value, a broken run).

        Complete points keep their told value (shown in ``history``) but leave the
        surrogate's training data: the next ``ask`` refits without them (a new round).
        Pending points become failed without a value.

        Args:
            ids: ids of pending or complete points (asked or external).
            reason: why, stored with each point (``history["reason"]``).
            transient: ``True`` (default): the failure says nothing about the design (it was
                a mistake, a lost sample, a contaminated plate: exclude the value);
                ``False``: the design itself failed (it is infeasible).

        Raises ``KeyError`` (unknown id), ``ValueError`` (already failed, duplicates) or
        ``TypeError``; nothing changes when it raises.
        """
        if not isinstance(reason, str):
            raise TypeError(f"reason must be a string, got {type(reason).__name__}")
        if not isinstance(transient, (bool, np.bool_)):
            raise TypeError(f"transient must be a bool, got {type(transient).__name__}")
        transient = bool(transient)
        id_list = inputs.check_mark_failed(self._points, inputs.as_ids(ids))
        refit = self._refit_pending or any(self._points[i].state == "complete" for i in id_list)
        why = reason or None
        now = time.time()
        updates = [(i, self._points[i].value, why, now, transient) for i in id_list]
        if self._store is not None:
            self._store.mark_failed(updates, {**persist.counters(self), "refit_pending": refit})
        for i in id_list:
            p = self._points[i]
            p.state, p.reason, p.transient = "failed", why, transient
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

        A value the model cannot take (non-finite, or beyond :attr:`value_limit`) is that
        point's design failure, told with a reason (the oracle's own ``failures``, and its
        ``transient_failures`` as transient) while the rest of the batch is told
        (:func:`~sqdf_bbo.optimizers.inputs.oracle_output`). Returns ``history``. If the
        oracle raises or returns no ``n`` numbers, its batch stays pending and the error
        propagates (nothing told is lost).
        """
        budget = inputs.check_count(budget, "budget")
        bs = self.batch_size if batch_size is None else inputs.check_count(batch_size, "batch_size")
        used = 0
        with progress_bar(total=budget, progress=progress, desc=type(self).__name__) as bar:
            while used < budget:
                batch = self.ask(min(bs, budget - used))
                y = oracle(batch.x)
                values, reasons, transient = inputs.oracle_output(oracle, y, batch.ids, self.dtype)
                self.tell(batch.ids, values, reasons=reasons, transient=transient)
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
        reason, transient.

        ``value`` is NaN while pending and the told value for failed points (NaN/±inf, or
        the value a point had when :meth:`mark_failed` excluded it); ``reason`` says why a
        point failed when someone said (``None`` otherwise); ``transient`` is ``True`` for
        failed points whose failure says nothing about the design (``False`` otherwise).
        """
        return history_frame(self._points.values())

    def designs(self, ids: Any | None = None) -> torch.Tensor:
        """Designs ``(n, *shape)`` of the given ids (all points, in id order, if ``None``)."""
        if ids is None:
            id_list = sorted(self._points)
        else:
            id_list = inputs.as_ids(ids)
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
        """Told points (complete, plus failed if asked) with their designs and values;
        ``states`` and ``transient`` tell complete, design-failed and transient-failed apart."""
        keep = ("complete", "failed") if include_failed else ("complete",)
        return observations_of(self._points.values(), keep, self.shape, self.dtype, self.device)

    def best(self) -> Best | None:
        """The highest successful observation (``None`` before any)."""
        return best_of(self._points.values(), self.device)

    def metrics(self) -> dict[str, float]:
        """Round, counts and the algorithm's own diagnostics (``_metrics``)."""
        out: dict[str, float] = {"round": float(self.round)}
        out.update({f"n_{k}": float(v) for k, v in self.counts().items()})
        if self.constraints is not None:
            out["constraint_acceptance"] = float(self.constraint_acceptance)
        out.update(self._metrics())
        return out

    @property
    def study(self) -> Path | None:
        """The study folder this optimizer writes through to (``None`` if in memory only)."""
        return None if self._store is None else self._store.path

    def __repr__(self) -> str:
        counts = ", ".join(f"{k}={v}" for k, v in self.counts().items())
        where = f", study={str(self.study)!r}" if self.study else ""
        return (
            f"{type(self).__name__}(shape={self.shape}, batch_size={self.batch_size}, "
            f"seed={self.seed}, round={self.round}, {counts}{where})"
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
    def save(self, path: str | Path) -> Path:
        """Write the whole study (observations, weights, RNG states, config) to ``path``.

        ``path`` must be new/empty, this optimizer's own study folder, or a folder an
        earlier ``save`` of this same study wrote (it is then updated in place).
        """
        return persist.save(self, path)

    @classmethod
    def load(
        cls: type[T],
        path: str | Path,
        *,
        attach: bool = True,
        device: torch.device | str | None = None,
        config_changes: Mapping[str, Any] | None = None,
        **runtime: Any,
    ) -> T:
        """Load a study written by ``save`` or ``study=``.

        Args:
            path: the study folder.
            attach: keep writing through to ``path`` (resume the study); ``False`` loads a
                detached in-memory copy and never writes to ``path``.
            device: move the optimizer there (default: the saved prior's device, CPU).
            config_changes: settings to change, ``{dotted key: value}`` of the optimizer's
                ``config_class`` (e.g. ``{"finetune.lr": 1e-4}``), checked like a new config;
                an attached load records them in the study (when, old and new values) and
                later loads use them.
            runtime: constructor arguments that cannot be stored in a study folder because
                they are code, e.g. ``feature_map=`` of :class:`~sqdf_bbo.SQDF`; pass the same
                ones as when the study was made.

        A corrupted or foreign folder raises :class:`StudyError` and nothing on disk changes.
        Attaching takes the study's writer lock first (a second writer gets that error at
        once). A detached load may run while a writer works: it reads one committed state
        and retries when the writer replaced the snapshot it was reading.
        """
        resolve = partial(class_for_study, requested=None if cls is Optimizer else cls)
        changes = dict(config_changes or {})
        return persist.load(
            path, resolve, attach=attach, device=device, runtime=runtime, changes=changes
        )
