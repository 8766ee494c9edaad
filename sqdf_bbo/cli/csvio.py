"""The CSV files of the CLI: reading results / data / id files strictly (one clear error per
problem), and writing designs atomically (``x`` columns by ``repr``, so they round-trip)."""

from __future__ import annotations

import csv
import math
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from sqdf_bbo.cli.errors import CLIError
from sqdf_bbo.diffusion.units import DesignUnits
from sqdf_bbo.text import parse_integer, parse_real

__all__ = [
    "FAILED_TOKENS",
    "DESIGN_RTOL",
    "DESIGN_ATOL",
    "write_atomic",
    "write_designs_csv",
    "read_csv",
    "require_columns",
    "parse_id",
    "parse_id_list",
    "ids_from_file",
    "parse_value",
    "parse_flag",
    "design_columns",
    "has_designs",
    "read_designs",
    "check_design_columns",
    "parse_designs",
]

FAILED_TOKENS = ("", "nan", "na", "n/a", "failed")
DESIGN_RTOL = 1e-6  # x columns written with repr round-trip exactly; allow re-saved copies
DESIGN_ATOL = 1e-9
_XCOL = re.compile(r"x\d+")

Rows = list[tuple[int, dict[str, str]]]
"""``(line number, {column: stripped text})`` per data row of a CSV file."""


