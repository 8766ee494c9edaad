"""EhrlichOracle against pytorch-holo's outputs (tests/data/ehrlich_holo_reference.npz, written
by scripts/ehrlich_reference.py), the design forms it accepts and its failed points."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from oracles.ehrlich import EhrlichOracle, ehrlich_name
from sqdf_bbo.sequences import as_tokens, hamming_diversity, one_hot_designs

REFERENCE = Path(__file__).parent / "data" / "ehrlich_holo_reference.npz"


@pytest.fixture(scope="module")
def reference():
    return np.load(REFERENCE)


def _oracle(ref, i: int) -> EhrlichOracle:
    v, L, c, k, q, eps, seed = ref["instances"][i]
    return EhrlichOracle(
        int(v), int(L), int(c), int(k), int(q), epistasis_factor=float(eps), random_seed=int(seed)
    )


@pytest.mark.parametrize("i", [0, 1, 2])
def test_instance_equals_holo(reference, i):
    o = _oracle(reference, i)
    assert torch.equal(o.motifs, torch.as_tensor(reference[f"motifs{i}"]))
    assert torch.equal(o.spacings, torch.as_tensor(reference[f"spacings{i}"]))
    np.testing.assert_allclose(o.transition_matrix.double().numpy(), reference[f"transition{i}"])
    assert torch.equal(o.initial_solution(16), torch.as_tensor(reference[f"initial{i}"]))
    assert torch.equal(o.optimal_solution(), torch.as_tensor(reference[f"optimal{i}"]))


@pytest.mark.parametrize("i", [0, 1, 2])
def test_values_equal_holo_on_1000_sequences(reference, i):
    o = _oracle(reference, i)
    x = torch.as_tensor(reference[f"tokens{i}"].astype(np.int64))
    want = reference[f"values{i}"]
    assert x.shape[0] == 1000
    feasible = np.isfinite(want)
    assert 0.1 < feasible.mean() < 0.9 and (want[feasible] > 0.5).any()
    y = o(x).numpy()  # tokens in, the base's NaN for failed points out
    assert np.array_equal(np.isfinite(y), feasible)
    np.testing.assert_allclose(y[feasible], want[feasible], rtol=0, atol=1e-6)
    assert sorted(o.failures) == np.flatnonzero(~feasible).tolist()
    # the same values through one-hot designs and through relaxed designs (argmax decoding)
    d = one_hot_designs(x, o.num_states)
    relaxed = 0.3 * d + 0.05 * torch.randn(d.shape, generator=torch.Generator().manual_seed(0))
    assert torch.equal(as_tokens(relaxed, o.length, o.num_states), x)
    np.testing.assert_array_equal(o(relaxed).numpy(), y)


def test_infeasible_sequences_are_failed_points_with_a_reason():
    o = EhrlichOracle(32, 32, 4, 4, 4, random_seed=0)
    x = o.initial_solution(4)
    a = o.transition_matrix
    bad = int((a[x[1, 9]] == 0).nonzero()[0])  # an impossible successor of x[1, 9]
    x[1, 10] = bad
    y = o(x)
    assert math.isnan(float(y[1])) and torch.isfinite(y[[0, 2, 3]]).all()
    assert list(o.failures) == [1]
    assert "transition" in o.failures[1] and "positions 9-10" in o.failures[1]
    assert float(o.log_likelihood(x)[1]) == -math.inf
    assert bool(torch.isfinite(o.log_likelihood(x)[[0, 2, 3]]).all())


def test_optimum_bad_inputs_and_name():
    o = EhrlichOracle(32, 128, 4, 4, 4, random_seed=0, noise_std=0.0)
    best = o.optimal_solution()[None]
    assert float(o(best)) == 1.0 and o.optimal_value == 1.0
    assert float(EhrlichOracle(32, 128, 4, 4, 4, negate=True)(best)) == -1.0
    with pytest.raises(ValueError, match="integer dtype"):
        as_tokens(torch.zeros(2, 128), 128, 32)
    with pytest.raises(ValueError, match="expects a batch of shape"):
        o(torch.zeros(2, 64, 32))
    with pytest.raises(ValueError, match="too short"):
        EhrlichOracle(32, 8, 4, 4, 4)
    assert ehrlich_name(32, 128, 4, 4, None) == "ehrlich-v32-l128-c4-k4-q4"
    chain = o.sample_natural(64, torch.Generator().manual_seed(1))
    assert bool(o.feasible(chain).all())
    assert 0 < hamming_diversity(chain) <= 128
