"""Designs in the user's units: a named affine map between the optimizer's designs and the
numbers a lab reads.

A prior may carry :class:`DesignUnits` (``prior.units``): the optimizers keep working on the
prior's designs x (e.g. the airfoil prior's standardized Kulfan vectors, where every
coordinate has unit spread over real airfoils), while the study's CSV files (``sqdf-bbo ask``,
``export``, ``tell``, ``add``) carry ``u = offset + scale · x`` under the coordinates' names
(the 18 Kulfan parameters), and read them back as ``x = (u − offset) / scale``. Nothing the
optimizers see changes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["DesignUnits"]

_FORMAT = "sqdf-bbo-design-units"


@dataclass(frozen=True)
class DesignUnits:
    """``u = offset + scale · x`` per flattened design coordinate.

    Attributes:
        names: one column name per coordinate (unique, no ``id``/``value``-like clash checks
            beyond uniqueness here).
        offset: per-coordinate offset.
        scale: per-coordinate scale (finite, > 0).
    """

    names: tuple[str, ...]
    offset: tuple[float, ...]
    scale: tuple[float, ...]

    def __post_init__(self) -> None:
        names = tuple(str(n) for n in self.names)
        offset = tuple(float(v) for v in self.offset)
        scale = tuple(float(v) for v in self.scale)
        if not names or len(set(names)) != len(names) or any(not n.strip() for n in names):
            raise ValueError("DesignUnits needs unique, non-empty coordinate names")
        if len(offset) != len(names) or len(scale) != len(names):
            raise ValueError(
                f"DesignUnits has {len(names)} names, {len(offset)} offsets, {len(scale)} scales"
            )
        if not all(math.isfinite(v) for v in offset) or not all(
            math.isfinite(v) and v > 0 for v in scale
        ):
            raise ValueError("DesignUnits offsets must be finite and scales finite and > 0")
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "offset", offset)
        object.__setattr__(self, "scale", scale)

    @property
    def dim(self) -> int:
        return len(self.names)

    def to_user(self, x: np.ndarray) -> np.ndarray:
        """User numbers ``(n, D)`` float64 of flattened designs ``(n, D)``."""
        return np.asarray(self.offset) + np.asarray(self.scale) * np.asarray(x, dtype=np.float64)

    def from_user(self, u: np.ndarray) -> np.ndarray:
        """Flattened designs ``(n, D)`` float64 of user numbers ``(n, D)``."""
        return (np.asarray(u, dtype=np.float64) - np.asarray(self.offset)) / np.asarray(self.scale)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": _FORMAT,
            "names": list(self.names),
            "offset": list(self.offset),
            "scale": list(self.scale),
        }

    @classmethod
    def from_dict(cls, d: Any) -> DesignUnits:
        if not isinstance(d, dict) or d.get("format") != _FORMAT:
            raise ValueError("not a design-units record")
        return cls(tuple(d["names"]), tuple(d["offset"]), tuple(d["scale"]))