# ---------------------------------------------------------------------------- writing
def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` a file beside ``path``, then move it into place (never half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_designs_csv(
    path: Path,
    ids: list[int],
    x: torch.Tensor,
    extra: dict[str, list] | None = None,
    units: DesignUnits | None = None,
) -> None:
    """Columns ``id, x0..x{D-1}`` (flattened designs, by ``repr``) and then ``extra``'s; with
    the prior's ``units``, the designs in those units under their names instead."""
    flat = x.reshape(x.shape[0], -1).double().cpu().numpy()
    names = [f"x{j}" for j in range(flat.shape[1])]
    if units is not None:
        flat, names = units.to_user(flat), list(units.names)
    header = ["id"] + names + list(extra or {})

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(header)
            for k, i in enumerate(ids):
                row = [str(i)] + [repr(float(v)) for v in flat[k]]
                row += [str(col[k]) for col in (extra or {}).values()]
                w.writerow(row)

    write_atomic(path, write)


# ---------------------------------------------------------------------------- reading
def _check_header(header: list[str], path: str) -> None:
    seen: set[str] = set()
    for name in header:
        if name and name in seen:
            raise CLIError(f"{path} has a duplicate column {name!r} (columns: {', '.join(header)})")
        seen.add(name)


def _row_dict(header: list[str], fields: list[str], where: str) -> dict[str, str]:
    """One row as ``{column: stripped text}``; a short row or extra non-empty fields are errors."""
    extra = fields[len(header) :]
    if len(fields) < len(header) or any(f.strip() for f in extra):
        raise CLIError(
            f"{where} has {len(fields)} field(s) but the header has {len(header)} "
            "(write an empty field or nan for a failed evaluation)"
        )
    return {name: value.strip() for name, value in zip(header, fields) if name}


def read_csv(path: str) -> tuple[list[str], Rows]:
    """Header and ``(line number, row)`` pairs of a CSV file (UTF-8, with or without a BOM)."""
    p = Path(path)
    if not p.is_file():
        raise CLIError(f"no such file: {path}")
    try:
        with open(p, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            first = next(reader, None)
            if first is None:
                raise CLIError(f"{path} is empty (expected a header line)")
            header = [h.strip() for h in first]
            _check_header(header, path)
            rows = [
                (reader.line_num, _row_dict(header, fields, f"{path} line {reader.line_num}"))
                for fields in reader
                if fields  # blank lines
            ]
    except UnicodeDecodeError as err:
        raise CLIError(
            f"{path} is not UTF-8 text (byte {err.start}); save it as CSV UTF-8"
        ) from None
    except csv.Error as err:
        raise CLIError(f"{path} is not a readable CSV file: {err}") from None
    return header, rows


def require_columns(header: list[str], columns: Sequence[str], path: str) -> None:
    for col in columns:
        if col not in header:
            raise CLIError(f"{path} has no {col!r} column (columns: {', '.join(header)})")


# ---------------------------------------------------------------------------- fields
def parse_id(raw: str, where: str) -> int:
    """An id: ASCII digits (``1_0`` or full-width digits are refused, not read as 10)."""
    try:
        return parse_integer(raw)
    except ValueError:
        raise CLIError(f"{where}: id {raw!r} is not an integer") from None


def parse_id_list(text: str) -> list[int]:
    """``--ids 3,7,9``."""
    parts = [p.strip() for p in text.split(",")]
    if not any(parts):
        raise CLIError("--ids needs at least one id, e.g. --ids 3,7,9")
    return [parse_id(p, "--ids") for p in parts]


def ids_from_file(path: str) -> tuple[list[int], list[str], Rows]:
    """The ids of an ``--ids-file`` CSV (an ``id`` column), its header and rows."""
    header, rows = read_csv(path)
    require_columns(header, ("id",), path)
    if not rows:
        raise CLIError(f"{path} has no rows")
    return [parse_id(r["id"], f"{path} line {line}") for line, r in rows], header, rows


def parse_value(raw: str, where: str) -> float:
    """A told value; empty, ``nan``, ``na``, ``n/a`` or ``failed`` is a failed evaluation.
    ASCII decimal notation only (:mod:`sqdf_bbo.text`): ``1_0`` and ``1e400`` are refused."""
    if raw.lower() in FAILED_TOKENS:
        return math.nan
    try:
        return parse_real(raw)
    except ValueError:
        pass
    try:
        parse_real(raw, overflow=True)
        why = "is too large for a float (it would read as inf)"
    except ValueError:
        why = "is not a number"
    raise CLIError(
        f"{where}: value {raw!r} {why} (leave it empty or write nan for a failed evaluation)"
    )


def parse_flag(raw: str, where: str) -> bool:
    """A yes/no field (the ``transient`` column): ``true/1/yes`` or ``false/0/no/`` (empty)."""
    low = raw.strip().lower()
    if low in ("true", "1", "yes"):
        return True
    if low in ("", "false", "0", "no"):
        return False
    raise CLIError(f"{where}: {raw!r} is not true/false (also 1/0, yes/no, or empty for false)")


def design_columns(header: list[str]) -> list[str]:
    return [h for h in header if _XCOL.fullmatch(h)]


def check_design_columns(header: list[str], dim: int, path: str) -> list[str]:
    """The columns ``x0..x{dim-1}``, which must be exactly the file's design columns."""
    found = design_columns(header)
    expected = [f"x{j}" for j in range(dim)]
    missing = [c for c in expected if c not in found]
    unexpected = [c for c in found if c not in expected]
    if missing or unexpected:
        parts = [
            f"{what} {', '.join(cols[:5])}{', ...' if len(cols) > 5 else ''}"
            for what, cols in (("missing", missing), ("unexpected", unexpected))
            if cols
        ]
        raise CLIError(
            f"{path}: the design columns must be exactly x0..x{dim - 1} (the study's designs "
            f"have {dim} values); " + "; ".join(parts)
        )
    return expected


def has_designs(header: list[str], units: DesignUnits | None) -> bool:
    """Whether a file carries designs: ``x`` columns, or the prior's unit names."""
    return bool(design_columns(header)) or (
        units is not None and any(n in header for n in units.names)
    )


def read_designs(
    header: list[str], rows: Rows, dim: int, path: str, units: DesignUnits | None = None
) -> np.ndarray:
    """The flattened designs ``(n, dim)`` float64 of a file: from the unit columns (all of
    the prior's names, converted back) when it has any, else from ``x0..x{dim-1}``."""
    if units is not None and any(n in header for n in units.names):
        missing = [n for n in units.names if n not in header]
        if missing:
            raise CLIError(
                f"{path} has some of the design columns {', '.join(units.names)} but not "
                f"{', '.join(missing[:5])}"
            )
        if design_columns(header):
            raise CLIError(f"{path} has both x columns and named design columns; keep one set")
        values = np.asarray(parse_designs(rows, list(units.names), path), dtype=np.float64)
        return units.from_user(values.reshape(len(rows), -1))
    xcols = check_design_columns(header, dim, path)
    return np.asarray(parse_designs(rows, xcols, path), dtype=np.float64).reshape(len(rows), -1)


def parse_designs(rows: Rows, xcols: list[str], path: str) -> list[list[float]]:
    out = []
    for line, r in rows:
        values = []
        for c in xcols:
            try:
                values.append(parse_real(r[c]))
            except ValueError:
                raise CLIError(
                    f"{path} line {line}: design value {c}={r[c]!r} is not a number"
                ) from None
        out.append(values)
    return out
