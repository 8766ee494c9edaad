"""ReplayBuffer: ring capacity, sampling distributions, persistence."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from scipy import stats

from sqdf_bbo.finetuning.buffer import ReplayBuffer, rank_weights


def _trajs(n: int, K: int = 4, dim: int = 2, start: float = 0.0) -> torch.Tensor:
    """(n, K+1, dim) trajectories whose every entry encodes (trajectory id, state)."""
    ids = start + torch.arange(n, dtype=torch.float32)
    states = torch.arange(K + 1, dtype=torch.float32)
    val = ids[:, None] * 100 + states[None, :]
    return val[:, :, None].expand(n, K + 1, dim).clone()


def test_capacity_is_a_ring_and_memory_does_not_grow() -> None:
    buf = ReplayBuffer(capacity=10, seed=0)
    buf.add(_trajs(4), torch.arange(4.0), "rollout", round=0)
    storage = buf._traj
    assert storage is not None
    ptr, numel = storage.data_ptr(), storage.numel()
    for r in range(1, 6):
        buf.add(_trajs(4, start=4 * r), torch.arange(4.0) + 4 * r, "rollout", round=r)
        assert len(buf) == min(10, 4 * (r + 1))
    # the same preallocated tensor is reused: no growth past capacity
    assert buf._traj is storage and storage.data_ptr() == ptr and storage.numel() == numel
    assert storage.shape[0] == 10
    # the 10 newest trajectories (ids 14..23) are kept
    kept = sorted(int(v) // 100 for v in buf.trajectories()[:, 0, 0])
    assert kept == list(range(14, 24))
    assert sorted(buf.rewards.tolist()) == [float(v) for v in range(14, 24)]


def test_add_more_than_capacity_keeps_the_last() -> None:
    buf = ReplayBuffer(capacity=3, seed=0)
    buf.add(_trajs(7), torch.arange(7.0), "queried", round=2)
    assert len(buf) == 3
    assert sorted(buf.rewards.tolist()) == [4.0, 5.0, 6.0]
    assert buf.sources == ["queried"] * 3 and buf.rounds.tolist() == [2, 2, 2]


def test_on_policy_returns_the_newest() -> None:
    buf = ReplayBuffer(capacity=32, seed=1)
    for r in range(3):
        buf.add(_trajs(5, start=10 * r), torch.zeros(5), "rollout", round=r)
    batch = buf.sample(5, "on-policy")
    ids = sorted(int(v) // 100 for v in batch.x_t[:, 0])
    assert ids == [20, 21, 22, 23, 24]  # exactly the 5 newest, each once
    # the sampled state matches its step index
    assert torch.equal(batch.x_t[:, 0] % 100, batch.step.float())
    assert set(buf.rounds[batch.traj_index].tolist()) == {2}


def test_reward_method_returns_the_top() -> None:
    buf = ReplayBuffer(capacity=32, seed=2)
    rewards = torch.tensor([-5.0, 3.0, -1.0, 7.0, 0.0, 2.0])
    buf.add(_trajs(6), rewards, "queried")
    batch = buf.sample(3, "reward")
    assert sorted(batch.reward.tolist()) == [2.0, 3.0, 7.0]


def test_rank_weights_handle_negatives_and_ties() -> None:
    w = rank_weights(torch.tensor([-3.0, -1.0, -1.0, -10.0]))
    assert torch.allclose(w, torch.tensor([2.0, 3.5, 3.5, 1.0], dtype=torch.float64) / 4)
    assert (w > 0).all()


_REWARDS = [-3.0, -1.0, 2.0, -1.0, 0.5]  # negative rewards and a tie
# independent statements of each priority weight w_j for _REWARDS
_WEIGHTS = {
    "rank": stats.rankdata(_REWARDS),  # average ranks (a constant factor does not matter)
    "shift": np.array(_REWARDS) + 3.0 + 1.0,  # r − min r + 1
    "official": np.maximum(np.array(_REWARDS), 0.0),  # max(r, 0), as the official code
}


@pytest.mark.parametrize("priority", ["shift", "official", "rank"])
@pytest.mark.parametrize("gamma", [0.7, 1.0])
def test_reward_gamma_frequencies_match_the_stated_distribution(
    gamma: float, priority: str
) -> None:
    """P(j, i) ∝ w_j γ^{K−1−i} (the official PER), checked in closed form and by a χ² test
    of 40 000 draws."""
    K = 4
    rewards = torch.tensor(_REWARDS)
    buf = ReplayBuffer(capacity=16, seed=3)
    buf.add(_trajs(5, K=K), rewards, "queried")
    p = _WEIGHTS[priority][:, None] * gamma ** (K - 1 - np.arange(K))[None, :]
    p = p / p.sum()
    assert np.allclose(buf.probabilities(gamma, priority).numpy(), p)
    n = 40_000
    batch = buf.sample(n, "reward+gamma", gamma, priority)
    # the state stored at (j, i) is j*100 + i, so the draw can be read back from x_t
    j = (batch.x_t[:, 0] // 100).long()
    i = (batch.x_t[:, 0] % 100).long()
    assert torch.equal(i, batch.step) and torch.equal(j, batch.traj_index)
    counts = np.bincount((j * K + i).numpy(), minlength=5 * K)
    support = p.reshape(-1) > 0
    assert counts[~support].sum() == 0  # official: negative rewards are never drawn
    res = stats.chisquare(counts[support], n * p.reshape(-1)[support])
    assert res.pvalue > 1e-3, res


def test_official_priority_falls_back_to_uniform_when_every_reward_is_negative() -> None:
    from sqdf_bbo.finetuning.buffer import priority_weights

    w = priority_weights(torch.tensor([-2.0, -1.0]), "official")
    assert torch.equal(w, torch.ones(2, dtype=torch.float64))


def test_sqdf_training_batch_follows_the_official_per_distribution() -> None:
    """With onpolicy_fraction = 0 (the default) every transition of a step is drawn from the
    buffer by PER: the trainer's batches over many steps pass a χ² test against
    P(j, i) ∝ max(r_j, 0) γ^{K−1−i} (priority "official")."""
    from diffusers import DDIMScheduler

    from sqdf_bbo.diffusion.networks import MLPDenoiser
    from sqdf_bbo.diffusion.prior import DiffusionPrior
    from sqdf_bbo.finetuning.sqdf import SQDFConfig, SQDFTrainer

    torch.manual_seed(0)
    K = 4
    prior = DiffusionPrior(
        MLPDenoiser(1, hidden=8, depth=1),
        DDIMScheduler(clip_sample=False),
        shape=(1,),
        num_inference_steps=K,
        value_range=None,
    )
    cfg = SQDFConfig(
        rollouts_per_step=0, transitions_per_step=500, buffer_priority="official", gamma=0.8
    )
    buf = ReplayBuffer(capacity=16, seed=5)
    buf.add(_trajs(5, K=K, dim=1), torch.tensor(_REWARDS), "queried")
    trainer = SQDFTrainer(prior, cfg, buffer=buf, seed=1)
    assert trainer.config.onpolicy_fraction == 0.0
    counts = np.zeros(5 * K)
    for _ in range(40):
        x_t, step, _ = trainer._draw_batch(None)
        j = (x_t[:, 0] // 100).long()
        counts += np.bincount((j * K + step).numpy(), minlength=5 * K)
    p = _WEIGHTS["official"][:, None] * 0.8 ** (K - 1 - np.arange(K))[None, :]
    p = (p / p.sum()).reshape(-1)
    support = p > 0
    assert counts[~support].sum() == 0
    res = stats.chisquare(counts[support], counts.sum() * p[support])
    assert res.pvalue > 1e-3, res


def test_random_covers_steps_uniformly() -> None:
    buf = ReplayBuffer(capacity=8, seed=4)
    buf.add(_trajs(3, K=5), torch.tensor([1.0, 2.0, 3.0]), "rollout")
    batch = buf.sample(6000, "random")
    counts = np.bincount(batch.step.numpy(), minlength=5)
    assert stats.chisquare(counts).pvalue > 1e-3


def test_sampling_is_seeded_and_state_round_trips_through_safetensors(tmp_path) -> None:
    a, b = ReplayBuffer(capacity=6, seed=7), ReplayBuffer(capacity=6, seed=7)
    for buf in (a, b):
        buf.add(_trajs(4), torch.tensor([1.0, -2.0, 3.0, 0.0]), "queried", round=0)
        buf.add(_trajs(4, start=4), torch.tensor([5.0, -1.0, 2.0, 4.0]), "rollout", round=1)
    assert torch.equal(a.sample(9, "reward+gamma", 0.9).x_t, b.sample(9, "reward+gamma", 0.9).x_t)
    path = tmp_path / "buffer.safetensors"
    save_file(a.state_dict(), str(path))
    c = ReplayBuffer(capacity=1, seed=123)
    c.load_state_dict(load_file(str(path)))
    assert len(c) == len(a) == 6 and c.capacity == 6
    assert c.sources == a.sources and torch.equal(c.rounds, a.rounds)
    for method in ("random", "on-policy", "reward", "reward+gamma"):
        x_a, x_c = a.sample(5, method, 0.8), c.sample(5, method, 0.8)
        assert torch.equal(x_a.x_t, x_c.x_t) and torch.equal(x_a.step, x_c.step)
    # the ring pointer survives: the next add overwrites the same slot in both
    s_a = a.add(_trajs(1, start=50), torch.tensor([9.0]), "rollout")
    s_c = c.add(_trajs(1, start=50), torch.tensor([9.0]), "rollout")
    assert torch.equal(s_a, s_c)


def test_clear_and_errors() -> None:
    buf = ReplayBuffer(capacity=4, seed=0)
    with pytest.raises(ValueError, match="empty"):
        buf.sample(2)
    buf.add(_trajs(2), torch.tensor([1.0, 2.0]), "rollout")
    with pytest.raises(ValueError, match="accepted values"):
        buf.sample(2, "prioritized")
    with pytest.raises(ValueError, match="accepted values"):
        buf.add(_trajs(1), torch.tensor([1.0]), "oracle")
    with pytest.raises(ValueError, match="finite"):
        buf.add(_trajs(2), torch.tensor([1.0, float("nan")]), "queried")
    with pytest.raises(ValueError, match="do not match"):
        buf.add(_trajs(1, K=3), torch.tensor([1.0]), "rollout")
    with pytest.raises(ValueError, match="shape"):
        buf.add(_trajs(2), torch.tensor([1.0]), "rollout")
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(capacity=0)
    buf.clear()
    assert len(buf) == 0
    with pytest.raises(ValueError, match="empty"):
        buf.sample(1)
