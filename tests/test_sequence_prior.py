"""The shipped sequence priors: what they meet and what they do not (docs/sequences.md has the
numbers on 1,000 samples).

They do NOT meet the issue's target of >= 99 % feasible samples (about 40 % at L = 32, under
1 % at L = 128; docs/sequences.md says why). What is checked is what holds: feasible samples
are as likely under the chain as true chain sequences, samples are as diverse as the chain's,
and the prior learned most of the chain's rules (a uniform random sequence of length 32 is
feasible with probability (25/32)^31 ≈ 5e-4; the prior's samples far more often)."""

from __future__ import annotations

import pytest
import torch

from benchmarks.sequence_priors import (
    SHIPPED_SEQUENCE_PRIORS,
    ehrlich_oracle,
    sequence_prior_evidence,
)
from sqdf_bbo import available_priors, load_prior
from sqdf_bbo.diffusion.sequence import OneHotDecoder


def test_shipped_sequence_priors_are_registered() -> None:
    assert set(SHIPPED_SEQUENCE_PRIORS) <= set(available_priors())
    prior = load_prior("ehrlich-v32-l128-c4-k4-q4")
    assert prior.shape == (128, 32) and isinstance(prior.decoder, OneHotDecoder)


@pytest.mark.parametrize(
    ("name", "n"),
    [
        ("ehrlich-v32-l32-c4-k4-q4", 400),
    ],
)
def test_prior_samples_are_feasible_and_natural(name: str, n: int) -> None:
    torch.set_num_threads(1)
    ev = sequence_prior_evidence(load_prior(name), ehrlich_oracle(name), n=n, seed=3)
    assert ev["feasible"] >= 0.25
    # mean chain log-likelihood of the feasible samples within 3 % of true chain sequences'
    assert abs(ev["loglik_samples"] - ev["loglik_chain"]) <= 0.03 * abs(ev["loglik_chain"])
    assert ev["unique"] > 0.95 and ev["hamming_samples"] > 0.9 * ev["hamming_chain"]
