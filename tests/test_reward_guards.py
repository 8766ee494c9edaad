"""Issue 9: the loop around the fine-tuner must not let it exploit the surrogate.

The reward path sees only in-domain designs; the surrogate objective and the cap do what
they say; the optimism of every asked batch is measured against the oracle's values."""

from __future__ import annotations

import dataclasses
import math
import warnings

import pytest
import torch

from sqdf_bbo.diffusion.prior import DiffusionPrior
from sqdf_bbo.optimizers import SEIKO
from sqdf_bbo.optimizers.sqdf import SQDF
from tests.conftest import mlp_prior

LOW, HIGH = -0.1, 0.1  # a narrow box: raw sampler outputs and x0 estimates leave it
FAST = {"finetune.steps": 3, "progress": False}
SUR = {"surrogate_options": {"steps": 30, "n_heads": 2}}


def bounded_prior() -> DiffusionPrior:
    return mlp_prior(steps=5, value_range=(LOW, HIGH))


def linear_oracle(x: torch.Tensor) -> torch.Tensor:
    return x.sum(1).double()


def fitted(cls: type, **cfg) -> SQDF | SEIKO:
    extra = (
        {"finetune.transitions_per_step": 8, "finetune.rollouts_per_step": 2}
        if cls is SQDF
        else {"surrogate": "ensemble", "finetune.chains_per_step": 8}
    )
    opt = cls(bounded_prior(), batch_size=8, seed=0, config={**FAST, **SUR, **extra, **cfg})
    b = opt.ask()
    opt.tell(b.ids, linear_oracle(b.x))
    opt.ask()  # fits the surrogate and fine-tunes once
    return opt


def spy_surrogate(opt) -> list[torch.Tensor]:
    """Record every design the surrogate is asked to score."""
    seen: list[torch.Tensor] = []
    for name in ("optimistic", "mean", "mean_and_optimistic"):
        orig = getattr(opt.surrogate, name)

        def spy(x, _orig=orig):
            seen.append(x.detach().clone())
            return _orig(x)

        setattr(opt.surrogate, name, spy)
    return seen


@pytest.mark.parametrize("cls", [SQDF, SEIKO])
def test_the_reward_path_sees_only_in_domain_designs(cls: type) -> None:
    opt = fitted(cls)
    seen = spy_surrogate(opt)
    raw: list[torch.Tensor] = []
    to_design = opt.prior.to_design
    opt.prior.to_design = lambda x: (raw.append(x.detach().clone()), to_design(x))[1]
    opt.trainer.train(opt.reward, steps=2, progress=False)
    assert seen and raw
    allx = torch.cat([s.reshape(-1) for s in seen])
    assert float(allx.min()) >= LOW - 1e-6 and float(allx.max()) <= HIGH + 1e-6
    # the test means something: the sampler's outputs / x0 estimates did leave the box
    rawx = torch.cat([r.reshape(-1) for r in raw])
    assert float(rawx.abs().max()) > HIGH


def test_without_clipping_the_reward_path_sees_raw_outputs() -> None:
    opt = fitted(SQDF, clip_designs=False)
    seen = spy_surrogate(opt)
    opt.trainer.train(opt.reward, steps=2, progress=False)
    assert float(torch.cat([s.reshape(-1) for s in seen]).abs().max()) > HIGH


def test_surrogate_objectives_and_cap() -> None:
    opt = fitted(SQDF)
    x = torch.linspace(LOW, HIGH, 10)[:, None].expand(10, 2).contiguous()
    with torch.no_grad():
        mean, optimistic = opt.surrogate.mean_and_optimistic(x)
        shift, scale = opt.reward_shift, opt.reward_scale
        r_opt = opt.reward(x)
        assert torch.allclose(r_opt, (optimistic - shift) / scale)
        base = opt.config
        for objective, value in (("mean", mean), ("pessimistic", 2 * mean - optimistic)):
            opt.config = dataclasses.replace(base, surrogate_objective=objective)
            assert torch.allclose(opt.reward(x), (value - shift) / scale)
        far = x * 1e3  # clamped to the box by the design map, then scored
        opt.config = base
        uncapped = opt.reward(far)
        opt.config = dataclasses.replace(base, reward_cap=0.0)
        cap = (opt.best_value - shift) / scale
        assert torch.allclose(opt.reward(far), uncapped.clamp(max=cap))
    assert opt.best_value == pytest.approx(float(opt.observations().y.max()))
    with pytest.raises(ValueError, match="surrogate_objective"):
        SQDF(bounded_prior(), config={"surrogate_objective": "greedy"})
    with pytest.raises(ValueError, match="reward_cap"):
        SQDF(bounded_prior(), config={"reward_cap": -1.0})


def test_the_optimism_gap_is_measured_logged_and_warned_about(tmp_path) -> None:
    """The last batch's predictions against what the oracle returned, in target std."""
    opt = SQDF(
        bounded_prior(),
        batch_size=8,
        seed=0,
        config={
            **FAST,
            **SUR,
            "finetune.transitions_per_step": 8,
            "finetune.rollouts_per_step": 2,
            "optimism_warning": 2.0,
        },
        study=tmp_path / "s",
    )
    b = opt.ask()
    opt.tell(b.ids, linear_oracle(b.x))
    assert math.isnan(opt.metrics()["optimism_gap"])  # round 0 was not predicted
    b = opt.ask()
    # the oracle returns far less than anything seen: the surrogate was over-optimistic
    bad = torch.full((8,), float(opt.observations().y.min()) - 10 * opt.value_scale)
    opt.tell(b.ids, bad)
    m = opt.metrics()
    with torch.no_grad():
        mean, optimistic = opt.surrogate.mean_and_optimistic(opt.designs(b.ids))
    expected = (float(optimistic.double().mean()) - float(bad.mean())) / opt.value_scale
    assert m["optimism_gap"] == pytest.approx(expected, rel=1e-6)
    assert m["optimism_gap"] > 9.0 and m["optimism_gap"] >= m["pred_gap"]
    with pytest.warns(RuntimeWarning, match="target std above"):
        opt.ask()
    table = opt.round_table()
    assert table.loc[0, "optimism_gap"] == pytest.approx(expected, rel=1e-6)
    assert math.isnan(table.loc[1, "optimism_gap"]) if "optimism_gap" in table else True
    opt.close()
    again = SQDF.load(tmp_path / "s")  # the round log (with the gaps) is persisted
    assert again.round_table().loc[0, "optimism_gap"] == pytest.approx(expected, rel=1e-6)
    assert again.best_value == opt.best_value and again.value_scale == opt.value_scale
    again.close()


def test_no_warning_when_the_surrogate_is_honest() -> None:
    opt = fitted(SQDF)
    b = opt.ask()
    with torch.no_grad():
        honest = opt.surrogate.mean(b.x).double()
    opt.tell(b.ids, honest)
    assert abs(opt.metrics()["pred_gap"]) < 1e-5
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        opt.ask()
