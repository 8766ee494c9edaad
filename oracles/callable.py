"""Wrap a plain Python function as an :class:`~oracles.base.Oracle`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from .base import Evaluation, Oracle, _describe

__all__ = ["CallableOracle"]


class CallableOracle(Oracle):
    """An oracle from a Python callable of one design or of a batch.

    Args:
        fn: ``batched=False`` (default): ``fn(x_i) -> float`` for one design
            ``x_i`` of shape ``shape``; an exception or a non-finite value fails
            that point only. ``batched=True``: ``fn(x) -> (n,)`` array-like for
            the whole batch ``x (n, *shape)`` (NaN for failed points).
        shape: the design shape, e.g. ``(2,)`` or ``(1, 8, 8)``.
        as_numpy: pass designs as float64 numpy arrays instead of tensors.
        name: a label for logs and reports.
        noise_std, negate, seed, executor, chunk_size: see :class:`Oracle`.
            With a process pool, ``fn`` must be picklable (a module-level function).
    """

    def __init__(
        self,
        fn: Callable[[Any], Any],
        shape: Sequence[int],
        *,
        batched: bool = False,
        as_numpy: bool = False,
        name: str = "callable",
        **kwargs: Any,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"fn must be callable, got {type(fn).__name__}")
        self.fn = fn
        self.shape = tuple(int(s) for s in shape)
        self.batched = bool(batched)
        self.as_numpy = bool(as_numpy)
        self.name = str(name)
        super().__init__(**kwargs)

    def _convert(self, x: torch.Tensor) -> Any:
        return x.detach().cpu().double().numpy() if self.as_numpy else x

    def _evaluate(self, x: torch.Tensor) -> torch.Tensor | np.ndarray | Evaluation:
        if self.batched:
            out = self.fn(self._convert(x))
            if isinstance(out, torch.Tensor):
                return out.detach()
            return np.asarray(out, dtype=np.float64)
        values = np.full(x.shape[0], np.nan)
        reasons: dict[int, str] = {}
        for i in range(x.shape[0]):
            try:
                out = self.fn(self._convert(x[i]))
                values[i] = float(out.item() if hasattr(out, "item") else out)
            except Exception as exc:  # noqa: BLE001 - one point's failure
                reasons[i] = _describe(exc)
        return Evaluation(values, reasons)
