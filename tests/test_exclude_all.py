"""``mark_failed`` of every successful point (issue 16, item 5): the next ask starts a new
round that forgets the fits (the pretrained prior is sampled again, the surrogate unfitted),
persisted like any round; nothing excluded is ever fitted."""

from __future__ import annotations

from pathlib import Path

import torch

from sqdf_bbo.optimizers.base import Optimizer
from sqdf_bbo.optimizers.sqdf import SQDF
from tests.test_optimizer_contract import GaussianSearch
from tests.test_sqdf_optimizer import FAST, tiny_prior


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def fitted_sqdf(study: Path | None = None) -> tuple[SQDF, list[int]]:
    opt = SQDF(tiny_prior(), batch_size=4, seed=0, config=FAST, study=study)
    b = opt.ask()
    opt.tell(b.ids, [0.0, 1.0, 2.0, 3.0])
    opt.ask()
    assert opt.round == 1 and opt.surrogate.fitted
    assert not same_weights(opt.trainer.policy.denoiser, opt.prior.denoiser)
    return opt, b.ids


def test_excluding_every_told_point_returns_to_the_prior(tmp_path: Path) -> None:
    opt, told = fitted_sqdf(tmp_path / "s")
    opt.mark_failed(told, "bad")  # the call
    batch = opt.ask(4)
    assert opt.round == 2, "a new round: the model changed"
    assert same_weights(opt.trainer.policy.denoiser, opt.prior.denoiser)
    assert not opt.surrogate.fitted
    assert torch.isfinite(batch.x).all()
    opt.ask(2)
    assert opt.round == 2, "nothing changed since: no new round"
    opt.close()
    back = Optimizer.load(tmp_path / "s", attach=False)
    assert back.round == 2 and not back.surrogate.fitted
    assert same_weights(back.trainer.policy.denoiser, back.prior.denoiser)


def test_the_unfitted_sampler_is_the_fresh_optimizers() -> None:
    """After the unfit the next batch is what a fresh optimizer would sample from the same
    generator state: the prior, nothing of the excluded rounds."""
    opt, told = fitted_sqdf()
    opt.mark_failed(told, "bad")
    fresh = SQDF(tiny_prior(), batch_size=4, seed=0, config=FAST)
    fresh.generator.set_state(opt.generator.get_state())
    assert torch.equal(opt.ask(4).x, fresh.ask(4).x)


def test_new_values_after_the_unfit_start_from_the_prior_again() -> None:
    opt, told = fitted_sqdf()
    opt.mark_failed(told, "bad")
    b = opt.ask(4)
    opt.tell(b.ids, [5.0, 4.0, 3.0, 2.0])
    opt.ask(1)
    assert opt.round == 3 and opt.surrogate.n_train == 4
    assert opt.round_log[-1]["n_train"] == 4.0


def test_a_never_fitted_optimizer_does_not_start_a_round() -> None:
    opt = GaussianSearch(batch_size=2)
    b = opt.ask()
    opt.tell(b.ids, [1.0, 2.0])
    opt.mark_failed(b.ids, "bad")
    opt.ask()
    assert opt.round == 0 and opt.fits == 0


def test_excluding_some_refits_without_them() -> None:
    opt = GaussianSearch(batch_size=3)
    b = opt.ask()
    opt.tell(b.ids, [1.0, 5.0, 2.0])
    opt.ask()
    assert torch.equal(opt.center, opt.designs([b.ids[1]])[0])
    opt.mark_failed([b.ids[1]], "bad")
    opt.ask()
    assert opt.round == 2 and torch.equal(opt.center, opt.designs([b.ids[2]])[0])
