"""Optimizer classes by ``method`` name, for ``Optimizer.load`` and the CLI.

Every subclass of :class:`~sqdf_bbo.optimizers.base.Optimizer` that sets ``method`` registers
itself here when its class statement runs. The built-in optimizers are imported by
``sqdf_bbo/optimizers/__init__.py``, so they are registered as soon as anything from this
package is imported; a user's optimizer is registered once its module is imported. Nothing
named inside a study folder is ever imported.
"""

from __future__ import annotations

from typing import Any

__all__ = ["register", "registered_methods", "lookup"]

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
