"""Saving an optimizer to a study folder and loading it back (the store: :mod:`.store`).

The study layer sits below the optimizers, so nothing here imports them: an optimizer is
anything with the attributes of :class:`Persistable`, and :func:`load` is told which class
rebuilds a study (``resolve``, given by :meth:`~sqdf_bbo.optimizers.base.Optimizer.load`,
which knows the registry).

A study holds, besides the points: a header written once (method, shape, dtype, batch size,
seed, study uid, the constructor ``spec`` with priors saved under ``objects/``), counters
updated with the points (:func:`counters`) and, after every ask, a snapshot of the state
(:func:`snapshot`: RNG states, round, the algorithm's ``state_dict()``). It reads and writes an
optimizer through its public interface only (:class:`Persistable`: ``ledger``, ``spec()``,
``state_dict()``, ``load_state_dict()``, ``settings_changed()``).

Settings can change after a study was made: ``load(..., changes=)`` applies dotted keys of
the method's ``config_class`` to the stored ``spec`` (:func:`changed_settings`), rebuilds the
optimizer with them, restores its state and calls its ``settings_changed``; an attached
load then rewrites ``spec`` and appends ``{"at": time, "changes": {key: [old, new]}}`` to
the ``config_changes`` metadata, in one commit.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
import typing
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

import numpy as np
import torch

from sqdf_bbo.config import config_from_dict, config_to_dict
from sqdf_bbo.diffusion.prior import DiffusionPrior
from sqdf_bbo.migration import migrate
from sqdf_bbo.study.codec import join_state, split_state
from sqdf_bbo.study.errors import SnapshotMissing, StudyError
from sqdf_bbo.study.ledger import Ledger
from sqdf_bbo.study.points import Point
from sqdf_bbo.study.store import StudyStore, is_study, lock_study

__all__ = [
    "Persistable",
    "counters",
    "create",
    "record_new",
    "save",
    "load",
    "changed_settings",
    "flat_settings",
]

T = TypeVar("T")
_LOAD_ATTEMPTS = 8  # detached loads racing a writer's snapshot replacement


class Persistable(Protocol):
    """What persisting needs of an optimizer: public attributes and methods only (all of
    them given by the ``Optimizer`` base); the study's bookkeeping is its :class:`Ledger`."""

    method: ClassVar[str]
    shape: tuple[int, ...]
    state_shape: tuple[int, ...]
    dtype: torch.dtype
    batch_size: int
    seed: int
    generator: torch.Generator
    np_rng: np.random.Generator
    ledger: Ledger
    constraints: Any  # sqdf_bbo.constraints.Constraints | None (names are stored)

    def spec(self) -> dict[str, Any]: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...
    def settings_changed(self, changes: dict[str, tuple[Any, Any]]) -> None: ...


# ---------------------------------------------------------------------------- what is stored
def counters(opt: Persistable) -> dict[str, Any]:
    """The metadata that changes with the points (committed with them)."""
    return opt.ledger.counters()


def snapshot(opt: Persistable) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The optimizer's state as (JSON, tensors): RNGs, round and ``state_dict()``."""
    extra_json, tensors = split_state(opt.state_dict(), prefix="extra")
    tensors["rng/torch"] = opt.generator.get_state().clone()
    state = {
        "extra": extra_json,
        "numpy_rng": opt.np_rng.bit_generator.state,
        "round": opt.ledger.round,
        "fitted_count": opt.ledger.fitted_count,
    }
    return state, tensors


def header(opt: Persistable) -> dict[str, Any]:
    """The metadata written once, at creation."""
    return {
        "method": opt.method,
        "class": f"{type(opt).__module__}.{type(opt).__qualname__}",
        "shape": list(opt.shape),
        "dtype": str(opt.dtype).removeprefix("torch."),
        "batch_size": opt.batch_size,
        "seed": opt.seed,
        "study_uid": opt.ledger.uid,
        "constraints": constraint_names(opt),
        # a latent prior's chains are not designs: their shape, for decoding them
        **({"state_shape": list(opt.state_shape)} if opt.state_shape != opt.shape else {}),
    }


