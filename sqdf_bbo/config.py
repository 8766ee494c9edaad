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

Sane ranges: a config class lists the range of each numeric setting in a class attribute
``LIMITS`` (field name → :class:`Range`; merged over the base classes), and
:func:`check_fields` refuses a value outside it (``None`` is left to the field's type). The
ranges are wide — they refuse what cannot be meant (a learning rate of 1e300, a buffer of
1e12 trajectories), not what is merely unusual — and documented in the config's docstring
and in docs/ask_tell.md.

All problems of one object are reported together in one :class:`ConfigError`, which is
both a ``ValueError`` and a ``TypeError`` (callers may catch either).

:func:`parse_field` turns the text of a ``--set KEY=VALUE`` into a value of the field's
declared type; a nested config's field is named by a dotted key (``finetune.steps``).

:func:`config_to_dict` and :func:`config_from_dict` (de)serialize every config dataclass,
nested ones included, in today's names only; old names are read from stored studies
(:mod:`sqdf_bbo.migration`) and ``--set`` (:func:`setting_key`), with a warning.
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
from dataclasses import dataclass
from typing import Any, Literal, Union

import numpy as np

from sqdf_bbo.deprecation import CHAINED, deprecate, rename_hint, renamed_settings
from sqdf_bbo.text import parse_integer, parse_real

__all__ = [
    "ALLOW_NONFINITE",
    "ConfigError",
    "Range",
    "limits_of",
    "limit_problems",
    "check_fields",
    "parse_field",
    "field_names",
    "as_config",
    "config_to_dict",
    "config_from_dict",
    "setting_key",
    "nested_class",
]

ALLOW_NONFINITE = "allow_nonfinite"
"""Field metadata key: a float field with ``{ALLOW_NONFINITE: True}`` accepts ±inf and nan."""

_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no")
_NONE = ("none", "null")


class ConfigError(ValueError, TypeError):
    """A config field has the wrong type, or a ``--set`` key or value is invalid."""


@dataclass(frozen=True)
class Range:
    """The sane values of a numeric setting: ``low`` … ``high``, each end included unless
    ``low_open`` / ``high_open`` (``str``: interval notation, e.g. ``(0, 1]``)."""

    low: float
    high: float
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return bool(above and below)

    def __str__(self) -> str:
        return (
            f"{'(' if self.low_open else '['}{self.low:g}, {self.high:g}"
            f"{')' if self.high_open else ']'}"
        )


def limits_of(config_class: type) -> dict[str, Range]:
    """The ``LIMITS`` of ``config_class`` and its bases (a subclass's entry wins)."""
    out: dict[str, Range] = {}
    for klass in reversed(config_class.__mro__):
        out.update(klass.__dict__.get("LIMITS", {}))
    return out


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
def check_fields(obj: Any, limits: bool = True) -> None:
    """Check (and normalize) the types of every field of a frozen dataclass instance, and
    the numeric ones against the class's sane ranges (``LIMITS``, :func:`limits_of`).

    Call it first in ``__post_init__``. Numbers are converted to the declared ``int`` /
    ``float``, lists to declared tuples (written back with ``object.__setattr__``).

    Raises:
        ConfigError: listing every field whose value does not fit its declared type, else
            (with ``limits``) every numeric field outside its range.
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
    problems = limit_problems(obj) if limits else []
    if problems:
        raise ConfigError(f"invalid {cls.__name__}: " + "; ".join(problems))


def limit_problems(obj: Any) -> list[str]:
    """One message per numeric field of ``obj`` outside its range (``LIMITS``); call it after
    the types were checked (``check_fields(obj, limits=False)``) to report the ranges with
    a config's own further checks in one error."""
    out = []
    for name, allowed in limits_of(type(obj)).items():
        value = getattr(obj, name, None)
        numeric = isinstance(value, numbers.Real) and not isinstance(value, bool)
        if numeric and value not in allowed:
            out.append(f"{name} must be in {allowed}, got {value!r}")
    return out


def _parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise _Mismatch(f"expected a bool (true/false, 1/0, yes/no), got {text!r}")


def _parse_number(text: str, tp: type, nonfinite: bool) -> Any:
    """A number in ASCII decimal notation (:mod:`sqdf_bbo.text`): ``1_0`` or full-width
    digits are refused, and ``1e400`` does not become ``inf``."""
    try:
        value: Any = parse_integer(text) if tp is int else parse_real(text)
    except ValueError:
        try:
            value = parse_real(text)
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
    value = _parse_json(text, tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp) and isinstance(value, Mapping):
        return config_from_dict(tp, value)  # a nested config as a mapping, as the API takes
    return _coerce(value, tp, nonfinite)


def nested_class(config_class: type, name: str) -> type | None:
    """The config dataclass type of field ``name``, or ``None`` when it is not one."""
    tp = _hints(config_class).get(name)
    return tp if isinstance(tp, type) and dataclasses.is_dataclass(tp) else None


def setting_key(config_class: type, name: str) -> str:
    """The current (dotted) key of setting ``name`` of ``config_class``: ``name``, or the key
    an old name became (with a :class:`DeprecationWarning`), at every level of a dotted key.

    Raises:
        ConfigError: unknown field (the message lists the valid ones).
    """
    owner, leaf, path = config_class, name, []
    while True:  # at each level an old name becomes the (dotted) key it became
        new = renamed_settings(owner).get(leaf, leaf)
        if new not in (leaf, *CHAINED):
            deprecate(f"the setting {'.'.join([*path, leaf])!r}", repr(".".join([*path, new])))
        leaf = new
        head, dot, rest = leaf.partition(".")
        fields = [f.name for f in dataclasses.fields(owner)]
        if head not in fields:
            raise ConfigError(
                f"unknown {owner.__name__} field {head!r}{rename_hint(owner, head)}; "
                "valid fields: " + ", ".join(fields)
            )
        if not dot:
            return ".".join([*path, leaf])
        nested = nested_class(owner, head)
        if nested is None:
            raise ConfigError(f"{owner.__name__}.{head} is not a nested config: {name!r}")
        path.append(head)
        owner, leaf = nested, rest


def parse_field(config_class: type, name: str, text: str) -> Any:
    """The value of field ``name`` of ``config_class`` written as ``text`` (``--set`` syntax).

    ``name`` may be dotted to reach a field of a nested config (``finetune.steps``); an old
    name is read as the field it became (:func:`setting_key`, with a warning).
    Accepted spellings: bool ``true/false/1/0/yes/no`` (any case); int ``3`` (``3.0`` is
    read as 3, ``2.5`` is an error); float ``1e-3`` (``inf``/``nan`` only for fields that
    allow them); ``none``/``null`` for optional fields; tuples as a JSON list or comma
    separated; mappings (e.g. ``surrogate_options``) and anything else as JSON; a nested
    config as a JSON mapping of the settings it changes (``finetune={"steps": 2}``).

    Raises:
        ConfigError: unknown field (the message lists the valid ones) or a bad value.
    """
    new = setting_key(config_class, name)
    *path, leaf = new.split(".")
    owner = config_class
    for head in path:
        owner = nested_class(owner, head)  # type: ignore[assignment]
    fields = {f.name: f for f in dataclasses.fields(owner)}
    tp = _hints(owner).get(leaf, Any)
    try:
        return _parse(text, tp, _allows_nonfinite(fields[leaf]))
    except _Mismatch as err:
        note = f" ({name} is now {new})" if new != name else ""
        raise ConfigError(f"{config_class.__name__}.{name}: {err}{note}") from None


# ---------------------------------------------------------------------------- (de)serialization
def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return config_to_dict(value)
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def config_to_dict(config: Any) -> dict[str, Any]:
    """A config dataclass as a JSON-able dict: nested configs as dicts, tuples as lists,
    mappings as plain dicts (:func:`config_from_dict` rebuilds it)."""
    return {f.name: _plain(getattr(config, f.name)) for f in dataclasses.fields(config)}


def _field_default(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None if f.default is dataclasses.MISSING else f.default


def config_from_dict(config_class: type, d: Mapping[str, Any], base: Any = None) -> Any:
    """Rebuild a ``config_class`` from a dict (:func:`config_to_dict`'s output, or part of it).

    Only today's names are accepted (a stored study's old names go through
    :func:`sqdf_bbo.migration.migrate` first); a dotted key ``a.b`` sets field ``b`` of the nested config ``a``. A nested config given as a mapping changes only the fields it names
    of that field's default (so ``{"finetune": {"steps": 3}}`` keeps the other defaults of the
    optimizer's fine-tuner); missing fields take their defaults, or ``base``'s when given.

    Raises:
        ConfigError: an unknown field (the message lists the valid ones).
    """
    fields = {f.name: f for f in dataclasses.fields(config_class)}
    flat: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    unknown = []
    for key, value in d.items():
        head, dot, rest = str(key).partition(".")
        if head not in fields:
            unknown.append(key)
        elif dot:
            nested.setdefault(head, {})[rest] = value
        else:
            flat[head] = value
    if unknown:
        which = "field" if len(unknown) == 1 else "fields"
        hints = "".join(rename_hint(config_class, str(k)) for k in unknown)
        raise ConfigError(
            f"unknown {config_class.__name__} {which} {', '.join(map(repr, unknown))}{hints}; "
            "valid fields: " + ", ".join(fields)
        )
    for head, part in nested.items():
        given = flat.get(head, {})
        if not isinstance(given, Mapping):
            raise ConfigError(f"{config_class.__name__}.{head} is given both whole and by parts")
        flat[head] = {**given, **part}
    for name, value in flat.items():
        inner_class = nested_class(config_class, name)
        if inner_class is not None and isinstance(value, Mapping):
            inner = getattr(base, name) if base is not None else _field_default(fields[name])
            flat[name] = config_from_dict(inner_class, value, base=inner)
    if base is not None:
        return dataclasses.replace(base, **flat)
    return config_class(**flat)


def as_config(config: Any, config_class: type) -> Any:
    """An optimizer's ``config=`` argument as a ``config_class`` instance: ``None`` gives the
    defaults, a mapping its fields (:func:`config_from_dict`: nested configs as mappings,
    unknown and old names rejected), an instance itself; anything else is a
    ``TypeError``."""
    if config is None:
        return config_class()
    if isinstance(config, Mapping):
        return config_from_dict(config_class, config)
    if not isinstance(config, config_class):
        raise TypeError(f"config must be a {config_class.__name__}, got {type(config).__name__}")
    return config
