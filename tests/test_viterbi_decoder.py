"""ViterbiDecoder: the best allowed sequence, checked against brute force (docs/sequences.md)."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest
import torch

from benchmarks.sequence_priors import (
    SEQUENCE_RECIPE,
    ehrlich_oracle,
    train_sequence_prior,
    training_chain,
)
from sqdf_bbo.diffusion.prior import DiffusionPrior
from sqdf_bbo.diffusion.sequence import (
    OneHotDecoder,
    SequenceDenoiser,
    ViterbiDecoder,
    allowed_transitions,
)


def _banded(v: int) -> torch.Tensor:
    """Allowed a → b iff |a − b| ≤ 1 (cyclic): a small chain with forbidden transitions."""
    a = torch.zeros(v, v, dtype=torch.bool)
    for i in range(v):
        for d in (-1, 0, 1):
            a[i, (i + d) % v] = True
    return a


def _brute_force(x: torch.Tensor, allowed: torch.Tensor) -> tuple[float, list[int]]:
    """Max over all allowed sequences of Σ_l x[l, s_l] for one design ``x (L, v)``."""
    length, v = x.shape
    best, arg = -float("inf"), []
    for seq in itertools.product(range(v), repeat=length):
        if all(bool(allowed[a, b]) for a, b in zip(seq[:-1], seq[1:])):
            score = float(sum(x[i, s] for i, s in enumerate(seq)))
            if score > best:
                best, arg = score, list(seq)
    return best, arg


def test_viterbi_finds_the_best_allowed_sequence() -> None:
    gen = torch.Generator().manual_seed(0)
    v, length = 5, 4
    allowed = _banded(v)
    dec = ViterbiDecoder(v, allowed)
    x = torch.randn(30, length, v, generator=gen)
    tok = dec.tokens(x)
    for i in range(x.shape[0]):
        best, _ = _brute_force(x[i], allowed)
        got = float(sum(x[i, pos, s] for pos, s in enumerate(tok[i].tolist())))
        assert got == pytest.approx(best, abs=1e-5)
        assert all(bool(allowed[a, b]) for a, b in zip(tok[i, :-1].tolist(), tok[i, 1:].tolist()))


def test_viterbi_equals_argmax_when_everything_is_allowed_or_argmax_is_allowed() -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(16, 7, 6, generator=gen)
    assert torch.equal(ViterbiDecoder(6)(x), OneHotDecoder(6)(x))
    # designs that are already allowed one-hots decode to themselves
    allowed = _banded(6)
    tok = torch.zeros(16, 7, dtype=torch.long)
    for pos in range(1, 7):
        tok[:, pos] = (tok[:, pos - 1] + torch.randint(-1, 2, (16,), generator=gen)) % 6
    hot = 2.0 * torch.nn.functional.one_hot(tok, 6).float() - 1.0
    noisy = hot + 0.3 * torch.randn(hot.shape, generator=gen)
    assert torch.equal(ViterbiDecoder(6, allowed).tokens(noisy), tok)


def test_viterbi_gradient_is_the_clamps() -> None:
    x = torch.tensor([[[0.5, 2.0, -0.2], [1.5, 0.1, 0.3]]], requires_grad=True)
    ViterbiDecoder(3, _banded(3))(x).sum().backward()
    assert torch.equal(x.grad, (x.detach().abs() <= 1.0).float())


def test_allowed_transitions_and_bad_input() -> None:
    tok = torch.tensor([[0, 1, 1, 2], [2, 0, 0, 1]])
    a = allowed_transitions(tok, 3)
    want = {(0, 1), (1, 1), (1, 2), (2, 0), (0, 0)}
    assert {(i, j) for i in range(3) for j in range(3) if a[i, j]} == want
    with pytest.raises(ValueError, match="successor"):
        ViterbiDecoder(3, torch.tensor([[1, 1, 0], [0, 0, 0], [1, 0, 0]]))
    with pytest.raises(ValueError, match="shape"):
        ViterbiDecoder(3, torch.ones(2, 2))
    with pytest.raises(ValueError, match="0/1"):
        ViterbiDecoder(2, torch.full((2, 2), 0.5))


def test_viterbi_decoder_is_saved_with_the_prior(tmp_path) -> None:
    allowed = _banded(4)
    net = SequenceDenoiser(4, width=8, depth=1, time_dim=8)
    prior = DiffusionPrior(
        net, shape=(5, 4), num_inference_steps=3, decoder=ViterbiDecoder(4, allowed)
    )
    prior.save(tmp_path / "p")
    back = DiffusionPrior.load(tmp_path / "p")
    assert isinstance(back.decoder, ViterbiDecoder)
    assert torch.equal(back.decoder.allowed.bool(), allowed)


def test_a_trained_sequence_prior_decodes_within_its_training_transitions() -> None:
    name, recipe = "ehrlich-v8-l16-c2-k2-q2", replace(SEQUENCE_RECIPE, steps=2, pool_size=200)
    prior = train_sequence_prior(name, recipe, progress=False)
    oracle = ehrlich_oracle(name)
    want = allowed_transitions(training_chain(oracle, recipe), 8)
    assert isinstance(prior.decoder, ViterbiDecoder)
    assert torch.equal(prior.decoder.allowed.bool(), want)
    assert not bool((want & ~(oracle.transition_matrix > 0)).any())
    x = prior.sample(16, torch.Generator().manual_seed(0)).x
    assert bool(oracle.feasible(oracle.tokens(prior.to_design(x))).all())
