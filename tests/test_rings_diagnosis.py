"""The rings diagnosis helpers: exponential tilting of prior samples has known properties."""

from __future__ import annotations

import math

import torch

from benchmarks.rings_diagnosis import mode_centres, tilted_target


def _ring_samples(n: int = 4000) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    modes = mode_centres()
    x = modes[torch.randint(8, (n,), generator=g)] + 0.15 * torch.randn(n, 2, generator=g)
    r = torch.exp(-((x - 3.0) ** 2).sum(1) / (2 * 1.5**2))
    return x, r


def test_mode_centres_lie_on_the_ring() -> None:
    m = mode_centres()
    assert m.shape == (8, 2)
    torch.testing.assert_close(torch.linalg.vector_norm(m, dim=1), torch.full((8,), 2.0))
    torch.testing.assert_close(m[1], torch.tensor([math.sqrt(2.0), math.sqrt(2.0)]))


def test_tilted_target_scale_zero_is_the_prior_and_tilting_trades_kl_for_reward() -> None:
    x, r = _ring_samples()
    base = tilted_target(x, r, alpha=1.0, scale=0.0)
    assert abs(base["kl"]) < 1e-12
    assert abs(base["reward"] - float(r.double().mean())) < 1e-9
    assert 0.08 < base["near_mode"] < 0.17  # one of 8 equal modes
    # d E_w[r] / ds = Var_w(r) / (α s_y) > 0 and KL grows with s: both strictly increasing.
    rows = [tilted_target(x, r, 1.0, s) for s in (0.0, 0.2, 0.5, 1.0, 2.0)]
    rewards = [t["reward"] for t in rows]
    kls = [t["kl"] for t in rows]
    assert all(a < b for a, b in zip(rewards, rewards[1:]))
    assert all(a < b for a, b in zip(kls, kls[1:]))
    # scale / alpha is what matters
    a = tilted_target(x, r, alpha=2.0, scale=1.0)
    b = tilted_target(x, r, alpha=1.0, scale=0.5)
    assert abs(a["reward"] - b["reward"]) < 1e-12 and abs(a["kl"] - b["kl"]) < 1e-12
    # the undiscounted optimum puts most of its mass on the ring mode nearest to (3, 3)
    assert rows[3]["near_mode"] > 0.5
