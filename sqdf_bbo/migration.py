"""Old setting names read where old text meets the package: a stored study's settings.

:func:`migrate` rewrites them with today's names (:data:`sqdf_bbo.deprecation.RENAMED_SETTINGS`),
each old name with a :class:`DeprecationWarning` naming the new key; ``--set`` keys go
through :func:`sqdf_bbo.config.setting_key`. Python code never needs either: it spells every
setting the one current way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqdf_bbo.config import ConfigError, nested_class
from sqdf_bbo.deprecation import CHAINED, deprecate, renamed_settings

__all__ = ["migrate"]


def migrate(config_class: type, d: Mapping[str, Any], dim: int | None = None) -> dict[str, Any]:
    """Stored settings ``d`` (a study's, or ``--set`` keys) with every old name
    (:data:`~sqdf_bbo.deprecation.RENAMED_SETTINGS`) replaced by its new (dotted) key, each
    with a :class:`DeprecationWarning`, in nested configs too (mappings and dotted keys).
    A class's ``migrate_legacy(d, dim)`` (a classmethod) then rewrites what is not a plain
    rename; ``dim`` is the design dimension D where it is known.

    Raises:
        ConfigError: an old name and its new key both given.
    """
    renamed = renamed_settings(config_class)
    out: dict[str, Any] = {}
    for key, value in d.items():
        new = renamed.get(key, key)
        if new != key and new not in CHAINED:
            deprecate(f"the setting {key!r} of {config_class.__name__}", repr(new), stacklevel=4)
        if new in out:
            raise ConfigError(
                f"{config_class.__name__}: {key!r} is the old name of {new!r}; give one of them"
            )
        out[new] = value
    result: dict[str, Any] = {}
    parts: dict[str, dict[str, Any]] = {}
    for key, value in out.items():
        head, dot, rest = str(key).partition(".")
        nested = nested_class(config_class, head)
        if nested is not None and dot:
            parts.setdefault(head, {})[rest] = value
        elif nested is not None and isinstance(value, Mapping):
            result[key] = migrate(nested, value, dim)
        else:
            result[key] = value
    for head, part in parts.items():
        nested = nested_class(config_class, head)
        for key, value in migrate(nested, part, dim).items():  # type: ignore[arg-type]
            result[f"{head}.{key}"] = value
    legacy = getattr(config_class, "migrate_legacy", None)
    return legacy(result, dim) if legacy is not None else result