def constraint_names(opt: Persistable) -> list[str]:
    """The names of ``opt``'s known constraints (code is not stored, names are)."""
    return [] if opt.constraints is None else list(opt.constraints.names)


def encoded_spec(opt: Persistable) -> tuple[dict[str, Any], dict[str, DiffusionPrior]]:
    """``spec()`` with DiffusionPriors replaced by ``{"__prior__": key}``; (json, priors)."""
    objects: dict[str, DiffusionPrior] = {}
    out: dict[str, Any] = {}
    for k, v in opt.spec().items():
        if isinstance(v, DiffusionPrior):
            objects[k] = v
            out[k] = {"__prior__": k}
        else:
            split, tensors = split_state(v)
            if tensors:
                raise TypeError(f"_spec entry {k!r} holds tensors; put them in _extra_state")
            out[k] = split
    return out, objects


# ---------------------------------------------------------------------------- writing
def _create_store(opt: Persistable, path: Path) -> StudyStore:
    spec_json, objects = encoded_spec(opt)

    def write_objects(folder: Path) -> None:
        for key, prior in objects.items():
            prior.save(folder / key)

    return StudyStore.create(path, {**header(opt), "spec": spec_json}, write_objects)


def _write_all(opt: Persistable, store: StudyStore) -> None:
    """A new snapshot, then every point and the pointer to it in one commit."""
    state, tensors = snapshot(opt)
    name = store.write_snapshot(state, tensors)
    store.replace_all(list(opt.ledger.points.values()), {**counters(opt), "snapshot": name})


def create(opt: Persistable, path: str | Path) -> StudyStore:
    """Create the study folder ``path`` (new or empty) holding ``opt`` as it is now; the
    returned store is open for writing and holds the study's lock."""
    store = _create_store(opt, Path(path))
    try:
        _write_all(opt, store)
    except BaseException:
        store.close()
        raise
    return store


def record_new(opt: Persistable, points: list[Point], snapshot_state: bool = True) -> None:
    """Commit new points (and, after an ask, a snapshot of the state) to ``opt``'s study."""
    store = opt.ledger.store
    if store is None:
        return
    meta = counters(opt)
    if snapshot_state:
        state, tensors = snapshot(opt)
        meta["snapshot"] = store.write_snapshot(state, tensors)
    store.insert_points(points, meta)
    if snapshot_state:
        store.prune_snapshots()


def save(opt: Persistable, path: str | Path) -> Path:
    """Write the whole study to ``path``: new/empty, ``opt``'s own study folder, or a folder
    an earlier ``save`` of this same study wrote (updated in place if nothing told there
    would be lost)."""
    path = Path(path).expanduser().absolute()
    if opt.ledger.store is not None and path == opt.ledger.store.path:
        store, own = opt.ledger.store, True
    elif is_study(path):
        store, own = StudyStore.open(path), False
        uid = store.read_meta().get("study_uid")
        if uid is None or uid != opt.ledger.uid:
            store.close()
            raise StudyError(f"{path} holds another study; save to a new folder or load that study")
        lost = _would_lose(opt, store)
        if lost:
            store.close()
            raise StudyError(
                f"{path} holds {len(lost)} observation(s) this optimizer does not have "
                f"(e.g. id {lost[0]}, told after it was loaded); saving would lose them — "
                "load the study again instead"
            )
    else:
        store, own = _create_store(opt, path), False
    try:
        _write_all(opt, store)
        store.prune_snapshots()
    finally:
        if not own:
            store.close()
    return path


def _would_lose(opt: Persistable, store: StudyStore) -> list[int]:
    """Ids whose stored state is newer than (or differs from) ``opt``'s."""
    lost = []
    for r in store.read_points():
        mine = opt.ledger.points.get(r.id)
        told_there = r.state != "pending"
        same = mine is not None and (
            mine.state == r.state
            and (mine.value == r.value or (math.isnan(mine.value) and math.isnan(r.value)))
        )
        if mine is None or (told_there and not same):
            lost.append(r.id)
    return lost


