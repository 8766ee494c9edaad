"""Data-parallel fine-tuning across processes (``torchrun`` / ``accelerate launch``).

This module is the whole of the data-parallel machinery; :class:`~sqdf_bbo.finetuning.sqdf.SQDFTrainer`
uses it when a ``torch.distributed`` process group is initialized with more than one
process, and never otherwise (a single process runs exactly as without it).

The rule of one data-parallel SQDF step over W processes (rank r of W):

1. each rank samples ``rollouts_per_step / W`` fresh trajectories with its own noise
   generator (:func:`shard_generator_seed`); they are gathered (:func:`all_gather_cat`,
   rank order) so every rank adds the *same* trajectories to its replay buffer;
2. every rank draws the *same* global batch of ``transitions_per_step`` transitions (the buffers,
   their generators and the trainer's index generator are identical on every rank) and
   keeps its slice :func:`shard_slice` of ``transitions_per_step / W`` transitions;
3. each rank computes the mean loss over its slice (fresh noise from its own generator)
   and its gradients; :func:`all_reduce_mean_` averages them, so every rank holds the
   gradient of the mean loss over the whole batch (the slices are equal-sized);
4. gradient clipping (on that global gradient) and the optimizer step then run
   identically on every rank, which therefore keep identical parameters.

Only rank 0 should write a study: build the ask/tell optimizer with
``study=rank_zero_study(path)`` (``None`` on the other ranks).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

__all__ = [
    "world",
    "init_from_env",
    "local_device",
    "shard_generator_seed",
    "shard_slice",
    "all_reduce_mean_",
    "all_gather_cat",
    "broadcast_",
    "rank_zero_study",
]


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of the initialized process group, else ``(0, 1)``."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def local_device() -> torch.device:
    """``cuda:LOCAL_RANK`` when CUDA is available, else the CPU (``LOCAL_RANK`` set by the launcher)."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def init_from_env(backend: str | None = None) -> tuple[int, int]:
    """Join the process group that ``torchrun`` / ``accelerate launch`` described.

    Reads ``WORLD_SIZE``, ``RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` from the
    environment. Does nothing when the group already exists or when ``WORLD_SIZE`` is
    absent or 1 (a plain ``python script.py`` stays single-process).

    Args:
        backend: ``"nccl"`` or ``"gloo"``; default NCCL when CUDA is available, else gloo.

    Returns:
        ``(rank, world_size)``.
    """
    if world()[1] > 1 or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return world()
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_device())
    dist.init_process_group(backend)
    return world()


def shard_generator_seed(seed: int, rank: int, step: int = 0) -> int:
    """Seed of rank ``rank``'s own noise generator at update ``step``.

    Distinct ``(seed, rank, step)`` triples give independent streams
    (``numpy.random.SeedSequence(seed, spawn_key=(rank, step))``), so no rank's stream
    coincides with another rank's or with the trainer's ``seed + 1`` / ``seed + 2``
    generators.

    Returns:
        An int in ``[0, 2**63)``.
    """
    if int(seed) < 0 or int(rank) < 0 or int(step) < 0:
        raise ValueError(f"seed, rank and step must be >= 0, got {seed}, {rank}, {step}")
    seq = np.random.SeedSequence(int(seed), spawn_key=(int(rank), int(step)))
    return int(seq.generate_state(1, np.uint64)[0]) & (2**63 - 1)


def shard_slice(total: int, rank: int, world_size: int, what: str = "items") -> slice:
    """Rank ``rank``'s equal share of ``total`` items (``total / world_size`` of them);
    ``what`` names the setting ``total`` came from in the error.

    Raises:
        ValueError: if ``total`` is not a multiple of ``world_size`` (unequal shards
            would make the mean of the per-rank mean gradients differ from the mean
            gradient of the whole batch).
    """
    if total % world_size:
        raise ValueError(
            f"{what}={total} must be a multiple of the number of processes ({world_size}) "
            "for data-parallel training"
        )
    n = total // world_size
    return slice(rank * n, (rank + 1) * n)


def _flat_groups(tensors: Sequence[torch.Tensor]) -> dict[tuple, list[int]]:
    """Indices of ``tensors`` grouped by (dtype, device), so each group flattens into one buffer."""
    groups: dict[tuple, list[int]] = {}
    for k, t in enumerate(tensors):
        groups.setdefault((t.dtype, t.device), []).append(k)
    return groups


def all_reduce_mean_(tensors: Sequence[torch.Tensor]) -> None:
    """Replace every tensor by its mean over the processes, in place.

    One ``all_reduce`` (sum, then ÷ world size) per (dtype, device) group of tensors.
    The summation order inside the collective differs from a single process's
    batch mean, so results agree with it up to float rounding, not bit for bit;
    every rank receives the same reduced values. A no-op without a process group.

    Args:
        tensors: any shapes; each must be contiguous-able and writable.
    """
    _, size = world()
    if size == 1:
        return
    for idx in _flat_groups(tensors).values():
        # 1. One flat buffer per group, 2. summed across ranks, 3. averaged and copied back.
        flat = torch.cat([tensors[k].reshape(-1) for k in idx])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= size
        for k, part in zip(idx, flat.split([tensors[k].numel() for k in idx])):
            tensors[k].copy_(part.view_as(tensors[k]))


def all_gather_cat(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's ``tensor`` along dim 0, in rank order.

    Args:
        tensor: shape ``(n, *rest)``, the same shape on every rank.

    Returns:
        Shape ``(world_size * n, *rest)`` (``tensor`` itself without a process group).
    """
    _, size = world()
    if size == 1:
        return tensor
    t = tensor.contiguous()
    parts = [torch.empty_like(t) for _ in range(size)]
    dist.all_gather(parts, t)
    return torch.cat(parts)


def broadcast_(tensors: Sequence[torch.Tensor], src: int = 0) -> None:
    """Overwrite every tensor in place with rank ``src``'s values (a no-op without a group)."""
    if world()[1] == 1:
        return
    with torch.no_grad():
        for t in tensors:
            dist.broadcast(t, src=src)


def rank_zero_study(study: str | Path | None) -> str | Path | None:
    """``study`` on rank 0, ``None`` on every other rank: only rank 0 writes a study folder."""
    return study if world()[0] == 0 else None
