"""CMA-ES through the ask/tell loop: the evolution strategy a user reaches for first.

Each CMA-ES iteration is one or more ``ask`` calls drawn from the current search
distribution N(m, σ² C) by ``cma`` (pycma 4.x, the ``airfoil`` extra), all of them one
population; the iteration closes, and pycma updates m, σ and C, at the first ``ask`` after
every point of it was told (or after ``popsize`` of them were: points still pending then
are left out of the update), provided at least μ = ⌊popsize/2⌋ were. Values are maximized
(pycma minimizes −y). A failed point (NaN, or marked failed) is ranked below every
successful point of its iteration (all failed: a flat population). Observations told with
``tell_external`` are not part of any population and are ignored.

Known constraints (``constraints=``) are handled the way pycma handles them (its
``ask_and_eval(..., is_feasible=...)``): a drawn solution that violates one is replaced by a
fresh draw ``ask(1)`` from the same distribution, at most ``max_draws_factor`` times per
slot (then ``ask`` raises: the search distribution has left the feasible set); rejected
draws are never evaluated nor told to pycma.

Reproducibility: pycma draws its normal numbers through the ``randn`` option, here a
``numpy.random.Generator`` owned by the optimizer (seeded from ``seed``; pycma never seeds
or touches numpy's global generator). Persistence: the state saved is the history of
iterations (the ask sizes, the ids told to pycma and their values); ``load`` rebuilds the
strategy by replaying it with a generator seeded the same way, which reproduces every
draw exactly (checked against the stored designs).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from sqdf_bbo.config import Range, as_config, check_fields, config_to_dict
from sqdf_bbo.optimizers.base import Optimizer, Proposal
from sqdf_bbo.study.errors import StudyError

__all__ = ["CMAES", "CMAESConfig"]

_RNG_OFFSET = 7919  # the strategy's generator is seeded with seed + this (not self.np_rng)


@dataclass(frozen=True)
class CMAESConfig:
    """Settings of :class:`CMAES`.

    Attributes:
        sigma0_fraction: initial step size σ0 as a fraction of the box width (high − low).
        popsize: λ, designs per iteration; ``None`` uses the optimizer's ``batch_size``
            (one iteration per round of a batched loop).
        bounded: keep designs in the box (pycma's ``bounds`` option); otherwise unbounded.
    """

    #: The sane range of each numeric setting (checked by ``check_fields``).
    LIMITS: ClassVar[dict[str, Range]] = {
        "sigma0_fraction": Range(0, 1, low_open=True),
        "popsize": Range(4, 1_000_000),
    }

    sigma0_fraction: float = 0.15
    popsize: int | None = None
    bounded: bool = True

    def __post_init__(self) -> None:
        check_fields(self)
        if not 0 < self.sigma0_fraction <= 1:
            raise ValueError(f"sigma0_fraction must lie in (0, 1], got {self.sigma0_fraction}")
        if self.popsize is not None and self.popsize < 4:
            raise ValueError(f"popsize must be >= 4 or None, got {self.popsize}")


def _require_cma() -> Any:
    try:
        import cma  # optional: part of the airfoil extra
    except ImportError as err:
        raise ImportError(
            'the cma-es baseline needs pycma; install the extra: pip install -e ".[airfoil]"'
        ) from err
    return cma


class CMAES(Optimizer):
    """pycma's CMA-ES in a design box, one population per iteration (module docstring).

    Args:
        shape: design shape, e.g. ``(18,)``.
        box: ``(low, high)`` bounds of every coordinate (and the scale of σ0).
        x0: start mean ``(*shape)`` (list or tensor); ``None``: the box center.
        batch_size: designs per ``ask()`` (and λ unless ``config.popsize`` is set; at least 4).
        seed: seeds the strategy's generator.
        config: :class:`CMAESConfig`.
        study: folder to write the study through to.
        constraints: known constraints (see :class:`~sqdf_bbo.optimizers.base.Optimizer`),
            handled by resampling (module docstring).
    """

    method = "cma-es"
    redraws_for_constraints = False  # _propose resamples infeasible draws itself
    config_class: ClassVar[type[CMAESConfig]] = CMAESConfig

    def __init__(
        self,
        shape: Sequence[int],
        box: tuple[float, float] = (-1.0, 1.0),
        x0: Sequence[float] | torch.Tensor | None = None,
        batch_size: int = 64,
        seed: int = 0,
        config: CMAESConfig | Mapping[str, Any] | None = None,
        study: str | Path | None = None,
        constraints: Any = None,
    ) -> None:
        low, high = (float(b) for b in box)
        if not low < high:
            raise ValueError(f"box must be (low, high) with low < high, got {box}")
        config = as_config(config, CMAESConfig)
        dim = math.prod(int(s) for s in shape)
        if x0 is None:
            start = np.full(dim, (low + high) / 2)
        else:
            start = np.asarray(torch.as_tensor(x0, dtype=torch.float64)).reshape(-1)
            if start.size != dim or not np.isfinite(start).all():
                raise ValueError(f"x0 must hold {dim} finite numbers, got {start.size}")
            if config.bounded and ((start < low).any() or (start > high).any()):
                raise ValueError(f"x0 lies outside the box [{low}, {high}]")
        popsize = config.popsize or int(batch_size)
        if popsize < 4:
            raise ValueError(f"CMA-ES needs a population of at least 4, got {popsize}")
        seed = self.check_seed(seed)  # the strategy is seeded from it before the base runs
        self.box = (low, high)
        self.x0 = start
        self.config = config
        self.popsize = popsize
        self._reset_strategy(seed)
        super().__init__(
            shape, batch_size=batch_size, seed=seed, study=study, constraints=constraints
        )

    # ------------------------------------------------------------------ strategy
    def _reset_strategy(self, seed: int) -> None:
        """A fresh pycma strategy with its own generator (seed + offset)."""
        cma = _require_cma()
        self._cma_rng = np.random.default_rng(seed + _RNG_OFFSET)
        rng = self._cma_rng
        low, high = self.box
        opts: dict[str, Any] = {
            "popsize": self.popsize,
            "seed": float("nan"),  # pycma must not seed numpy's global generator
            "randn": lambda *size: rng.standard_normal(size),
            "verbose": -9,
            "verb_log": 0,
            "verb_disp": 0,
        }
        if self.config.bounded:
            opts["bounds"] = [low, high]
        sigma0 = self.config.sigma0_fraction * (high - low)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._es = cma.CMAEvolutionStrategy(self.x0.tolist(), sigma0, opts)
        self._mu = int(self._es.sp.weights.mu)
        self._history: list[dict[str, Any]] = []  # closed iterations
        # the open iteration: its asks, ids and, with constraints, every draw ("draws": the
        # sizes of pycma's asks, "kept": which drawn solutions became the ids, in order)
        self._open: dict[str, Any] = {"ask_sizes": [], "ids": []}
        self._solutions: dict[int, np.ndarray] = {}  # float64 solutions of the open iteration
        self._replayed: dict[int, np.ndarray] = {}  # rebuilt by a load, checked at the next ask

    def _replay(self, it: dict[str, Any]) -> list[np.ndarray]:
        """Redraw an iteration's solutions in the order of its ids (same calls to pycma)."""
        if "draws" in it:
            drawn = [s for size in it["draws"] for s in self._ask_strategy(int(size))]
            return [drawn[int(k)] for k in it["kept"]]
        return [s for size in it["ask_sizes"] for s in self._ask_strategy(int(size))]

    def _draw_feasible(self, n: int) -> list[np.ndarray]:
        """n solutions satisfying the known constraints: infeasible draws are replaced by
        ``ask(1)`` draws, at most ``max_draws_factor`` per slot (module docstring)."""
        assert self.constraints is not None
        opened = self._open
        opened.setdefault("draws", [])
        opened.setdefault("kept", [])
        start = sum(int(d) for d in opened["draws"])
        sols = self._ask_strategy(n)
        opened["draws"].append(n)
        index = list(range(start, start + n))
        ok = self._feasible(sols)
        for slot in range(n):
            tries = 1
            while not ok[slot] and tries < self.constraints.max_draws_factor:
                sols[slot] = self._ask_strategy(1)[0]
                index[slot] = sum(int(d) for d in opened["draws"])
                opened["draws"].append(1)
                ok[slot] = self._feasible([sols[slot]])[0]
                tries += 1
        if not all(ok):
            raise RuntimeError(
                f"CMA-ES: {ok.count(False)} of {n} designs still violate the known constraints "
                f"{self.constraints.names} after {self.constraints.max_draws_factor} draws "
                "each; the search distribution has left the feasible set"
            )
        opened["kept"].extend(index)
        self.constraint_acceptance = n / (sum(int(d) for d in opened["draws"]) - start)
        return sols

    def _feasible(self, sols: list[np.ndarray]) -> list[bool]:
        assert self.constraints is not None
        x = torch.as_tensor(np.stack(sols), dtype=self.dtype).reshape(len(sols), *self.shape)
        return [bool(v) for v in self.constraints.feasible(x.to(self.device))]

    def _ask_strategy(self, n: int) -> list[np.ndarray]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return [np.asarray(s, dtype=np.float64) for s in self._es.ask(n)]

    def _tell_strategy(self, solutions: list[np.ndarray], f: list[float]) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._es.tell(solutions, f)

    def _close_iteration_if_told(self) -> None:
        """Update pycma with the open iteration once it is told (see the module docstring)."""
        ids = self._open["ids"]
        if not ids:
            return
        states = {i: self._points[i].state for i in ids}
        told = [i for i in ids if states[i] != "pending"]
        pending = len(ids) - len(told)
        if len(told) < max(self._mu, 3) or (pending and len(told) < self.popsize):
            return
        # 1. f = −y for successful points; failed ones rank below all of them.
        ok = [self._points[i].value for i in told if states[i] == "complete"]
        worst = -min(ok) if ok else 0.0
        f = [-self._points[i].value if states[i] == "complete" else worst + 1.0 for i in told]
        # 2. One pycma update with the told members of the population.
        self._tell_strategy([self._solutions[i] for i in told], f)
        self._history.append({**self._open, "ids": list(ids), "told": told, "f": f})
        self._open = {"ask_sizes": [], "ids": []}
        self._solutions = {}

    # ------------------------------------------------------------------ hooks
    def _propose(self, n: int) -> Proposal:
        self._check_replay()
        self._close_iteration_if_told()
        sols = self._ask_strategy(n) if self.constraints is None else self._draw_feasible(n)
        ids = list(range(self._next_id, self._next_id + n))  # the ids the base assigns next
        self._open["ask_sizes"].append(n)
        self._open["ids"].extend(ids)
        self._solutions.update(zip(ids, sols))
        x = torch.as_tensor(np.stack(sols), dtype=self.dtype, device=self.device)
        return Proposal(x.reshape(n, *self.shape))

    def _metrics(self) -> dict[str, float]:
        return {"sigma": float(self._es.sigma), "iterations": float(len(self._history))}

    def _settings_changed(self, changes: dict[str, tuple[Any, Any]]) -> None:
        raise ValueError(
            "CMA-ES fixes its settings in its strategy when it starts (σ0, λ, bounds); "
            "start a new study to change them"
        )

    def _spec(self) -> dict[str, Any]:
        return {
            "shape": list(self.shape),
            "box": list(self.box),
            "x0": self.x0.tolist(),
            "config": config_to_dict(self.config),
        }

    def _extra_state(self) -> dict[str, Any]:
        return {"history": self._history, "open": self._open}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        """Rebuild pycma by replaying the saved iterations with a freshly seeded generator."""
        self._reset_strategy(self.seed)
        for it in state.get("history", []):
            by_id = dict(zip(it["ids"], self._replay(it)))
            self._replayed.update(by_id)
            self._tell_strategy([by_id[i] for i in it["told"]], [float(v) for v in it["f"]])
            self._history.append(it)
        opened = dict(state.get("open", {"ask_sizes": [], "ids": []}))
        self._solutions = dict(zip(opened["ids"], self._replay(opened)))
        self._replayed.update(self._solutions)
        self._open = {k: list(v) for k, v in opened.items()}

    def _check_replay(self) -> None:
        """After a load: the replayed draws must equal the stored designs."""
        replayed, self._replayed = self._replayed, {}
        for i, s in replayed.items():
            p = self._points.get(int(i))
            if p is not None and not np.allclose(p.x.double().reshape(-1).numpy(), s, atol=1e-5):
                raise StudyError(
                    f"replaying the CMA-ES history did not reproduce design {i}; "
                    "the study was written by another version of cma or numpy"
                )
