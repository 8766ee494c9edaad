"""What the CLI asks of the library: priors and methods by name, ``--set`` values typed by the
method's config, loading a study, and checking a file's ``study`` and ``x`` columns against it."""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sqdf_bbo.cli.csvio import (
    DESIGN_ATOL,
    DESIGN_RTOL,
    Rows,
    has_designs,
    read_designs,
)
from sqdf_bbo.cli.errors import CLIError
from sqdf_bbo.config import ConfigError, parse_field, setting_key
from sqdf_bbo.diffusion.prior import DiffusionPrior
from sqdf_bbo.diffusion.priors import available_priors, load_prior
from sqdf_bbo.diffusion.units import DesignUnits
from sqdf_bbo.optimizers import Optimizer
from sqdf_bbo.optimizers.registry import OPTIMIZERS  # the package registers all
from sqdf_bbo.study.persist import flat_settings
from sqdf_bbo.study.store import StudyStore

__all__ = [
    "open_prior",
    "config_class",
    "parse_sets",
    "optimizer_classes",
    "load_study",
    "study_uid",
    "check_study_column",
    "check_told_designs",
    "status_of",
    "settings_of",
    "study_class",
    "recorded_changes",
]


def open_prior(name: str, device: str) -> DiffusionPrior:
    """A saved prior folder, or an embedded prior by name."""
    if Path(name).is_dir():
        return DiffusionPrior.load(name, device=device)
    names = available_priors()
    if name not in names:
        raise CLIError(
            f"unknown prior {name!r}; available: {', '.join(names) or 'none'} (or a folder)"
        )
    return load_prior(name, device=device)


def config_class(cls: type) -> type | None:
    """The config dataclass a method's ``config=`` takes (``config_class`` or its annotation)."""
    found = getattr(cls, "config_class", None)
    if found is not None:
        return found
    try:
        hint = typing.get_type_hints(cls.__init__).get("config")
    except Exception:  # unresolvable annotations: fall back to untyped values
        return None
    options = typing.get_args(hint) or (hint,)
    return next((a for a in options if isinstance(a, type) and dataclasses.is_dataclass(a)), None)


def _parse_untyped(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def parse_sets(items: Sequence[str], config_class: type | None) -> dict[str, Any]:
    """``--set KEY=VALUE`` items, each value parsed by the type of the config field KEY."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise CLIError(f"--set expects KEY=VALUE, got {item!r}")
        if config_class is None:
            out[key] = _parse_untyped(raw)
        else:
            new = setting_key(config_class, key)  # an old name: warned, read as the new key
            try:
                out[new] = parse_field(config_class, new, raw)
            except ConfigError as err:
                raise ConfigError(
                    f"{err} ({key} is now {new})" if new != key else str(err)
                ) from None
    return out


def optimizer_classes() -> dict[str, type]:
    """The methods the shell can create, by name (every registered optimizer)."""
    return dict(OPTIMIZERS)


def load_study(
    path: str, attach: bool = True, config_changes: dict[str, Any] | None = None
) -> Optimizer:
    """The study in folder ``path`` (every built-in method is registered by the imports),
    with ``config_changes`` applied (and recorded when attached)."""
    return Optimizer.load(path, attach=attach, config_changes=config_changes)


def study_class(path: str) -> type:
    """The optimizer class of the study at ``path``, read from its metadata (without
    building the optimizer, which its settings may not allow)."""
    store = StudyStore.open(path, read_only=True)
    try:
        method = str(store.read_meta().get("method"))
    finally:
        store.close()
    cls = optimizer_classes().get(method)
    if cls is None:
        raise CLIError(f"{path}: unknown method {method!r}")
    return cls


def settings_of(opt: Optimizer) -> dict[str, Any]:
    """An optimizer's settings by dotted key (``finetune.lr``)."""
    config = getattr(opt, "config", None)
    if config is None or not dataclasses.is_dataclass(config):
        raise CLIError(f"method {opt.method!r} has no settings")
    return flat_settings(config)


def recorded_changes(path: str) -> list[dict[str, Any]]:
    """The setting changes recorded in the study at ``path``, oldest first."""
    store = StudyStore.open(path, read_only=True)
    try:
        return list(store.read_meta().get("config_changes", []))
    finally:
        store.close()


def study_uid(opt: Optimizer) -> str:
    """The uid shared by every copy of a study (store meta ``study_uid``)."""
    return str(opt.study_uid)


def check_study_column(header: list[str], rows: Rows, opt: Optimizer, path: str) -> None:
    """A ``study`` column, when present, must name ``opt``'s study on every row."""
    if "study" not in header:
        return
    uid = study_uid(opt)
    for line, r in rows:
        if r["study"] != uid:
            raise CLIError(
                f"{path} line {line}: this row is from another study (study {r['study']!r}, "
                f"this study is {uid}); nothing was changed"
            )


def units_of(opt: Optimizer) -> DesignUnits | None:
    """The units the study's CSV files carry designs in (its prior's ``units``), if any."""
    units = getattr(getattr(opt, "prior", None), "units", None)
    return units if isinstance(units, DesignUnits) else None


def check_told_designs(
    header: list[str], rows: Rows, ids: list[int], opt: Optimizer, path: str
) -> None:
    """When a results file has x columns, each known id's row must match its stored design."""
    units = units_of(opt)
    if not has_designs(header, units):
        return
    given = read_designs(header, rows, int(np.prod(opt.shape)), path, units)
    known = set(int(i) for i in opt.history["id"])
    picked = [k for k, i in enumerate(ids) if i in known]  # unknown ids: reported by tell
    if not picked:
        return
    stored = opt.designs([ids[k] for k in picked]).reshape(len(picked), -1)
    stored = stored.double().cpu().numpy()
    for row, k in zip(stored, picked):
        x = np.asarray(given[k], dtype=np.float64)
        if not np.allclose(x, row, rtol=DESIGN_RTOL, atol=DESIGN_ATOL):
            diff = float(np.nanmax(np.abs(x - row))) if np.isfinite(x).all() else math.nan
            raise CLIError(
                f"{path} line {rows[k][0]}: the design columns of id {ids[k]} differ from the design "
                f"asked under that id (largest difference {diff:.3g}); is the file from another "
                "study? nothing was changed"
            )


def status_of(opt: Optimizer) -> dict[str, Any]:
    """``sqdf-bbo status --json``: the study's settings, counts and best value."""
    h = opt.history
    best = opt.best()
    c = opt.counts()
    out: dict[str, Any] = {
        "study": str(opt.study) if opt.study else None,
        "method": opt.method,
        "shape": list(opt.shape),
        "batch_size": opt.batch_size,
        "seed": opt.seed,
        "round": opt.round,
        "points": len(h),
        "pending": c["pending"],
        "complete": c["complete"],
        "failed": c["failed"],
        "failed_transient": int(h["transient"].sum()) if len(h) else 0,
        "failed_design": c["failed"] - (int(h["transient"].sum()) if len(h) else 0),
        "external": int((h["source"] == "external").sum()) if len(h) else 0,
        "best_value": None if best is None else best.value,
        "best_id": None if best is None else best.id,
    }
    prior = getattr(opt, "prior", None)
    if prior is not None:
        out["prior"] = prior.name
    return out
