"""Ehrlich functions (Stanton et al. 2024, "Closed-Form Test Functions for Biophysical Sequence
Design"): our batched implementation, equal to ``pytorch-holo`` 0.0.5's for the same seed.

An instance (v states, length L, c motifs of length k, quantization q, seed) is built from one
``torch.Generator`` seeded with ``random_seed``, drawing in this order (holo's order, so the
same seed gives the same instance; checked against holo's outputs in tests/test_ehrlich.py):

1. the transition matrix A (v × v): ``softmax(randn(v, v) / 0.5)`` row-wise, masked by a banded
   0/1 matrix (band ⌊0.4 v⌋ on each side of the diagonal, wrapping around) whose rows are
   permuted by ``randperm(v)``, with the diagonal always allowed, then rows renormalized. A
   transition a → b with A[a, b] = 0 is impossible; the chain is ergodic (checked: A^m > 0
   for m = (v−1)² + 1);
2. π, the chain's stationary distribution (least squares of (I − A)ᵀ π = 0, Σπ = 1);
3. the c motifs: one chain path of c·k states started from π, cut into c pieces of k (so a
   feasible optimum exists);
4. c spacing vectors s (k − 1 gaps each): w = rand(k − 1), w / Σw, s = 1 + ⌊(⌊(L − c·k)/c⌋) w⌋.

Value of a sequence x (tokens ``(L,)``):

    h_i(x)  = max over offsets l of  q(#{j : x[l + o_ij] = m_ij} ) ,  o_i = (0, cumsum(s_i))
    q(n)    = ⌊n / ⌈k/q⌉⌋ / (k / ⌈k/q⌉)                               (holo's quantization)
    f(x)    = Π_i  h_i (1 + ε h_i (h_i − 1))                           (ε: epistasis_factor)

and x is **feasible** iff every transition x_{l−1} → x_l has A > 0 (holo: the log-likelihood
under a uniform first state and A is finite). Infeasible sequences are failed points (NaN)
with a reason naming the first impossible transition; holo returns −inf for them. The
optimum is 1.0 (:meth:`EhrlichOracle.optimal_solution` builds one).

Designs: the oracle accepts integer tokens ``(n, L)`` or designs ``(n, L, v)``, read by the
row-wise argmax (:mod:`sqdf_bbo.sequences`); the sequence prior and every sequence optimizer
ask designs of shape ``(L, v)``. Observation noise and negation are the base's (seeded
generator; holo draws its noise from torch's global generator).
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import torch

from sqdf_bbo.sequences import as_tokens, one_hot_designs

from .base import Evaluation, Oracle

__all__ = ["EhrlichOracle", "ehrlich_name", "parse_ehrlich_name", "sample_chain"]

_SOFTMAX_TEMP = 0.5
_BAND_FRACTION = 0.4


def ehrlich_name(
    num_states: int,
    dim: int,
    num_motifs: int,
    motif_length: int,
    quantization: int | None,
    random_seed: int = 0,
) -> str:
    """The task / prior name of an instance, e.g. ``ehrlich-v32-l32-c4-k4-q4`` (random seed 0)
    or ``ehrlich-v32-l32-c4-k4-q4-s7``; :func:`parse_ehrlich_name` inverts it."""
    q = motif_length if quantization is None else quantization
    name = f"ehrlich-v{num_states}-l{dim}-c{num_motifs}-k{motif_length}-q{q}"
    return name if random_seed == 0 else f"{name}-s{random_seed}"


_NAME = re.compile(r"^ehrlich-v(\d+)-l(\d+)-c(\d+)-k(\d+)-q(\d+)(?:-s(\d+))?$")


def parse_ehrlich_name(name: str) -> dict[str, int]:
    """The instance of a name of :func:`ehrlich_name`: ``{num_states, dim, num_motifs,
    motif_length, quantization, random_seed}``; ``ValueError`` for anything else."""
    m = _NAME.match(name)
    if m is None:
        raise ValueError(
            f"{name!r} is not an Ehrlich instance name; expected ehrlich-v<states>-l<length>-"
            "c<motifs>-k<motif length>-q<quantization>[-s<seed>], e.g. ehrlich-v32-l32-c4-k4-q4"
        )
    keys = ("num_states", "dim", "num_motifs", "motif_length", "quantization", "random_seed")
    return {k: int(v) if v is not None else 0 for k, v in zip(keys, m.groups())}


def _transition_matrix(v: int, gen: torch.Generator) -> torch.Tensor:
    """Step 1 of the module docstring: the banded ergodic transition matrix ``(v, v)``."""
    dense = (torch.randn(v, v, generator=gen) / _SOFTMAX_TEMP).softmax(dim=-1)
    band = int(v * _BAND_FRACTION)
    rows = torch.arange(v)[:, None]
    offsets = (torch.arange(v)[None, :] - rows) % v  # (j − i) mod v
    mask = (offsets <= band) | (offsets >= v - band)
    mask = mask[torch.randperm(v, generator=gen)] | torch.eye(v, dtype=torch.bool)
    a = torch.where(mask, dense, torch.zeros_like(dense))
    a = a / a.sum(dim=-1, keepdim=True)
    reach = (a > 0).double()
    power = reach.clone()
    for _ in range((v - 1) ** 2):
        power = ((power @ reach) > 0).double()
        if bool((power > 0).all()):
            break
    if not bool((power > 0).all()):
        raise RuntimeError("the sampled transition matrix is not ergodic")
    return a


def _stationary(a: torch.Tensor) -> torch.Tensor:
    """Step 2: π with πA = π and Σπ = 1, as the least-squares solution of a stacked system."""
    v = a.shape[0]
    lhs = torch.cat([(torch.eye(v) - a).T, torch.ones(1, v)], dim=0)
    rhs = torch.zeros(v + 1, 1)
    rhs[-1] = 1.0
    q, r = torch.linalg.qr(lhs)
    pi = torch.linalg.solve(r, q.T @ rhs)
    if float(torch.norm(lhs @ pi - rhs)) > 1e-5:
        raise RuntimeError("the stationary distribution of the chain could not be solved")
    return pi.squeeze(-1)


def sample_chain(
    initial: torch.Tensor, a: torch.Tensor, length: int, n: int, gen: torch.Generator
) -> torch.Tensor:
    """n paths ``(n, length)`` of the chain: x_0 ~ initial, x_l ~ A[x_{l−1}] (holo's draw order)."""
    out = torch.zeros(n, length, dtype=torch.int64)
    out[:, 0] = torch.multinomial(initial, n, replacement=True, generator=gen)
    for t in range(1, length):
        out[:, t] = torch.multinomial(a[out[:, t - 1]], 1, generator=gen).squeeze(-1)
    return out


class EhrlichOracle(Oracle):
    """The Ehrlich function of (v, L, c, k, q, ε, seed), batched (module docstring).

    Args:
        num_states: v, the alphabet size.
        dim: L, the sequence length.
        num_motifs: c.
        motif_length: k.
        quantization: q in [1, k] (``None``: k, no quantization), applied as holo does
            (module docstring).
        epistasis_factor: ε ≥ 0 of the cubic response.
        noise_std: σ of the observation noise (from the base's seeded generator).
        negate: return −f.
        random_seed: seeds the instance (transition matrix, motifs, spacings).
        seed: seeds the observation noise (the base's generator).

    Attributes:
        transition_matrix ``(v, v)``, stationary_dist ``(v,)``, motifs ``(c, k)`` int64,
        spacings ``(c, k−1)`` int64, offsets ``(c, k)`` (positions of each motif element
        relative to its start).
    """

    name = "ehrlich"
    _optimal_value = 1.0

    def __init__(
        self,
        num_states: int = 5,
        dim: int = 7,
        num_motifs: int = 1,
        motif_length: int = 3,
        quantization: int | None = None,
        epistasis_factor: float = 0.0,
        noise_std: float = 0.0,
        negate: bool = False,
        random_seed: int = 0,
        *,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        ints = {"num_states": num_states, "dim": dim, "num_motifs": num_motifs}
        ints["motif_length"] = motif_length
        for key, val in ints.items():
            if not isinstance(val, int) or isinstance(val, bool) or val < 1:
                raise ValueError(f"{key} must be a positive int, got {val!r}")
        if num_states < 2 or motif_length < 2:
            raise ValueError(
                f"need num_states >= 2 and motif_length >= 2, got {num_states}, {motif_length}"
            )
        q = motif_length if quantization is None else quantization
        if not isinstance(q, int) or not 1 <= q <= motif_length:
            raise ValueError(
                f"quantization must be an int in [1, motif_length], got {quantization!r}"
            )
        if not (math.isfinite(epistasis_factor) and epistasis_factor >= 0):
            raise ValueError(f"epistasis_factor must be finite and >= 0, got {epistasis_factor}")
        slack = dim - num_motifs * motif_length
        if slack < 0:
            raise ValueError(
                f"dim={dim} is too short for {num_motifs} motifs of length {motif_length}: "
                "no feasible optimum is guaranteed"
            )
        if not isinstance(random_seed, int) or isinstance(random_seed, bool):
            raise TypeError(f"random_seed must be an int, got {type(random_seed).__name__}")
        self.num_states, self.length = num_states, dim
        self.num_motifs, self.motif_length = num_motifs, motif_length
        self.quantization = q
        self.epistasis_factor = float(epistasis_factor)
        self.random_seed = random_seed
        self.shape = (dim, num_states)
        gen = torch.Generator().manual_seed(random_seed)
        # 1.-2. The chain.
        self.transition_matrix = _transition_matrix(num_states, gen)
        self.stationary_dist = _stationary(self.transition_matrix)
        # 3. The motifs: one chain path cut into c pieces.
        path = sample_chain(
            self.stationary_dist, self.transition_matrix, num_motifs * motif_length, 1, gen
        )
        self.motifs = path.reshape(num_motifs, motif_length)
        # 4. The spacings.
        spacings = []
        for _ in range(num_motifs):
            w = torch.rand(motif_length - 1, generator=gen)
            w = w / w.sum()
            spacings.append(1 + ((slack // num_motifs) * w).floor().to(torch.int64))
        self.spacings = torch.stack(spacings)
        self.offsets = torch.cat(
            [torch.zeros(num_motifs, 1, dtype=torch.int64), self.spacings.cumsum(-1)], dim=-1
        )
        super().__init__(noise_std=noise_std, negate=negate, seed=seed, **kwargs)

    # ------------------------------------------------------------------ designs
    def _check(self, x: Any) -> torch.Tensor:
        """Accept integer tokens ``(n, L)`` too: they become one-hot designs ``(n, L, v)``."""
        t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
        if t.ndim == 2 and not t.is_floating_point():
            x = one_hot_designs(as_tokens(t, self.length, self.num_states), self.num_states)
        return super()._check(x)

    def tokens(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Tokens ``(n, L)`` of integer tokens or designs ``(n, L, v)`` (row-wise argmax)."""
        return as_tokens(x, self.length, self.num_states)

    # ------------------------------------------------------------------ the function
    def motif_presence(self, tokens: torch.Tensor) -> torch.Tensor:
        """Quantized presence h_i ``(n, c)`` of each motif, in [0, 1]."""
        t = torch.as_tensor(tokens).long().cpu()
        k = self.motif_length
        q1 = math.ceil(k / self.quantization)
        q2 = k / q1
        out = []
        for motif, offs in zip(self.motifs, self.offsets):
            starts = torch.arange(self.length - int(offs[-1]))  # (S,)
            idx = starts[:, None] + offs[None, :]  # (S, k)
            count = (t[:, idx] == motif).sum(-1).double()  # (n, S)
            out.append((torch.div(count, q1, rounding_mode="floor") / q2).max(dim=-1).values)
        return torch.stack(out, dim=-1)

    def feasible(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(n,)`` bool: every transition of the sequence is possible under the chain."""
        t = torch.as_tensor(tokens).long().cpu()
        return (self.transition_matrix[t[:, :-1], t[:, 1:]] > 0).all(-1)

    def log_likelihood(self, tokens: torch.Tensor, initial: str = "stationary") -> torch.Tensor:
        """Exact log-likelihood ``(n,)`` float64 of sequences under the chain (−inf if infeasible).

        ``initial``: ``"stationary"`` (x_0 ~ π, the law the natural sequences are drawn from)
        or ``"uniform"`` (holo's feasibility likelihood)."""
        t = torch.as_tensor(tokens).long().cpu()
        a = self.transition_matrix.double()
        if initial == "stationary":
            first = self.stationary_dist.double()[t[:, 0]].log()
        elif initial == "uniform":
            first = torch.full((t.shape[0],), -math.log(self.num_states), dtype=torch.float64)
        else:
            raise ValueError(f"initial must be 'stationary' or 'uniform', got {initial!r}")
        return first + a[t[:, :-1], t[:, 1:]].log().sum(-1)

    def value_of_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Noise-free f ``(n,)`` float64 of tokens ``(n, L)``; −inf where infeasible (as holo)."""
        h = self.motif_presence(tokens)
        f = (h * (1.0 + self.epistasis_factor * h * (h - 1.0))).prod(-1)
        return torch.where(self.feasible(tokens), f, torch.tensor(-math.inf, dtype=f.dtype))

    def _evaluate(self, x: torch.Tensor) -> Evaluation:
        t = self.tokens(x)
        values = self.value_of_tokens(t)
        reasons = {}
        bad = ~torch.isfinite(values)
        if bool(bad.any()):
            ok = self.transition_matrix[t[:, :-1], t[:, 1:]] > 0  # (n, L−1)
            for i in torch.nonzero(bad).flatten().tolist():
                pos = int((~ok[i]).nonzero()[0])
                a, b = int(t[i, pos]), int(t[i, pos + 1])
                reasons[i] = (
                    f"infeasible sequence: transition {a} -> {b} at positions {pos}-{pos + 1} "
                    "is impossible under the chain"
                )
        return Evaluation(values.masked_fill(bad, math.nan), reasons)

    # ------------------------------------------------------------------ sequences
    def initial_solution(self, n: int = 1) -> torch.Tensor:
        """n feasible sequences ``(n, L)`` drawn from the chain (x_0 ~ π), the same every call:
        holo's ``initial_solution(n)`` (its generator restarts from ``random_seed``)."""
        gen = torch.Generator().manual_seed(self.random_seed)
        return sample_chain(self.stationary_dist, self.transition_matrix, self.length, n, gen)

    def sample_natural(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n chain sequences ``(n, L)`` (x_0 ~ π) drawn from ``generator``: the natural family."""
        return sample_chain(self.stationary_dist, self.transition_matrix, self.length, n, generator)

    def optimal_solution(self) -> torch.Tensor:
        """A sequence ``(L,)`` of value 1 (holo's construction): each motif's elements at its
        offsets, the gaps filled by repeating the element before (always feasible: A allows
        repeats and the motifs are consecutive pieces of one chain path), motifs one after
        another, the rest filled with the last element."""
        out: list[int] = []
        for motif, offs in zip(self.motifs.tolist(), self.offsets.tolist()):
            for j, m in enumerate(motif):
                if j:
                    out.extend([out[-1]] * (offs[j] - offs[j - 1] - 1))
                out.append(m)
        out.extend([out[-1]] * (self.length - len(out)))
        return torch.tensor(out, dtype=torch.int64)

    def motif_positions(self, tokens: torch.Tensor) -> list[list[int]]:
        """Per sequence, the positions of motif elements in place at each motif's best offset
        (for printing sequences with their motifs marked)."""
        t = torch.as_tensor(tokens).long().cpu()
        marks: list[list[int]] = [[] for _ in range(t.shape[0])]
        for motif, offs in zip(self.motifs, self.offsets):
            starts = torch.arange(self.length - int(offs[-1]))
            idx = starts[:, None] + offs[None, :]
            hit = t[:, idx] == motif  # (n, S, k)
            best = hit.sum(-1).argmax(-1)  # (n,)
            for i in range(t.shape[0]):
                pos = idx[best[i]][hit[i, best[i]]]
                marks[i].extend(int(p) for p in pos)
        return [sorted(set(m)) for m in marks]

    def __repr__(self) -> str:
        return (
            f"EhrlichOracle(v={self.num_states}, L={self.length}, c={self.num_motifs}, "
            f"k={self.motif_length}, q={self.quantization}, epistasis={self.epistasis_factor}, "
            f"noise_std={self.noise_std}, negate={self.negate}, random_seed={self.random_seed})"
        )
