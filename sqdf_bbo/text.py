"""Numbers written as text, read strictly: CSV fields, a program's output, ``--set`` values.

Python's ``int`` and ``float`` accept more than a lab's numbers: ``int("1_0")`` is 10,
``float("１２")`` (full-width digits) is 12.0 and ``float("1e400")`` is ``inf``. A typo or a
foreign spreadsheet must not turn into a different, valid-looking number, so these accept
only ASCII decimal notation (an optional sign, digits, one decimal point, an exponent) and
the spellings ``inf``/``infinity``/``nan`` in any case, with surrounding blanks.
"""

from __future__ import annotations

import math
import re

__all__ = ["parse_integer", "parse_real"]

_INTEGER = re.compile(r"[+-]?[0-9]+", re.ASCII)
_REAL = re.compile(
    r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity|nan)",
    re.ASCII | re.IGNORECASE,
)


def parse_integer(text: str) -> int:
    """``text`` as an int: ASCII digits with an optional sign (``ValueError`` otherwise)."""
    stripped = text.strip()
    if not _INTEGER.fullmatch(stripped):
        raise ValueError(f"{text!r} is not an integer (ASCII digits only)")
    return int(stripped)


def parse_real(text: str, overflow: bool = False) -> float:
    """``text`` as a float in ASCII decimal notation, or ``inf``/``nan`` spelled out.

    A finite number too large for a float (``1e400``) is a ``ValueError`` unless
    ``overflow`` (then it reads as ±inf, as ``float`` does).
    """
    stripped = text.strip()
    if not _REAL.fullmatch(stripped):
        raise ValueError(f"{text!r} is not a number (ASCII decimal notation only)")
    value = float(stripped)
    spelled = stripped.lstrip("+-").lower().startswith(("inf", "nan"))
    if math.isinf(value) and not spelled and not overflow:
        raise ValueError(f"{text!r} is too large for a float (it would read as {value})")
    return value
