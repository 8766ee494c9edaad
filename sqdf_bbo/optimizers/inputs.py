"""Checks and coercions of what enters an optimizer: counts, seeds, ids, values, designs and
the designs an algorithm proposes. Plain functions; :class:`~sqdf_bbo.optimizers.base.Optimizer`
calls them. Each returns the canonical form or raises ``TypeError`` / ``ValueError`` (a
broken proposal: ``RuntimeError``) with a message naming what was wrong.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Set
from typing import Any

import numpy as np
import torch

from sqdf_bbo.optimizers.batch import Proposal

__all__ = [
    "check_seed",
    "check_count",
    "as_ids",
    "value_limit",
    "as_values",
    "as_reasons",
    "as_transient",
    "check_tell",
    "check_external",
    "check_mark_failed",
    "oracle_output",
    "as_designs",
    "check_proposal",
]


def check_seed(seed: Any) -> int:
    """``seed`` as an int in [0, 2**62) (torch generators take signed 64-bit seeds and
    sub-objects derive theirs by adding small offsets); ``ValueError`` otherwise."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if seed >= 2**62:
        raise ValueError(f"seed must be < 2**62, got {seed}")
    return int(seed)


def check_count(n: Any, what: str) -> int:
    """``n`` as a positive int (``what`` names it in the error)."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or int(n) < 1:
        raise ValueError(f"{what} must be a positive int, got {n!r}")
    return int(n)


def as_ids(ids: Any) -> list[int]:
    """Point ids (a list, tuple, integer array or tensor, or one int) as a list of ints."""
    if isinstance(ids, torch.Tensor):
        if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
            raise TypeError(f"ids must be integers, got a tensor of dtype {ids.dtype}")
        return [int(i) for i in ids.reshape(-1).tolist()]
    if isinstance(ids, np.ndarray):
        if not np.issubdtype(ids.dtype, np.integer):
            raise TypeError(f"ids must be integers, got an array of dtype {ids.dtype}")
        return [int(i) for i in ids.reshape(-1)]
    if isinstance(ids, numbers.Integral) and not isinstance(ids, bool):
        return [int(ids)]
    if isinstance(ids, (str, bytes, Mapping, Set)) or not isinstance(ids, Iterable):
        raise TypeError(
            f"ids must be a sequence of ints (list, tuple, array, tensor), got {type(ids).__name__}"
        )
    out = []
    for i in ids:
        if isinstance(i, bool) or not isinstance(i, numbers.Integral):
            raise TypeError(f"ids must be ints, got {i!r} ({type(i).__name__})")
        out.append(int(i))
    return out


def value_limit(dtype: torch.dtype) -> float:
    """Largest magnitude a told value may have: √(largest float of ``dtype``) (1.8e19 for
    float32), so that standardizing values never overflows."""
    return math.sqrt(torch.finfo(dtype).max)


def as_values(y: Any, n: int, dtype: torch.dtype) -> np.ndarray:
    """Values as a new float64 array ``(n,)``; ``None`` entries become NaN (failed).

    ``(n, 1)`` is flattened; a finite value beyond :func:`value_limit` of ``dtype`` (the
    model's arithmetic) is refused: told by a user, it is a mistake to correct.
    """
    arr = _real_array(y, n)
    limit = value_limit(dtype)
    with np.errstate(invalid="ignore"):
        huge = np.isfinite(arr) & (np.abs(arr) > limit)
    if huge.any():
        k = int(np.flatnonzero(huge)[0])
        raise ValueError(
            f"value {float(arr[k])!r} (position {k}) is too large for the model's {dtype} "
            f"arithmetic: values must lie within ±{limit:.3g} (the square root of the "
            "largest float, so that their squares stay finite); rescale the oracle's "
            "output, or tell NaN to record a failed evaluation"
        )
    return arr


def _real_array(y: Any, n: int) -> np.ndarray:
    """``y`` as a new float64 array ``(n,)`` (``(n, 1)`` flattened, ``None`` → NaN)."""
    if isinstance(y, torch.Tensor):
        if y.dtype.is_complex or y.dtype == torch.bool:
            raise TypeError(f"values must be real numbers, got a tensor of dtype {y.dtype}")
        arr = y.detach().to("cpu", torch.float64).numpy()
    elif isinstance(y, np.ndarray):
        if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)):
            raise TypeError(f"values must be real numbers, got an array of dtype {y.dtype}")
        arr = y.astype(np.float64)
    elif isinstance(y, numbers.Real) and not isinstance(y, bool):
        arr = np.array([float(y)])
    elif isinstance(y, (str, bytes, Mapping, Set)) or not isinstance(y, Iterable):
        raise TypeError(
            f"values must be a sequence of floats (list, tuple, array, tensor), "
            f"got {type(y).__name__}"
        )
    else:
        vals = []
        for v in y:
            if v is None:
                vals.append(math.nan)
            elif (
                isinstance(v, numbers.Real)
                and not isinstance(v, bool)
                or isinstance(v, torch.Tensor)
                and v.numel() == 1
                and v.dtype.is_floating_point
            ):
                vals.append(float(v))
            else:
                raise TypeError(
                    f"values must be real numbers (NaN or None for a failed evaluation), "
                    f"got {v!r} ({type(v).__name__})"
                )
        arr = np.asarray(vals, dtype=np.float64)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"expected {n} values of shape ({n},), got shape {tuple(arr.shape)}")
    return arr.copy()


def as_reasons(reasons: Any, ids: list[int]) -> list[str | None]:
    """Failure reasons for the points ``ids`` of one tell, one per id (``None``: none given).

    ``reasons`` is ``None``, a sequence with one ``str`` or ``None`` per id, or a mapping
    ``{id: reason}`` over some of ``ids``. An empty string counts as no reason.
    """
    if reasons is None:
        return [None] * len(ids)
    if isinstance(reasons, Mapping):
        told = set(ids)
        unknown = [k for k in reasons if k not in told]
        if unknown:
            raise ValueError(f"reasons names id {unknown[0]!r}, which is not told in this call")
        given = [reasons.get(i) for i in ids]
    elif isinstance(reasons, (str, bytes, Set)) or not isinstance(reasons, Iterable):
        raise TypeError(
            "reasons must be a sequence (one str or None per id) or a mapping {id: reason}, "
            f"got {type(reasons).__name__}"
        )
    else:
        given = list(reasons)
        if len(given) != len(ids):
            raise ValueError(f"expected {len(ids)} reasons (one per id), got {len(given)}")
    for r in given:
        if r is not None and not isinstance(r, str):
            raise TypeError(f"a reason must be a str or None, got {r!r} ({type(r).__name__})")
    return [r or None for r in given]


def as_transient(transient: Any, ids: list[int]) -> list[bool]:
    """Transient flags for the points ``ids`` of one tell, one per id.

    ``transient`` is ``None`` (none), a bool (for every point), a sequence of bools (one per
    id; a bool array or tensor too) or a collection of ids (a set, or a sequence or array
    of ints) naming the transient points.
    """
    if transient is None:
        return [False] * len(ids)
    if isinstance(transient, (bool, np.bool_)):
        return [bool(transient)] * len(ids)
    if isinstance(transient, torch.Tensor):
        transient = transient.detach().cpu().numpy()
    if isinstance(transient, np.ndarray):
        if transient.dtype == np.bool_:
            transient = [bool(t) for t in transient.reshape(-1)]
        elif np.issubdtype(transient.dtype, np.integer):
            transient = [int(t) for t in transient.reshape(-1)]
        else:
            raise TypeError(f"transient must hold bools or ids, got dtype {transient.dtype}")
    if isinstance(transient, (str, bytes, Mapping)) or not isinstance(transient, Iterable):
        raise TypeError(
            "transient must be a bool, a sequence of bools (one per id) or a collection of "
            f"ids, got {type(transient).__name__}"
        )
    items = list(transient)
    if items and not isinstance(transient, Set) and all(isinstance(t, bool) for t in items):
        if len(items) != len(ids):
            raise ValueError(f"expected {len(ids)} transient flags (one per id), got {len(items)}")
        return items
    chosen = set(as_ids(items))
    unknown = sorted(chosen - set(ids))
    if unknown:
        raise ValueError(f"transient names id {unknown[0]}, which is not told in this call")
    return [i in chosen for i in ids]


def check_tell(
    points: Mapping[int, Any],
    ids: list[int],
    values: np.ndarray,
    reasons: list[str | None],
    transient: list[bool],
) -> None:
    """Whether ``tell(ids, values, reasons, transient)`` may record: every id known, asked,
    pending and given once, and reasons and transient flags only for failed (non-finite)
    values; ``KeyError`` / ``ValueError`` naming the first problem. ``points``: the
    optimizer's points by id."""
    seen: set[int] = set()
    for k, i in enumerate(ids):
        if i in seen:
            raise ValueError(f"id {i} appears twice in this tell")
        seen.add(i)
        p = points.get(i)
        if p is None:
            raise KeyError(f"unknown id {i}: it was never returned by ask()")
        if p.source != "asked":
            raise ValueError(f"id {i} is an external observation and cannot be told again")
        if p.state != "pending":
            raise ValueError(f"id {i} was already told (state {p.state!r}, value {p.value!r})")
        if (reasons[k] is not None or transient[k]) and math.isfinite(values[k]):
            given = "a reason" if reasons[k] is not None else "a transient flag"
            raise ValueError(
                f"id {i} has {given} but a finite value {float(values[k])!r}: reasons and "
                "transient flags are for failed points (NaN, ±inf or None)"
            )


def check_external(values: np.ndarray, reasons: list[str | None], transient: list[bool]) -> None:
    """Whether ``tell_external`` may record its rows: reasons and transient flags only for
    failed (non-finite) values; ``ValueError`` naming the first row otherwise."""
    for k, v in enumerate(values.tolist()):
        if (reasons[k] is not None or transient[k]) and math.isfinite(v):
            given = "a reason" if reasons[k] is not None else "a transient flag"
            raise ValueError(
                f"row {k} has {given} but a finite value {float(v)!r}: reasons and transient "
                "flags are for failed points (NaN, ±inf or None)"
            )


def check_mark_failed(points: Mapping[int, Any], ids: list[int]) -> list[int]:
    """``ids`` if ``mark_failed`` may fail them (at least one, each once, known and not
    failed yet); ``KeyError`` / ``ValueError`` naming the first problem otherwise."""
    if not ids:
        raise ValueError("mark_failed needs at least one id")
    if len(set(ids)) != len(ids):
        raise ValueError("an id appears twice in this mark_failed call")
    for i in ids:
        p = points.get(i)
        if p is None:
            raise KeyError(f"unknown id {i}")
        if p.state == "failed":
            why = f" ({p.reason})" if p.reason else ""
            raise ValueError(f"id {i} is already failed{why}")
    return ids


def oracle_output(
    oracle: Any, y: Any, ids: list[int], dtype: torch.dtype
) -> tuple[np.ndarray, dict[int, str], set[int]]:
    """What ``Optimizer.run`` tells for the batch ``ids`` after ``y = oracle(x)``: the values
    ``(n,)`` float64, the reasons ``{id: reason}`` and the transient ids of its failed points.

    A value the model cannot take — non-finite, or beyond :func:`value_limit` of ``dtype``
    — is that point's design failure (NaN) with a reason, and the rest of the batch is told
    (a user telling such a value directly gets a ``ValueError`` instead: :func:`as_values`).
    Reasons and transient flags come from an :class:`oracles.Oracle`'s ``failures``
    (``{index: reason}``) and ``transient_failures`` (``{index}``) of its last call, kept
    for the failed points; a plain callable has neither. Output that is not ``n`` real
    numbers raises (the batch stays pending).
    """
    values = _real_array(y, len(ids))
    failures = getattr(oracle, "failures", None)
    given = dict(failures) if isinstance(failures, Mapping) else {}
    flagged = getattr(oracle, "transient_failures", None)
    flagged = flagged if isinstance(flagged, Set) else set()
    limit = value_limit(dtype)
    reasons: dict[int, str] = {}
    transient: set[int] = set()
    for k, v in enumerate(values.tolist()):
        if math.isfinite(v) and abs(v) <= limit:
            continue
        if math.isfinite(v):
            reason = (
                f"the oracle returned {v!r}, beyond ±{limit:.3g}, the largest magnitude the "
                f"model's {dtype} arithmetic takes (Optimizer.value_limit)"
            )
            values[k] = math.nan
        else:
            reason = str(given.get(k) or f"the oracle returned {v!r}")
            if k in flagged:
                transient.add(ids[k])
        reasons[ids[k]] = reason
    return values, reasons, transient


def as_designs(
    x: Any,
    shape: tuple[int, ...],
    device: torch.device,
    dtype: torch.dtype,
    what: str = "x",
) -> torch.Tensor:
    """Designs given by a user (tensor or numpy array) as a finite ``(n, *shape)`` tensor on
    ``device`` with ``dtype``, ``n >= 1`` (``what`` names the argument in errors)."""
    if isinstance(x, np.ndarray):
        if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
            raise TypeError(f"{what} must hold real numbers, got an array of dtype {x.dtype}")
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor or numpy array, got {type(x).__name__}")
    if x.dtype.is_complex or x.dtype == torch.bool:
        raise TypeError(f"{what} must hold real numbers, got dtype {x.dtype}")
    if x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != shape:
        raise ValueError(
            f"{what} must have shape (n, {', '.join(map(str, shape))}), got {tuple(x.shape)}"
        )
    if x.shape[0] < 1:
        raise ValueError(f"{what} holds no designs")
    x = x.detach().to(device, dtype)
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{what} contains NaN or inf")
    return x


def check_proposal(opt: Any, prop: Any, n: int) -> torch.Tensor:
    """What ``opt._propose(n)`` returned: a :class:`Proposal` of finite designs ``x (n,
    *shape)`` and optional trajectories ``(n, K+1, *shape)``; returns ``x`` on the
    optimizer's device with its dtype (``TypeError`` / ``RuntimeError`` naming
    ``Class._propose`` otherwise)."""
    name = type(opt).__name__
    if not isinstance(prop, Proposal):
        raise TypeError(f"{name}._propose must return a Proposal, got {type(prop).__name__}")
    x, t, shape = prop.x, prop.trajectories, opt.shape
    state = tuple(getattr(opt, "state_shape", shape))  # a latent prior's chains
    if not isinstance(x, torch.Tensor) or tuple(x.shape) != (n, *shape):
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise RuntimeError(f"{name}._propose({n}) returned x of shape {got}")
    if not bool(torch.isfinite(x).all()):
        raise RuntimeError(f"{name}._propose returned non-finite designs")
    if t is not None and (
        not isinstance(t, torch.Tensor)
        or t.ndim != len(state) + 2
        or t.shape[0] != n
        or tuple(t.shape[2:]) != state
    ):
        got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
        raise RuntimeError(
            f"{name}._propose returned trajectories of shape {got}; expected (n, K+1, *shape)"
        )
    return x.detach().to(opt.device, opt.dtype)
