"""The contract every ask/tell optimizer must pass.

Reuse it for a new optimizer::

    from tests.test_optimizer_contract import OptimizerContract

    class TestMyOptimizerContract(OptimizerContract):
        def make_optimizer(self, study=None):
            return MyOptimizer(prior, batch_size=self.batch_size, seed=0, study=study)

Import only ``OptimizerContract`` (not the ``Test*`` classes below), or pytest collects them twice.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from sqdf_bbo.optimizers.base import Batch, Observations, Optimizer, Proposal
from sqdf_bbo.optimizers.registry import OPTIMIZERS
from sqdf_bbo.study.errors import StudyError

__all__ = ["OptimizerContract"]


class OptimizerContract:
    """Mixin of contract tests; override :meth:`make_optimizer` (and optionally ``objective``)."""

    batch_size: int = 4
    exact_resume: bool = True
    """Whether a reloaded optimizer must propose exactly the batch the original would. Set it
    to ``False`` only for algorithms whose proposals depend on state that cannot be saved
    (e.g. a third-party optimizer drawing from the global RNG); say why where you do."""

    def make_optimizer(self, study: Path | None = None) -> Optimizer:
        """A fresh optimizer with a fixed seed (``study`` = folder to write through to)."""
        raise NotImplementedError

    def objective(self, x: torch.Tensor) -> torch.Tensor:
        """Values to tell for designs ``x (n, *shape)`` -> ``(n,)`` float64."""
        return -(x.flatten(1).double() ** 2).sum(1)

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def fingerprint(opt: Optimizer) -> tuple[Any, ...]:
        h = opt.history
        return (
            h.to_json(),
            opt.counts(),
            opt.round,
            opt.designs().clone() if len(opt) else None,
            len(opt),
        )

    def assert_unchanged(self, opt: Optimizer, before: tuple[Any, ...]) -> None:
        after = self.fingerprint(opt)
        assert after[0] == before[0], "history changed after a rejected call"
        assert after[1:3] == before[1:3], "counts or round changed after a rejected call"
        assert after[4] == before[4]
        if before[3] is not None:
            assert torch.equal(after[3], before[3]), "designs changed after a rejected call"

    def one_round(self, opt: Optimizer, n: int | None = None) -> Batch:
        batch = opt.ask(n)
        opt.tell(batch.ids, self.objective(batch.x))
        return batch

    # ------------------------------------------------------------------ ask
    def test_ask_shapes_and_unique_ids(self) -> None:
        opt = self.make_optimizer()
        b1 = opt.ask()
        b2 = opt.ask(3)
        assert isinstance(b1, Batch)
        assert len(b1.ids) == self.batch_size and len(b2.ids) == 3
        assert tuple(b1.x.shape) == (self.batch_size, *opt.shape)
        assert tuple(b2.x.shape) == (3, *opt.shape)
        ids = b1.ids + b2.ids
        assert len(set(ids)) == len(ids), "ids must be unique"
        assert all(isinstance(i, int) for i in ids)
        assert torch.isfinite(b1.x).all()
        assert torch.equal(opt.designs(b2.ids), b2.x)
        assert set(opt.pending) == set(ids)

    def test_ask_any_n_and_bad_n(self) -> None:
        opt = self.make_optimizer()
        assert len(opt.ask(1)) == 1
        assert len(opt.ask(2 * self.batch_size + 1)) == 2 * self.batch_size + 1
        before = self.fingerprint(opt)
        for bad in (0, -1, 2.5, "3", True):
            with pytest.raises((ValueError, TypeError)):
                opt.ask(bad)
        self.assert_unchanged(opt, before)

    # ------------------------------------------------------------------ tell
    def test_states_pending_complete_failed(self) -> None:
        opt = self.make_optimizer()
        b = opt.ask(4)
        opt.tell([b.ids[2], b.ids[0]], [1.5, float("nan")])  # partial, out of order
        opt.tell(b.ids[3], [float("inf")])
        h = opt.history.set_index("id")
        assert h.loc[b.ids[2], "state"] == "complete" and h.loc[b.ids[2], "value"] == 1.5
        assert h.loc[b.ids[0], "state"] == "failed"
        assert h.loc[b.ids[3], "state"] == "failed" and h.loc[b.ids[3], "value"] == math.inf
        assert h.loc[b.ids[1], "state"] == "pending" and math.isnan(h.loc[b.ids[1], "value"])
        assert opt.counts() == {"pending": 1, "complete": 1, "failed": 2}
        assert opt.pending == [b.ids[1]]
        obs = opt.observations()
        assert obs.ids == [b.ids[2]] and obs.y.tolist() == [1.5], "failed points are not fitted"
        assert {"id", "round", "state", "value", "source", "asked_at", "told_at"} <= set(
            h.reset_index()
        )
        assert opt.best().id == b.ids[2]

    def test_unknown_id_raises_and_keeps_state(self) -> None:
        opt = self.make_optimizer()
        b = opt.ask(3)
        before = self.fingerprint(opt)
        with pytest.raises(KeyError, match="unknown id"):
            opt.tell([b.ids[0], 10_000], [1.0, 2.0])
        self.assert_unchanged(opt, before)

    def test_duplicate_tell_raises_and_keeps_state(self) -> None:
        opt = self.make_optimizer()
        b = opt.ask(3)
        opt.tell([b.ids[0]], [1.0])
        before = self.fingerprint(opt)
        with pytest.raises(ValueError, match="already told"):
            opt.tell([b.ids[1], b.ids[0]], [2.0, 3.0])
        with pytest.raises(ValueError, match="twice"):
            opt.tell([b.ids[1], b.ids[1]], [2.0, 3.0])
        self.assert_unchanged(opt, before)

    def test_wrong_length_or_shape_raises_and_keeps_state(self) -> None:
        opt = self.make_optimizer()
        b = opt.ask(3)
        before = self.fingerprint(opt)
        with pytest.raises(ValueError, match="expected 3 values"):
            opt.tell(b.ids, [1.0, 2.0])
        with pytest.raises(ValueError, match="expected 3 values"):
            opt.tell(b.ids, torch.ones(3, 2))
        bad_x = torch.zeros(2, *[s + 1 for s in opt.shape])
        with pytest.raises(ValueError, match="shape"):
            opt.tell_external(bad_x, [1.0, 2.0])
        with pytest.raises(ValueError, match="expected 2 values"):
            opt.tell_external(torch.zeros(2, *opt.shape), [1.0])
        self.assert_unchanged(opt, before)

    def test_non_numeric_raises_and_keeps_state(self) -> None:
        opt = self.make_optimizer()
        b = opt.ask(2)
        before = self.fingerprint(opt)
        for bad in (["1.0", 2.0], [object(), 1.0], np.array(["a", "b"]), [1j, 2.0], "ab"):
            with pytest.raises(TypeError):
                opt.tell(b.ids, bad)
        with pytest.raises(TypeError):
            opt.tell([0.5, 1.5], [1.0, 2.0])
        self.assert_unchanged(opt, before)

    def test_constant_values_work(self) -> None:
        opt = self.make_optimizer()
        for _ in range(3):
            b = opt.ask()
            opt.tell(b.ids, [2.0] * len(b))
        b = opt.ask()
        assert torch.isfinite(b.x).all()
        assert opt.round >= 1, "new successful observations must trigger a fit (a round)"

    def test_single_observation_works(self) -> None:
        opt = self.make_optimizer()
        b = opt.ask(2)
        opt.tell(b.ids, [0.5, None])
        assert torch.isfinite(opt.ask(2).x).all()

    def test_round_counter(self) -> None:
        opt = self.make_optimizer()
        b = opt.ask()
        assert opt.round == 0 and opt.history["round"].eq(0).all()
        opt.ask()  # nothing told yet: no new round
        assert opt.round == 0
        opt.tell(b.ids, [float("nan")] * len(b))  # only failures: no new round
        opt.ask()
        assert opt.round == 0
        self.one_round(opt)
        b3 = opt.ask()
        assert opt.round == 1
        assert set(opt.history.set_index("id").loc[b3.ids, "round"]) == {1}

    def test_external_tells(self) -> None:
        opt = self.make_optimizer()
        gen = torch.Generator().manual_seed(1)
        x = torch.randn((5, *opt.shape), generator=gen).clamp(-1, 1)
        ids = opt.tell_external(x, self.objective(x))
        ids2 = opt.tell_external(x[:1].numpy(), [float("nan")])
        assert len(set(ids + ids2)) == 6
        h = opt.history.set_index("id")
        assert (h.loc[ids, "source"] == "external").all() and (
            h.loc[ids, "state"] == "complete"
        ).all()
        assert h.loc[ids2[0], "state"] == "failed"
        assert torch.allclose(opt.designs(ids), x.to(opt.dtype))
        with pytest.raises(ValueError, match="external"):
            opt.tell(ids[:1], [1.0])
        b = opt.ask()
        assert opt.round == 1, "external observations start a round"
        assert not set(b.ids) & set(ids + ids2)
        obs = opt.observations()
        assert set(ids) <= set(obs.ids)

    def test_run_loop(self) -> None:
        opt = self.make_optimizer()
        hist = opt.run(self.objective, budget=2 * self.batch_size + 1, progress=False)
        assert isinstance(hist, pd.DataFrame)
        assert len(hist) == 2 * self.batch_size + 1
        assert (hist["state"] == "complete").all()
        assert opt.round == 2

    # ------------------------------------------------------------------ persistence
    def test_save_load_round_trip(self, tmp_path: Path) -> None:
        opt = self.make_optimizer()
        self.one_round(opt)
        opt.tell_external(torch.zeros(1, *opt.shape), [0.25])
        b = opt.ask()
        opt.tell(b.ids[:1], [float("nan")])  # one failed, the rest stay pending
        saved_round = opt.round
        opt.save(tmp_path / "s")
        opt.save(tmp_path / "s")  # saving again over its own copy is fine
        loaded = type(opt).load(tmp_path / "s", attach=False)
        pd.testing.assert_frame_equal(loaded.history, opt.history)
        assert torch.equal(loaded.designs(), opt.designs())
        assert loaded.pending == opt.pending and loaded.round == opt.round
        # The restored state continues exactly like the original.
        nxt, nxt_loaded = opt.ask(), loaded.ask()
        assert nxt.ids == nxt_loaded.ids
        assert torch.isfinite(nxt_loaded.x).all()
        if self.exact_resume:
            assert torch.allclose(nxt.x, nxt_loaded.x, atol=1e-5), (
                "save/load must restore all state"
            )
        loaded.tell(b.ids[1:], self.objective(b.x[1:]))
        assert loaded.counts()["pending"] == len(nxt.ids)
        assert Optimizer.load(tmp_path / "s", attach=False).round == saved_round

    def test_study_writes_through(self, tmp_path: Path) -> None:
        study = tmp_path / "study"
        opt = self.make_optimizer(study=study)
        assert opt.study == study.absolute()
        b = opt.ask()
        opt.tell(b.ids[:2], self.objective(b.x[:2]))
        # A second process would see exactly this (no save() call needed).
        other = type(opt).load(study, attach=False)
        pd.testing.assert_frame_equal(other.history, opt.history)
        with pytest.raises(StudyError, match="already holds a study"):
            self.make_optimizer(study=study)
        opt.close()
        resumed = type(opt).load(study)
        assert resumed.pending == b.ids[2:]
        resumed.tell(b.ids[2:], self.objective(b.x[2:]))
        b2 = resumed.ask()
        assert resumed.round == 1 and min(b2.ids) > max(b.ids)
        again = type(opt).load(study, attach=False)
        assert again.counts() == {"pending": len(b2), "complete": len(b), "failed": 0}


# ---------------------------------------------------------------------------- a tiny optimizer
class GaussianSearch(Optimizer, register=False):
    """Test-only optimizer: N(best design so far, scale²) with a learned scale (not
    registered: the CLI and the benchmarks never see it; its own ``load`` finds it)."""

    method = "test-gaussian-search"

    def __init__(
        self, shape: tuple[int, ...] = (2,), batch_size: int = 4, seed: int = 0, study=None
    ) -> None:
        self.center = torch.zeros(tuple(shape))  # attributes first: super().__init__ last
        self.scale = 1.0
        self.fits = 0
        super().__init__(shape, batch_size=batch_size, seed=seed, study=study)

    def _propose(self, n: int) -> Proposal:
        x = self.center + self.scale * torch.randn((n, *self.shape), generator=self.generator)
        return Proposal(x.clamp(-1, 1))

    def _fit(self, observations: Observations) -> None:
        x, y = observations.x, observations.y
        self.center = x[int(torch.argmax(y))].clone()
        self.scale = float(0.5 + self.np_rng.uniform(0, 0.5))
        self.fits += 1

    def _spec(self) -> dict[str, Any]:
        return {"shape": list(self.shape)}

    def _extra_state(self) -> dict[str, Any]:
        return {"center": self.center, "scale": self.scale, "fits": self.fits}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self.center, self.scale, self.fits = state["center"], state["scale"], state["fits"]


@pytest.fixture
def gaussian_search_registered():
    """``GaussianSearch`` in the optimizer registry for one test (``Optimizer.load`` reads it)."""
    with OPTIMIZERS.temporarily(GaussianSearch.method, GaussianSearch):
        yield


@pytest.mark.usefixtures("gaussian_search_registered")
class TestGaussianSearchContract(OptimizerContract):
    def make_optimizer(self, study: Path | None = None) -> Optimizer:
        return GaussianSearch(batch_size=self.batch_size, seed=0, study=study)


@pytest.mark.usefixtures("gaussian_search_registered")
class TestImageShapeContract(OptimizerContract):
    batch_size = 3

    def make_optimizer(self, study: Path | None = None) -> Optimizer:
        return GaussianSearch(shape=(1, 3, 3), batch_size=self.batch_size, seed=1, study=study)


def test_fit_sees_all_successful_observations() -> None:
    opt = GaussianSearch(batch_size=3)
    b = opt.ask()
    opt.tell(b.ids, [1.0, float("nan"), 3.0])
    opt.tell_external(torch.tensor([[0.5, 0.5]]), [10.0])
    seen = {}

    def spy(observations: Observations) -> None:
        seen["obs"] = observations

    opt._fit = spy  # type: ignore[method-assign]
    opt.ask()
    obs = seen["obs"]
    assert obs.y.dtype == torch.float64
    assert obs.y.tolist() == [1.0, 3.0, 10.0]
    assert torch.equal(obs.x[2], torch.tensor([0.5, 0.5]))
    assert obs.sources == ["asked", "asked", "external"]
    assert obs.rounds == [0, 0, 0]
    # GaussianSearch samples no chains: nothing to train a fine-tuner on.
    assert obs.trajectories == [None, None, None]
    traj, y, rounds = obs.chains(3)
    assert traj.shape == (0, 3, 2) and y.numel() == 0 and rounds == []


def test_method_name_required() -> None:
    class Nameless(Optimizer):
        def _propose(self, n: int) -> Proposal:
            return Proposal(torch.zeros(n, 2))

    with pytest.raises(TypeError, match="method"):
        Nameless((2,))


def test_bad_proposal_is_reported() -> None:
    class Broken(GaussianSearch, register=False):
        method = "test-broken"

        def _propose(self, n: int) -> Proposal:
            return Proposal(torch.zeros(n + 1, 2))

    opt = Broken()
    with pytest.raises(RuntimeError, match="shape"):
        opt.ask()
    assert len(opt) == 0


def test_load_with_wrong_class_fails(tmp_path: Path) -> None:
    class Other(GaussianSearch, register=False):
        method = "test-other"

    GaussianSearch().save(tmp_path / "s")
    with pytest.raises(StudyError, match="test-gaussian-search"):
        Other.load(tmp_path / "s")


def test_save_refuses_foreign_folder(tmp_path: Path) -> None:
    GaussianSearch().save(tmp_path / "a")
    with pytest.raises(StudyError, match="another study"):
        GaussianSearch().save(tmp_path / "a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "notes.txt").write_text("mine")
    with pytest.raises(StudyError, match="not empty"):
        GaussianSearch().save(tmp_path / "b")
    assert (tmp_path / "b" / "notes.txt").read_text() == "mine"


def test_stale_copy_cannot_overwrite_newer_tells(tmp_path: Path) -> None:
    study = tmp_path / "s"
    live = GaussianSearch(batch_size=3, study=study)
    b = live.ask()
    stale = GaussianSearch.load(study, attach=False)
    live.tell(b.ids, [1.0, 2.0, 3.0])
    with pytest.raises(StudyError, match="open for writing elsewhere"):
        stale.save(study)  # the live optimizer holds the study's writer lock
    live.close()
    with pytest.raises(StudyError, match="does not have"):
        stale.save(study)
    assert GaussianSearch.load(study, attach=False).counts()["complete"] == 3


def test_super_init_may_come_first_and_the_ledger_exists_before(tmp_path: Path) -> None:
    """No call-order rule: attributes set after ``super().__init__`` reach the study's first
    snapshot, and the study bookkeeping exists before any ``__init__`` code runs."""

    class AttrsAfter(GaussianSearch, register=False):
        method = "test-attrs-after"

        def __init__(self, batch_size: int = 2, seed: int = 0, study=None) -> None:
            assert self.round == 0 and len(self.ledger.points) == 0  # before any __init__
            super().__init__(batch_size=batch_size, seed=seed, study=study)  # first
            self.center = torch.full((2,), 0.5)  # after: still in the first snapshot

        def _spec(self) -> dict[str, Any]:
            return {}

    AttrsAfter(study=tmp_path / "s").close()
    back = AttrsAfter.load(tmp_path / "s", attach=False)
    assert torch.equal(back.center, torch.full((2,), 0.5))
    assert back.state_dict()["center"].tolist() == [0.5, 0.5]  # the state, said publicly
