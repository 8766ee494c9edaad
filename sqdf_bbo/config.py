"""Type checks for the frozen config dataclasses, and typed parsing of their fields from text.

Every config dataclass calls :func:`check_fields` first thing in its ``__post_init__``;
the range checks that follow it may then rely on the declared types. Rules, read from
the resolved type hints of ``dataclasses.fields``:

- ``bool``: ``True``/``False`` only (numpy booleans are converted); never a number.
- ``int``: an integral number, never a bool. A float with an integral value (``3.0``)
  is converted to ``3``; ``2.5``, ``inf`` and ``nan`` are errors.
- ``float``: a real number, never a bool; converted to ``float``. It must be finite
  unless the field's metadata sets :data:`ALLOW_NONFINITE`
  (``field(default=math.inf, metadata={ALLOW_NONFINITE: True})``).
- ``str``, ``Literal[...]``, ``X | None``, ``tuple[X, ...]`` (lists are converted),
  ``list[X]``, ``dict``/``Mapping`` (string keys when declared so), dataclass and plain
  class types (``isinstance``). ``Any`` and other typing constructs are not checked.

All problems of one object are reported together in one :class:`ConfigError`, which is
both a ``ValueError`` and a ``TypeError`` (callers may catch either).

:func:`parse_field` turns the text of a command-line ``--set KEY=VALUE`` into a value of
the field's declared type (see its docstring for the accepted spellings).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import numbers
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, Union

import numpy as np

__all__ = [
    "ALLOW_NONFINITE",
    "ConfigError",
    "check_fields",
    "parse_field",
    "field_names",
    "as_config",
]

ALLOW_NONFINITE = "allow_nonfinite"
"""Field metadata key: a float field with ``{ALLOW_NONFINITE: True}`` accepts ±inf and nan."""

_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no")
_NONE = ("none", "null")


class ConfigError(ValueError, TypeError):
    """A config field has the wrong type, or a ``--set`` key or value is invalid."""


class _Mismatch(Exception):
    """One value does not fit one declared type (message: what was expected)."""


# ---------------------------------------------------------------------------- type hints
@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """Resolved field types; a field whose annotation cannot be resolved is not checked."""
    try:
        return typing.get_type_hints(cls)
    except (NameError, TypeError):  # e.g. a class defined in a function, with forward refs
        return {f.name: f.type for f in dataclasses.fields(cls) if not isinstance(f.type, str)}


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "None"
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__name__
    if _is_union(tp):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    return str(tp).replace("typing.", "")


def field_names(config_class: type) -> list[str]:
    """The names of ``config_class``'s dataclass fields, in declaration order."""
    return [f.name for f in dataclasses.fields(config_class)]


def _allows_nonfinite(f: dataclasses.Field) -> bool:
    return bool(f.metadata.get(ALLOW_NONFINITE, False))


# ---------------------------------------------------------------------------- coercion
def _coerce_number(value: Any, tp: type, nonfinite: bool) -> Any:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise _Mismatch(f"expected {tp.__name__}, got {type(value).__name__} {value!r}")
    if tp is float:
        out = float(value)
        if not nonfinite and not math.isfinite(out):
            raise _Mismatch(f"expected a finite float, got {value!r}")
        return out
    if isinstance(value, numbers.Integral):
        return int(value)
    if math.isfinite(value) and float(value).is_integer():
        return int(value)
    raise _Mismatch(f"expected an integer, got {value!r}")


def _coerce_sequence(value: Any, tp: Any, nonfinite: bool) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise _Mismatch(f"expected {_type_name(tp)}, got {type(value).__name__} {value!r}")
    if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
        if len(value) != len(args):
            raise _Mismatch(f"expected {len(args)} items, got {len(value)}")
        return tuple(_coerce(v, a, nonfinite) for v, a in zip(value, args))
    item = args[0] if args else Any
    items = [_coerce(v, item, nonfinite) for v in value]
    return tuple(items) if origin is tuple else items


def _coerce_mapping(value: Any, tp: Any) -> Any:
    if not isinstance(value, Mapping):
        raise _Mismatch(f"expected a mapping, got {type(value).__name__} {value!r}")
    args = typing.get_args(tp)
    if args and args[0] is str:
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise _Mismatch(f"expected string keys, got {bad[0]!r}")
    return value


def _coerce_union(value: Any, tp: Any, nonfinite: bool) -> Any:
    args = typing.get_args(tp)
    if value is None:
        if type(None) in args:
            return None
        raise _Mismatch(f"expected {_type_name(tp)}, got None")
    options = [a for a in args if a is not type(None)]
    errors = []
    for arg in options:
        try:
            return _coerce(value, arg, nonfinite)
        except _Mismatch as err:
            errors.append(str(err))
    if len(errors) == 1:  # X | None: X's own message (e.g. "expected a finite float")
        raise _Mismatch(errors[0])
    raise _Mismatch(f"expected {_type_name(tp)}, got {type(value).__name__} {value!r}")


