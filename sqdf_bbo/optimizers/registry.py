"""Optimizer classes by ``method`` name: the one registry that ``Optimizer.load``, the CLI
(``sqdf-bbo init --method``) and the benchmarks (``sqdf-bbo bench --methods``) read.

Every subclass of :class:`~sqdf_bbo.optimizers.base.Optimizer` that sets ``method`` registers
itself in :data:`OPTIMIZERS` when its class statement runs. The built-in optimizers are
imported by ``sqdf_bbo/optimizers/__init__.py``, so they are registered as soon as anything
from this package is imported; a user's optimizer is registered once its module is imported.
Nothing named inside a study folder is ever imported.

:func:`build` makes any registered optimizer from the parts a problem has (a prior, a box),
reading what its constructor takes: the CLI and the benchmarks build through it.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from sqdf_bbo.registry import Registry
from sqdf_bbo.study.errors import StudyError

__all__ = [
    "OPTIMIZERS",
    "register",
    "registered_methods",
    "lookup",
    "class_for_study",
    "build",
]

OPTIMIZERS: Registry[type[Any]] = Registry("optimizer")
"""Optimizer classes by ``method`` name."""


def register(name: str, cls: type[Any]) -> None:
    """Record ``cls`` under ``name`` (a later class of the same name replaces it)."""
    OPTIMIZERS.register(name, cls)


def registered_methods() -> dict[str, type[Any]]:
    """Optimizer classes known to ``Optimizer.load``, by their ``method`` name."""
    return dict(OPTIMIZERS)


def lookup(name: str) -> type[Any] | None:
    """The optimizer class registered as ``name``, or ``None``."""
    return OPTIMIZERS.get(name, None)


def class_for_study(method: str, where: Path, requested: type[Any] | None) -> type[Any]:
    """The class that loads the study at ``where``, made by ``method``.

    ``requested``: the class whose ``load`` was called (it loads its own studies, registered
    or not), ``None`` for the base ``Optimizer.load`` (the registered class of ``method``).
    ``StudyError`` when the two methods differ or when ``method`` is not registered.
    """
    if requested is not None:
        if requested.method != method:
            raise StudyError(
                f"the study at {where} was made by method {method!r}, not "
                f"{requested.method!r}; load it with sqdf_bbo.Optimizer.load or the matching class"
            )
        return requested
    target = lookup(method)
    if target is None:
        raise StudyError(
            f"the study at {where} uses method {method!r}, which is not registered; "
            f"known methods: {sorted(registered_methods())} (import the module that defines it first)"
        )
    return target


def build(cls: type[Any], prior: Any, box: Any = None, **kwargs: Any) -> Any:
    """An optimizer of class ``cls`` for a problem given by a ``DiffusionPrior``: a class whose
    constructor takes ``prior`` first gets it; one that takes ``shape`` first (it searches a
    box, e.g. GP-BO) gets ``prior.shape`` and ``box`` (default ``prior.value_range``).
    ``kwargs`` (``batch_size``, ``seed``, ``config``, ``study``, ``constraints``, …) are
    passed on when the constructor takes them; ``constraints=None`` is dropped.

    Raises:
        ValueError: the constructor takes neither, or a box method has no box.
    """
    params = inspect.signature(cls.__init__).parameters
    given = {
        k: v for k, v in kwargs.items() if k in params and not (k == "constraints" and v is None)
    }
    unknown = sorted(set(kwargs) - set(params) - {"constraints"})
    if unknown:
        raise ValueError(f"method {cls.method!r} takes no {', '.join(unknown)}")
    first = next(iter(n for n in params if n != "self"), None)
    if first == "prior":
        return cls(prior, **given)
    if first == "shape":  # methods that search a box directly (e.g. gp-bo)
        box = box if box is not None else prior.value_range
        if box is None:
            raise ValueError(
                f"method {cls.method!r} searches a box and the prior is unbounded; give a box"
            )
        if "box" in params:
            given["box"] = tuple(box)
        return cls(prior.shape, **given)
    raise ValueError(
        f"method {cls.method!r} cannot be built from a prior (its first argument: {first!r})"
    )