# ---------------------------------------------------------------------------- loading
def load(
    path: str | Path,
    resolve: Callable[[str, Path], Any],
    *,
    attach: bool,
    device: torch.device | str | None,
    runtime: Mapping[str, Any],
    changes: Mapping[str, Any] | None = None,
) -> Any:
    """The optimizer stored at ``path`` (see ``Optimizer.load``).

    ``resolve(method, path)`` returns the class that rebuilds a study of ``method`` (its
    ``_from_spec``) or raises :class:`StudyError`. With ``attach`` the writer lock is taken
    before the state is read and the returned optimizer writes through to ``path``.
    ``changes``: settings to change (:func:`changed_settings`); an attached load records
    them (metadata ``spec`` and ``config_changes``) before it returns.
    """
    path = Path(path).expanduser().absolute()
    lock_fd = None
    if attach:
        # validate read-only first (a failed load writes nothing, not even a .lock), then
        # take the writer lock before reading the state, so a second writer fails at once
        _retrying_snapshot_races(path, lambda store: None)
        lock_fd = lock_study(path)
    try:
        obj, record = _retrying_snapshot_races(
            path, lambda store: _load_from(store, resolve, device, runtime, changes or {})
        )
        if attach:
            store = StudyStore.open(path, lock_fd=lock_fd)
            lock_fd = None  # the store owns the lock now
            try:
                if record:
                    store.update_meta(record)
                store.prune_snapshots()
            except BaseException:
                store.close()
                raise
            obj.ledger.store = store
    finally:
        if lock_fd is not None:
            os.close(lock_fd)
    return obj


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


def _load_from(
    store: StudyStore,
    resolve: Callable[[str, Path], Any],
    device: torch.device | str | None,
    runtime: Mapping[str, Any],
    changes: Mapping[str, Any],
) -> tuple[Any, dict[str, Any]]:
    """The optimizer of ``store`` with the settings ``changes`` applied, and the metadata
    recording them (empty without changes)."""
    # 1. Read everything stored first (metadata, points, the referenced snapshot): a
    #    writer may replace the snapshot at any time, so the window between reading its
    #    pointer and its files stays milliseconds, before the slow rebuild below.
    meta = store.read_meta()
    points = store.read_points()
    snap = meta.get("snapshot")
    stored = None if snap is None else store.read_snapshot(str(snap))
    # 2. Rebuild the optimizer from its class and constructor spec (settings changed).
    target = resolve(str(meta.get("method")), store.path)
    record: dict[str, Any] = {}
    if changes:
        shape = meta.get("state_shape") or meta.get("shape") or (1,)  # the chains' D
        spec, diff = changed_settings(store.path, target, meta.get("spec"), changes, shape)
        entry = {"at": time.time(), "changes": {k: list(v) for k, v in diff.items()}}
        if diff:  # values equal to the current ones change (and record) nothing
            record = {"spec": spec, "config_changes": [*meta.get("config_changes", []), entry]}
        meta = {**meta, "spec": spec}
    obj = _rebuild(store, meta, target, device, runtime)
    # 3. Restore the points and the state (and let changed settings reach its parts).
    try:
        for p in points:
            p.x = p.x.to(obj.dtype)
            p.traj = None if p.traj is None else p.traj.to(obj.dtype)
        if stored is not None:
            _restore_state(obj, store.path, *stored, n_points=len(points))
        if changes:
            obj.settings_changed(diff)
    except StudyError:
        raise
    except Exception as err:
        what = "the changed settings" if changes else "the stored state"
        raise StudyError(f"{store.path}: {what} cannot be restored ({err})") from err
    ledger = obj.ledger
    ledger.points = {p.id: p for p in points}
    ledger.next_id = max(ledger.points, default=-1) + 1
    ledger.round = int(meta["round"])
    ledger.fitted_count = int(meta.get("fitted_count", 0))
    ledger.refit_pending = bool(meta.get("refit_pending", False))
    ledger.uid = meta["study_uid"]
    return obj, record


