"""What both trainers (SQDF and SEIKO) need to checkpoint themselves: frozen copies of
networks, and an optimizer's state as flat tensors (``"<param index>/<key>"``), so that a
trainer's ``state_dict`` is safetensors-ready (no pickle)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import TypeVar

import torch
from torch import nn

__all__ = ["frozen_copy", "optimizer_tensors", "load_optimizer_tensors"]

M = TypeVar("M", bound=nn.Module)


def frozen_copy(module: M) -> M:
    """A deep copy of ``module`` in eval mode with every parameter frozen."""
    out = copy.deepcopy(module)
    out.requires_grad_(False).eval()
    return out


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """The per-parameter state of ``optimizer`` (e.g. Adam's moments and step) as
    ``{"<param index>/<key>": tensor}`` (CPU copies)."""
    return {
        f"{idx}/{key}": torch.as_tensor(val).detach().cpu().clone()
        for idx, state in optimizer.state_dict()["state"].items()
        for key, val in state.items()
    }


def load_optimizer_tensors(
    optimizer: torch.optim.Optimizer, tensors: Mapping[str, torch.Tensor]
) -> None:
    """Restore :func:`optimizer_tensors` output into ``optimizer`` (its parameter groups and
    hyper-parameters stay as they are)."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        idx, _, key = name.partition("/")
        state.setdefault(int(idx), {})[key] = value
    full = optimizer.state_dict()
    full["state"] = state
    optimizer.load_state_dict(full)
