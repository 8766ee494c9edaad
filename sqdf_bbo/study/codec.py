"""Pickle-free encodings of a study's contents: tensors as raw bytes, nested state as JSON.

- :func:`tensor_bytes` / :func:`bytes_tensor`: one tensor as its raw little-endian bytes (the
  ``x`` and ``traj`` columns of the points table); dtype and shape are stored elsewhere (the
  study metadata).
- :func:`condition_bytes` / :func:`bytes_condition`: one point's condition (a class label, a
  prompt or an embedding tensor; the ``cond`` column), type-tagged.
- :func:`split_state` / :func:`join_state`: a nested state (dicts/lists of tensors, numpy
  arrays and JSON values) as JSON with placeholders plus a flat dict of tensors (a snapshot's
  ``state.json`` + ``tensors.safetensors``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

__all__ = [
    "tensor_bytes",
    "bytes_tensor",
    "condition_bytes",
    "bytes_condition",
    "split_state",
    "join_state",
]


def tensor_bytes(t: torch.Tensor) -> bytes:
    """The raw bytes of ``t`` (any shape, moved to the CPU, made contiguous)."""
    return t.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes()


def bytes_tensor(b: bytes, dtype: torch.dtype, shape: tuple[int, ...]) -> torch.Tensor:
    """Inverse of :func:`tensor_bytes`: a CPU tensor of ``dtype`` and ``shape``.

    A leading ``-1`` in ``shape`` takes as many rows as the bytes hold (e.g. a trajectory
    ``(-1, *shape)`` of unknown length). ``ValueError`` when the bytes do not fit the shape.
    """
    flat = torch.frombuffer(bytearray(b), dtype=torch.uint8).view(dtype)
    per = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    if shape and shape[0] == -1:
        if flat.numel() % per:
            raise ValueError(f"stored array of {flat.numel()} values does not fit shape {shape}")
        shape = (flat.numel() // per, *shape[1:])
    if flat.numel() != int(np.prod(shape)):
        raise ValueError(f"stored array of {flat.numel()} values does not fit shape {shape}")
    return flat.reshape(shape)


def condition_bytes(value: int | str | torch.Tensor) -> bytes:
    """A condition's bytes: ``L<label>``, ``P<utf-8 prompt>`` or ``T<json shape>\n<float32>``."""
    if isinstance(value, bool):
        raise TypeError("a condition cannot be a bool")
    if isinstance(value, int):
        return b"L" + str(value).encode()
    if isinstance(value, str):
        return b"P" + value.encode("utf-8")
    if isinstance(value, torch.Tensor):
        head = json.dumps(list(value.shape)).encode()
        return b"T" + head + b"\n" + tensor_bytes(value.to(torch.float32))
    raise TypeError(f"a condition must be an int, a str or a tensor, got {type(value).__name__}")


def bytes_condition(b: bytes) -> int | str | torch.Tensor:
    """Inverse of :func:`condition_bytes` (``ValueError`` for bytes it did not write)."""
    b = bytes(b)
    tag, body = b[:1], b[1:]
    try:
        if tag == b"L":
            return int(body.decode("ascii"))
        if tag == b"P":
            return body.decode("utf-8")
        if tag == b"T":
            head, _, raw = body.partition(b"\n")
            shape = tuple(int(s) for s in json.loads(head))
            return bytes_tensor(raw, torch.float32, shape)
    except (UnicodeDecodeError, ValueError, TypeError) as err:
        raise ValueError(f"unreadable stored condition ({err})") from None
    raise ValueError(f"unreadable stored condition (tag {tag!r})")


def split_state(obj: Any, prefix: str = "") -> tuple[Any, dict[str, torch.Tensor]]:
    """Split a nested state (dicts/lists of tensors, arrays and JSON values) into JSON + tensors.

    Tensors and numpy arrays are replaced by ``{"__tensor__": key}`` / ``{"__ndarray__": key}``
    placeholders; the tensors dict maps each key to a contiguous CPU tensor (safetensors-able).
    Anything else that is not JSON-able raises ``TypeError`` naming the offending key.
    """
    tensors: dict[str, torch.Tensor] = {}

    def walk(v: Any, key: str) -> Any:
        if isinstance(v, torch.Tensor):
            tensors[key] = v.detach().to("cpu").contiguous().clone()
            return {"__tensor__": key}
        if isinstance(v, np.ndarray):
            tensors[key] = torch.from_numpy(np.ascontiguousarray(v).copy())
            return {"__ndarray__": key}
        if isinstance(v, np.generic):
            return v.item()
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        if isinstance(v, Mapping):
            out = {}
            for k, item in v.items():
                if not isinstance(k, str):
                    raise TypeError(f"state key {k!r} under {key or '<root>'!r} is not a string")
                out[k] = walk(item, f"{key}/{k}" if key else k)
            return out
        if isinstance(v, (list, tuple)):
            return [walk(item, f"{key}/{i}" if key else str(i)) for i, item in enumerate(v)]
        raise TypeError(
            f"state entry {key or '<root>'!r} has type {type(v).__name__}, which cannot be saved "
            "without pickle; use tensors, numpy arrays, or JSON values"
        )

    return walk(obj, prefix), tensors


def join_state(obj: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    """Inverse of :func:`split_state` (tuples come back as lists)."""
    if isinstance(obj, dict):
        if set(obj) == {"__tensor__"}:
            return tensors[obj["__tensor__"]]
        if set(obj) == {"__ndarray__"}:
            return tensors[obj["__ndarray__"]].numpy()
        return {k: join_state(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [join_state(v, tensors) for v in obj]
    return obj
