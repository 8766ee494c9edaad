"""Optimizer classes by ``method`` name, for ``Optimizer.load`` and the CLI.

Every subclass of :class:`~sqdf_bbo.optimizers.base.Optimizer` that sets ``method`` registers
itself here when its class statement runs. The built-in optimizers are imported by
``sqdf_bbo/optimizers/__init__.py``, so they are registered as soon as anything from this
package is imported; a user's optimizer is registered once its module is imported. Nothing
named inside a study folder is ever imported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqdf_bbo.study.store import StudyError

__all__ = ["register", "registered_methods", "lookup", "class_for_study"]

_REGISTRY: dict[str, type[Any]] = {}


def register(name: str, cls: type[Any]) -> None:
    """Record ``cls`` under ``name`` (a later class of the same name replaces it)."""
    _REGISTRY[name] = cls


def registered_methods() -> dict[str, type[Any]]:
    """Optimizer classes known to ``Optimizer.load``, by their ``method`` name."""
    return dict(_REGISTRY)


def lookup(name: str) -> type[Any] | None:
    """The optimizer class registered as ``name``, or ``None``."""
    return _REGISTRY.get(name)


def class_for_study(method: str, where: Path, requested: str | None) -> type[Any]:
    """The class that loads the study at ``where``, made by ``method``.

    ``requested``: the ``method`` of the class whose ``load`` was called, ``None`` for the
    base ``Optimizer.load`` (any method). ``StudyError`` when the two differ or when
    ``method`` is not registered.
    """
    target = lookup(method)
    if requested is not None and requested != method:
        raise StudyError(
            f"the study at {where} was made by method {method!r}, not {requested!r}; "
            "load it with sqdf_bbo.Optimizer.load or the matching class"
        )
    if target is None:
        raise StudyError(
            f"the study at {where} uses method {method!r}, which is not registered; "
            f"known methods: {sorted(registered_methods())} (import the module that defines it first)"
        )
    return target
