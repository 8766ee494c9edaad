"""Token sequences as designs: the one-hot relaxation every sequence optimizer shares.

A sequence of length L over v states (tokens ``0 … v−1``) is a design of shape ``(L, v)``:
row l is the one-hot vector of token l mapped to {−1, +1} (−1 everywhere except +1 at the
token). The sequence prior samples continuous values in this space; any ``(L, v)`` array is
read as the sequence of its row-wise argmax (:func:`decode_tokens`). docs/sequences.md has
the math.

* :func:`one_hot_designs` — tokens ``(n, L)`` → designs ``(n, L, v)`` in {−1, +1};
* :func:`decode_tokens` — designs ``(n, L, v)`` (relaxed or exact) → tokens ``(n, L)``;
* :func:`as_tokens` — either form → tokens, with a clear error for anything else;
* :func:`hamming_diversity` — mean pairwise Hamming distance of a batch of sequences;
* :func:`one_hot_features` — flat 0/1 one-hot features ``(n, L·v)`` (Vendi on one-hot vectors);
* :func:`format_sequence` — a sequence as text, with chosen positions marked.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

__all__ = [
    "one_hot_designs",
    "decode_tokens",
    "as_tokens",
    "hamming_diversity",
    "one_hot_features",
    "format_sequence",
]


def one_hot_designs(tokens: torch.Tensor, num_states: int) -> torch.Tensor:
    """Designs ``(n, L, v)`` float32 in {−1, +1} of integer tokens ``(n, L)`` in ``[0, v)``."""
    tokens = torch.as_tensor(tokens)
    if tokens.ndim != 2 or tokens.is_floating_point():
        raise ValueError(
            f"tokens must be an integer tensor of shape (n, L), got {tuple(tokens.shape)}"
        )
    if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= num_states):
        raise ValueError(
            f"tokens must lie in [0, {num_states}), got [{int(tokens.min())}, {int(tokens.max())}]"
        )
    hot = torch.nn.functional.one_hot(tokens.long(), num_states).float()
    return 2.0 * hot - 1.0


def decode_tokens(x: torch.Tensor) -> torch.Tensor:
    """Tokens ``(n, L)`` (int64) of designs ``(n, L, v)``: the argmax of each row (ties: lowest
    index). Non-finite rows are not checked here (see :func:`as_tokens`)."""
    x = torch.as_tensor(x)
    if x.ndim != 3:
        raise ValueError(f"designs must have shape (n, L, v), got {tuple(x.shape)}")
    return x.detach().argmax(dim=-1)


def as_tokens(x: torch.Tensor | np.ndarray, length: int, num_states: int) -> torch.Tensor:
    """Tokens ``(n, L)`` int64 of either integer tokens ``(n, L)`` or designs ``(n, L, v)``.

    Raises ``ValueError`` naming the problem for another shape, a float ``(n, L)`` array (token
    ids must be integers), tokens outside ``[0, v)`` or non-finite designs.
    """
    t = torch.as_tensor(np.asarray(x)) if not isinstance(x, torch.Tensor) else x.detach()
    if t.ndim == 2 and tuple(t.shape[1:]) == (length,):
        if t.is_floating_point() or t.dtype == torch.bool:
            raise ValueError(
                f"token sequences of shape (n, {length}) must have an integer dtype, got {t.dtype}"
            )
        t = t.long().cpu()
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= num_states):
            raise ValueError(
                f"tokens must lie in [0, {num_states}), got [{int(t.min())}, {int(t.max())}]"
            )
        return t
    if t.ndim == 3 and tuple(t.shape[1:]) == (length, num_states):
        t = t.float().cpu()
        if not bool(torch.isfinite(t).all()):
            raise ValueError("designs (n, L, v) must be finite")
        return decode_tokens(t)
    raise ValueError(
        f"expected integer tokens of shape (n, {length}) or designs of shape "
        f"(n, {length}, {num_states}), got {tuple(t.shape)}"
    )


def hamming_diversity(tokens: torch.Tensor) -> float:
    """Mean Hamming distance over the n(n−1)/2 pairs of sequences ``(n, L)`` (NaN for n < 2)."""
    t = torch.as_tensor(tokens).long()
    n = t.shape[0]
    if n < 2:
        return float("nan")
    diff = (t[:, None, :] != t[None, :, :]).sum(-1).double()
    return float(diff.sum() / (n * (n - 1)))


def one_hot_features(tokens: torch.Tensor, num_states: int) -> torch.Tensor:
    """Flat one-hot vectors ``(n, L·v)`` in {0, 1} of tokens ``(n, L)`` (for Vendi scores)."""
    t = torch.as_tensor(tokens).long()
    return torch.nn.functional.one_hot(t, num_states).float().reshape(t.shape[0], -1)


def format_sequence(tokens: Iterable[int], marked: Iterable[int] = (), width: int = 2) -> str:
    """Tokens as space-separated numbers; positions in ``marked`` in brackets, e.g. ``3 [17] 4``."""
    mark = set(int(m) for m in marked)
    cells = []
    for i, tok in enumerate(tokens):
        s = f"{int(tok):>{width}d}"
        cells.append(f"[{s}]" if i in mark else f" {s} ")
    return "".join(cells).rstrip()