def _coerce(value: Any, tp: Any, nonfinite: bool) -> Any:
    """``value`` converted to ``tp`` (or unchanged); raises :class:`_Mismatch`."""
    if tp is Any or isinstance(tp, (str, typing.TypeVar)):
        return value
    origin = typing.get_origin(tp)
    if _is_union(tp):
        return _coerce_union(value, tp, nonfinite)
    if origin is Literal:
        choices = typing.get_args(tp)
        if any(value == c and type(value) is type(c) for c in choices):
            return value
        raise _Mismatch(f"expected {_type_name(tp)}, got {value!r}")
    if tp is bool:
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        raise _Mismatch(f"expected a bool (True or False), got {type(value).__name__} {value!r}")
    if tp in (int, float):
        return _coerce_number(value, tp, nonfinite)
    if tp is str:
        if isinstance(value, str):
            return value
        raise _Mismatch(f"expected a str, got {type(value).__name__} {value!r}")
    if origin in (tuple, list):
        return _coerce_sequence(value, tp, nonfinite)
    if origin is not None and isinstance(origin, type) and issubclass(origin, Mapping):
        return _coerce_mapping(value, tp)
    if isinstance(tp, type):
        if isinstance(value, tp):
            return value
        raise _Mismatch(f"expected {tp.__name__}, got {type(value).__name__} {value!r}")
    return value  # Callable, Protocol, ...: not checked


# ---------------------------------------------------------------------------- public API
def check_fields(obj: Any) -> None:
    """Check (and normalize) the types of every field of a frozen dataclass instance.

    Call it first in ``__post_init__``. Numbers are converted to the declared ``int`` /
    ``float``, lists to declared tuples (written back with ``object.__setattr__``).

    Raises:
        ConfigError: listing every field whose value does not fit its declared type.
    """
    cls = type(obj)
    hints = _hints(cls)
    problems: list[str] = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        try:
            new = _coerce(value, hints.get(f.name, Any), _allows_nonfinite(f))
        except _Mismatch as err:
            problems.append(f"{f.name}: {err}")
            continue
        if new is not value:
            object.__setattr__(obj, f.name, new)
    if problems:
        raise ConfigError(f"invalid {cls.__name__}: " + "; ".join(problems))


def _parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise _Mismatch(f"expected a bool (true/false, 1/0, yes/no), got {text!r}")


def _parse_number(text: str, tp: type, nonfinite: bool) -> Any:
    try:
        value: Any = int(text.strip()) if tp is int else float(text.strip())
    except ValueError:
        try:
            value = float(text.strip())
        except ValueError:
            raise _Mismatch(
                f"expected {'an integer' if tp is int else 'a number'}, got {text!r}"
            ) from None
    return _coerce_number(value, tp, nonfinite)


def _parse_json(text: str, tp: Any) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise _Mismatch(f"expected JSON for {_type_name(tp)}, got {text!r} ({err.msg})") from None


def _parse_sequence(text: str, tp: Any, nonfinite: bool) -> Any:
    if text.strip().startswith("["):
        return _coerce_sequence(_parse_json(text, tp), tp, nonfinite)
    args = typing.get_args(tp)
    item = args[0] if args else str
    parts = [p.strip() for p in text.split(",")] if text.strip() else []
    items = [_parse(p, item, nonfinite) for p in parts]
    return _coerce_sequence(items, tp, nonfinite)


def _parse(text: str, tp: Any, nonfinite: bool) -> Any:
    origin = typing.get_origin(tp)
    if _is_union(tp):
        args = typing.get_args(tp)
        if type(None) in args and text.strip().lower() in _NONE:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _parse(text, arg, nonfinite)
            except _Mismatch as err:
                errors.append(str(err))
        raise _Mismatch("; or ".join(errors))
    if origin is Literal:
        for choice in typing.get_args(tp):
            if text.strip() == str(choice):
                return choice
        raise _Mismatch(f"expected {_type_name(tp)}, got {text!r}")
    if tp is bool:
        return _parse_bool(text)
    if tp in (int, float):
        return _parse_number(text, tp, nonfinite)
    if tp is str or tp is Any:
        return text
    if origin in (tuple, list):
        return _parse_sequence(text, tp, nonfinite)
    return _coerce(_parse_json(text, tp), tp, nonfinite)


def parse_field(config_class: type, name: str, text: str) -> Any:
    """The value of field ``name`` of ``config_class`` written as ``text`` (``--set`` syntax).

    Accepted spellings: bool ``true/false/1/0/yes/no`` (any case); int ``3`` (``3.0`` is
    read as 3, ``2.5`` is an error); float ``1e-3`` (``inf``/``nan`` only for fields that
    allow them); ``none``/``null`` for optional fields; tuples as a JSON list or comma
    separated; mappings (e.g. ``surrogate_options``) and anything else as JSON.

    Raises:
        ConfigError: unknown field (the message lists the valid ones) or a bad value.
    """
    fields = {f.name: f for f in dataclasses.fields(config_class)}
    if name not in fields:
        raise ConfigError(
            f"unknown {config_class.__name__} field {name!r}; valid fields: " + ", ".join(fields)
        )
    tp = _hints(config_class).get(name, Any)
    try:
        return _parse(text, tp, _allows_nonfinite(fields[name]))
    except _Mismatch as err:
        raise ConfigError(f"{config_class.__name__}.{name}: {err}") from None


def as_config(config: Any, config_class: type) -> Any:
    """An optimizer's ``config=`` argument as a ``config_class`` instance: ``None`` gives the
    defaults, a mapping its fields (through ``config_class.from_dict`` when the class has
    one, which rejects unknown names), an instance itself; anything else is a ``TypeError``."""
    if config is None:
        return config_class()
    if isinstance(config, Mapping):
        from_dict = getattr(config_class, "from_dict", None)
        return from_dict(config) if from_dict is not None else config_class(**dict(config))
    if not isinstance(config, config_class):
        raise TypeError(f"config must be a {config_class.__name__}, got {type(config).__name__}")
    return config
