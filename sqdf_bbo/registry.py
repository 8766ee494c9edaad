"""One registry style for every kind of named thing (optimizers, surrogates, priors,
networks, benchmark tasks, suites and methods).

A :class:`Registry` maps names to objects (classes, factories or values). Register with the
decorator, or with a call for a value::

    SURROGATES = Registry("surrogate")

    @SURROGATES.register("ensemble")
    class EnsembleSurrogate(Surrogate): ...

    SUITES.register("quick", Suite(...))

Look up with :meth:`Registry.get` (a ``ValueError`` listing the known names for an unknown
one), list with :meth:`Registry.names`; a registry is also a read-only mapping
(``name in R``, ``R[name]``, iteration in registration order). Tests register for a while
and leave no trace with :meth:`Registry.temporarily` (``tests/conftest.py`` restores every
registry after each test, too).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ClassVar, Generic, TypeVar

__all__ = ["Registry"]

T = TypeVar("T")
_MISSING = object()


class Registry(Mapping[str, T], Generic[T]):
    """Named objects of one kind (``kind``: what the error messages call them)."""

    #: every registry made, for tests that restore them all (``tests/conftest.py``)
    instances: ClassVar[list[Registry[Any]]] = []

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._hooks: list[Callable[[str], None]] = []
        Registry.instances.append(self)

    # ------------------------------------------------------------------ registering
    def register(self, name: str, obj: Any = _MISSING) -> Any:
        """Register ``obj`` as ``name`` and return it; without ``obj``, a decorator that
        registers what it decorates. A later registration of the same name replaces it."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} name must be a non-empty string, got {name!r}")
        if obj is _MISSING:

            def decorator(target: T) -> T:
                self._set(name, target)
                return target

            return decorator
        self._set(name, obj)
        return obj

    def _set(self, name: str, obj: T) -> None:
        self._entries[name] = obj
        for hook in self._hooks:
            hook(name)

    def __setitem__(self, name: str, obj: T) -> None:
        """``R[name] = obj`` is ``R.register(name, obj)``."""
        self.register(name, obj)

    def unregister(self, name: str) -> None:
        """Remove ``name`` (a ``KeyError`` when it is not registered)."""
        del self._entries[name]
        for hook in self._hooks:
            hook(name)

    def on_change(self, hook: Callable[[str], None]) -> None:
        """Call ``hook(name)`` whenever ``name`` is registered or removed (e.g. to drop a cache)."""
        self._hooks.append(hook)

    @contextmanager
    def temporarily(self, name: str | None = None, obj: Any = _MISSING) -> Iterator[Registry[T]]:
        """Within the ``with`` block, ``name`` is registered as ``obj`` (when given) and
        anything registered meanwhile counts; afterwards the registry is as it was before."""
        saved = dict(self._entries)
        try:
            if name is not None and obj is not _MISSING:
                self.register(name, obj)
            yield self
        finally:
            changed = set(saved) ^ set(self._entries)
            changed |= {k for k in saved if self._entries.get(k, _MISSING) is not saved[k]}
            self._entries = saved
            for key in changed:
                for hook in self._hooks:
                    hook(key)

    # ------------------------------------------------------------------ looking up
    def get(self, name: str, default: Any = _MISSING) -> Any:  # type: ignore[override]
        """The object registered as ``name``; ``default`` when given and ``name`` is unknown,
        else a ``ValueError`` listing the known names."""
        if name in self._entries:
            return self._entries[name]
        if default is not _MISSING:
            return default
        raise ValueError(f"unknown {self.kind} {name!r}; accepted values: {', '.join(self)}")

    def names(self) -> list[str]:
        """The registered names, in registration order."""
        return list(self._entries)

    def __getitem__(self, name: str) -> T:
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"