def changed_settings(
    where: Path, target: Any, spec: Any, changes: Mapping[str, Any], shape: Any = (1,)
) -> tuple[dict[str, Any], dict[str, tuple[Any, Any]]]:
    """The stored constructor ``spec`` with ``changes`` (dotted keys of ``target``'s
    ``config_class``) applied to its ``config``, and what changed (dotted key → (old, new)).
    Old names in either are migrated (``shape``: the study's design shape, whose size D
    converts an old α).
    ``StudyError`` when the method has no settings or a change is not a valid setting."""
    config_class = getattr(target, "config_class", None)
    if config_class is None or not isinstance(spec, dict) or "config" not in spec:
        raise StudyError(f"{where}: method {target.method!r} has no settings to change")
    dim = math.prod(int(s) for s in shape)
    try:  # the stored settings are not checked first: changing them repairs invalid ones
        stored = migrate(config_class, spec["config"], dim)
        new = config_from_dict(config_class, {**stored, **migrate(config_class, changes, dim)})
    except (TypeError, ValueError) as err:
        raise StudyError(f"{where}: cannot change the settings: {err}") from None
    before, after = _flat_stored(config_class, stored), flat_settings(new)
    diff = {k: (before.get(k), v) for k, v in after.items() if before.get(k) != v}
    return {**spec, "config": config_to_dict(new)}, diff


def _flat_stored(config_class: type, d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Stored settings (a dict, maybe invalid) by dotted key, like :func:`flat_settings`."""
    hints = typing.get_type_hints(config_class)
    out: dict[str, Any] = {}
    for k, v in d.items():
        inner = hints.get(k)
        if isinstance(v, Mapping) and isinstance(inner, type) and dataclasses.is_dataclass(inner):
            out.update(_flat_stored(inner, v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def flat_settings(config: Any, prefix: str = "") -> dict[str, Any]:
    """A config's settings as JSON values by dotted key (a nested config's fields as
    ``finetune.lr``; a mapping setting such as ``surrogate_options`` stays one value)."""
    plain = config_to_dict(config)
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            out.update(flat_settings(value, f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = plain[f.name]
    return out


def _rebuild(
    store: StudyStore,
    meta: dict[str, Any],
    target: Any,
    device: torch.device | str | None,
    runtime: Mapping[str, Any],
) -> Any:
    """``target._from_spec`` with the stored spec (its priors loaded from ``objects/``)."""
    try:
        spec: dict[str, Any] = {}
        for k, v in dict(meta.get("spec") or {}).items():
            if isinstance(v, dict) and set(v) == {"__prior__"}:
                folder = store.objects_dir / str(v["__prior__"])
                spec[k] = DiffusionPrior.load(folder, device=device or "cpu")
            else:
                spec[k] = v
        obj = target._from_spec(
            spec, batch_size=int(meta["batch_size"]), seed=int(meta["seed"]), **runtime
        )
    except StudyError:
        raise
    except Exception as err:
        raise StudyError(f"cannot rebuild the optimizer of {store.path}: {err}") from err
    if list(obj.shape) != list(meta["shape"]):
        raise StudyError(
            f"{store.path}: stored shape {meta['shape']} differs from the optimizer's {obj.shape}"
        )
    stored, given = list(meta.get("constraints") or []), constraint_names(obj)
    if stored != given:
        raise StudyError(
            f"{store.path}: this study was made with the known constraints {stored} but "
            f"{given} were given; constraints are code, which a study does not store: load "
            "it with the same ones, e.g. SQDF.load(path, constraints=[...])"
        )
    return obj


def _restore_state(
    obj: Persistable,
    where: Path,
    state: dict[str, Any],
    tensors: dict[str, torch.Tensor],
    n_points: int,
) -> None:
    """RNG states and ``load_state_dict`` from a snapshot."""
    try:
        obj.generator.set_state(tensors["rng/torch"])
    except RuntimeError:  # saved on another device kind: reseed deterministically
        warnings.warn(
            f"the random state in {where} was saved on another device kind; "
            "reseeding (results continue but are not bit-identical)",
            stacklevel=3,
        )
        obj.generator.manual_seed(obj.seed + 1_000_003 * (n_points + 1))
    obj.np_rng.bit_generator.state = state["numpy_rng"]
    obj.load_state_dict(join_state(state["extra"], tensors))
