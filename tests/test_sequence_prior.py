"""The shipped sequence priors: what they meet and what they do not (docs/sequences.md has the
numbers on 1,000 samples).

Their decoder (ViterbiDecoder) reads a sample as the best sequence whose transitions all occur
in the training pool, so every sample is feasible; checked here: all feasible, as likely under
the chain as true chain sequences (within 5 %), as diverse, and distinct. The network alone
(row-wise argmax) gives about 40 % feasible samples at L = 32 (docs/sequences.md)."""

from __future__ import annotations

import pytest
import torch

from benchmarks.sequence_priors import (
    SHIPPED_SEQUENCE_PRIORS,
    ehrlich_oracle,
    sequence_prior_evidence,
)
from sqdf_bbo import available_priors, load_prior
from sqdf_bbo.diffusion.sequence import OneHotDecoder, ViterbiDecoder


def test_shipped_sequence_priors_are_registered() -> None:
    assert set(SHIPPED_SEQUENCE_PRIORS) <= set(available_priors())
    prior = load_prior("ehrlich-v32-l128-c4-k4-q4")
    assert prior.shape == (128, 32) and isinstance(prior.decoder, ViterbiDecoder)


@pytest.mark.parametrize(
    ("name", "n"),
    [
        ("ehrlich-v32-l32-c4-k4-q4", 400),
    ],
)
def test_prior_samples_are_feasible_and_natural(name: str, n: int) -> None:
    torch.set_num_threads(1)
    ev = sequence_prior_evidence(load_prior(name), ehrlich_oracle(name), n=n, seed=3)
    assert ev["feasible"] == 1.0
    # mean chain log-likelihood of the samples within 5 % of true chain sequences'
    assert abs(ev["loglik_samples"] - ev["loglik_chain"]) <= 0.05 * abs(ev["loglik_chain"])
    assert ev["unique"] > 0.95 and ev["hamming_samples"] > 0.9 * ev["hamming_chain"]


def test_the_network_alone_breaks_the_chain_and_the_decoder_repairs_it() -> None:
    """Without the Viterbi decoder (row-wise argmax) many samples are infeasible."""
    torch.set_num_threads(1)
    name = "ehrlich-v32-l32-c4-k4-q4"
    prior, oracle = load_prior(name), ehrlich_oracle(name)
    x = prior.sample(200, torch.Generator().manual_seed(5)).x
    argmax_ok = oracle.feasible(oracle.tokens(OneHotDecoder(32)(x))).double().mean()
    viterbi_ok = oracle.feasible(oracle.tokens(prior.to_design(x))).double().mean()
    assert float(argmax_ok) < 0.8 and float(viterbi_ok) == 1.0
