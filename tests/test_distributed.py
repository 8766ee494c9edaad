"""Data-parallel SQDF (sqdf_bbo.distributed): two CPU processes (gloo) against one process.

All multi-process checks run in one ``torch.multiprocessing.spawn`` of two workers (the
start-up, importing torch and diffusers in each worker, is paid once); each worker saves
what it saw and the tests compare the two ranks with each other and with one process.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from diffusers import DDIMScheduler

from sqdf_bbo import distributed
from sqdf_bbo.diffusion.networks import MLPDenoiser
from sqdf_bbo.diffusion.prior import DiffusionPrior
from sqdf_bbo.finetuning.sqdf import SQDFConfig, SQDFTrainer
from sqdf_bbo.optimizers.sqdf import SQDF, SQDFOptimizerConfig

WORLD = 2
N_FIXED = 8  # transitions per fixed update; each rank takes N_FIXED / WORLD of them
LR, CLIP = 1e-2, 0.5
ASK_TELL = SQDFOptimizerConfig(
    finetune={"steps": 2, "transitions_per_step": 8, "rollouts_per_step": 2},
    progress=False,
    surrogate_options={"steps": 10, "n_heads": 2},
)


def _tiny_prior() -> DiffusionPrior:
    """A random-weight 2-D MLP prior (weights from seed 0), K = 6.

    Defined here rather than imported from ``tests.conftest``, whose diffusers UNet import
    would add seconds to each spawned worker's start.
    """
    torch.manual_seed(0)
    return DiffusionPrior(
        MLPDenoiser(2, hidden=16, depth=2),
        DDIMScheduler(clip_sample=False),
        shape=(2,),
        num_inference_steps=6,
        value_range=None,
    )


def _reward(x: torch.Tensor) -> torch.Tensor:
    """A smooth reward ``(n, 2) -> (n,)`` whose gradients are large enough to be clipped."""
    return -(x.flatten(1) - 0.5).pow(2).sum(1)


def _trainer(**kw) -> SQDFTrainer:
    return SQDFTrainer(_tiny_prior(), SQDFConfig(eta=1.0, lr=LR, grad_clip=CLIP, **kw))


def _fixed_transitions(k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Update k's transitions: x_t ``(N_FIXED, 2)``, step ``(N_FIXED,)``, noise ``(N_FIXED, 2)``."""
    g = torch.Generator().manual_seed(100 + k)
    x_t = torch.randn(N_FIXED, 2, generator=g)
    step = torch.randint(6, (N_FIXED,), generator=g)
    noise = torch.randn(N_FIXED, 2, generator=g)
    return x_t, step, noise


def _params(trainer: SQDFTrainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.trainable_parameters.items()}


def _fixed_updates(trainer: SQDFTrainer, part: slice) -> list[dict[str, float]]:
    """Two updates on the ``part`` of each fixed transition set."""
    out = []
    for k in range(2):
        x_t, step, noise = _fixed_transitions(k)
        out.append(trainer.update(_reward, x_t[part], step[part], noise[part]))
    return out


def _worker(rank: int, folder: str) -> None:
    """One process of the spawned pair: every data-parallel scenario, results to rank{r}.pt."""
    torch.set_num_threads(1)
    store = Path(folder) / "store"
    dist.init_process_group(  # a hang (one rank failing before a collective) errors in 2 min
        "gloo",
        init_method=f"file://{store}",
        rank=rank,
        world_size=WORLD,
        timeout=timedelta(minutes=2),
    )
    out: dict[str, object] = {"world": distributed.world()}
    # 1. Two updates, each rank on its half of fixed transitions.
    half = N_FIXED // WORLD
    tr = _trainer()
    out["fixed"] = {"metrics": _fixed_updates(tr, slice(rank * half, (rank + 1) * half))}
    out["fixed"]["params"] = _params(tr)
    # 2. Train steps with rollouts, rank 1 starting from other weights (rank 0's must win).
    tr = _trainer(transitions_per_step=8, rollouts_per_step=4)
    if rank == 1:
        with torch.no_grad():
            for p in tr.trainable_parameters.values():
                p.add_(0.1)
    hist = tr.train(_reward, steps=2, progress=False)
    out["train"] = {"hist": [{k: v for k, v in h.items() if k != "time_s"} for h in hist]}
    out["train"]["state"] = tr.state_dict()
    # 3. A batch that does not split evenly is refused on every rank.
    try:
        _trainer(transitions_per_step=5, rollouts_per_step=2).train_step(_reward)
    except ValueError as e:
        out["odd_batch"] = str(e)
    # 4. The ask/tell optimizer in lockstep, rank 0 alone writing the study.
    study = distributed.rank_zero_study(Path(folder) / "study")
    opt = SQDF(_tiny_prior(), batch_size=4, seed=0, config=ASK_TELL, study=study)
    first = opt.ask()
    opt.tell(first.ids, _reward(first.x))
    second = opt.ask()  # fits the surrogate and fine-tunes data-parallel
    out["ask_tell"] = {"study": opt.study, "x": second.x, "params": _params(opt.trainer)}
    opt.tell(second.ids, _reward(second.x))
    opt.close()
    # 5. Resumed from rank 0's study: rank 0 attached, the others detached, in lockstep again.
    dist.barrier()  # rank 0's study is complete
    opt = SQDF.load(Path(folder) / "study", attach=rank == 0)
    out["resumed"] = {"study": opt.study, "x": opt.ask().x, "params": _params(opt.trainer)}
    opt.close()
    torch.save(out, Path(folder) / f"rank{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    folder = tmp_path_factory.mktemp("dp")
    mp.spawn(_worker, args=(str(folder),), nprocs=WORLD, join=True)
    return [torch.load(folder / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def test_two_process_updates_equal_one_process_update_on_the_union(ranks) -> None:
    # 1. One process, the whole set of transitions at each update.
    union = _trainer()
    before = _params(union)
    union_metrics = _fixed_updates(union, slice(None))
    # 2. Each rank took its half; the average of the two half-batch mean gradients is the
    #    gradient of the union's mean (equal halves), clipped after the average. The sums
    #    run in another order (per half, then across ranks), hence a tolerance.
    for r in range(WORLD):
        got = ranks[r]["fixed"]
        for name, p in _params(union).items():
            torch.testing.assert_close(got["params"][name], p, rtol=1e-5, atol=1e-6)
        for m_dp, m_one in zip(got["metrics"], union_metrics):
            assert m_one["grad_norm"] > CLIP, "the clipping must be active for this test"
            for key in ("loss", "reward", "q", "kl", "grad_norm"):
                assert m_dp[key] == pytest.approx(m_one[key], rel=1e-5, abs=1e-6), key
    # 3. The comparison discriminates: the step moved the weights, and a step on one half
    #    alone lands elsewhere.
    assert any(not torch.equal(before[n], p) for n, p in _params(union).items())
    alone = _trainer()
    _fixed_updates(alone, slice(0, N_FIXED // WORLD))
    assert any(
        not torch.allclose(ranks[0]["fixed"]["params"][n], p, rtol=1e-5, atol=1e-6)
        for n, p in _params(alone).items()
    )


def test_ranks_keep_identical_weights_buffers_and_metrics(ranks) -> None:
    assert [rk["world"] for rk in ranks] == [(0, 2), (1, 2)]
    s0, s1 = ranks[0]["train"]["state"], ranks[1]["train"]["state"]
    assert s0.keys() == s1.keys()
    # 1. Everything but rank 1's own noise generator is bit-identical (weights after rank
    #    0's were broadcast, Adam moments, the buffer and its generator, the index draws).
    differ = [k for k in s0 if not torch.equal(s0[k], s1[k])]
    assert differ == ["generator"]
    assert ranks[0]["train"]["hist"] == ranks[1]["train"]["hist"]
    # 2. Each step's 4 rollouts: 2 from each rank, different noise, so different chains;
    #    rank 0's are those a single process with the same seed samples first.
    traj = s0["buffer/trajectories"]
    assert traj.shape[0] == 8
    assert not torch.allclose(traj[:2], traj[2:4])
    single = _trainer(transitions_per_step=8, rollouts_per_step=4)
    torch.testing.assert_close(single._rollouts(_reward, 2)[0], traj[:2], rtol=0, atol=0)


def test_uneven_shares_are_refused(ranks) -> None:
    for rk in ranks:
        assert (
            "transitions_per_step=5 must be a multiple of the number of processes (2)"
            in rk["odd_batch"]
        )


@pytest.mark.parametrize("part", ["ask_tell", "resumed"])
def test_ask_tell_in_lockstep_writes_one_study(ranks, part) -> None:
    a0, a1 = ranks[0][part], ranks[1][part]
    assert a0["study"] is not None and a0["study"].name == "study"
    assert a1["study"] is None
    assert torch.equal(a0["x"], a1["x"])
    for name, p in a0["params"].items():
        assert torch.equal(a1["params"][name], p), name
    assert any(
        not torch.equal(p, q)
        for p, q in zip(
            a0["params"].values(), _params(SQDFTrainer(_tiny_prior(), SQDFConfig(eta=1.0))).values()
        )
    ), "the round fine-tuned the sampler"


def test_single_process_helpers_are_no_ops(monkeypatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert not dist.is_initialized()
    assert distributed.world() == (0, 1)
    t = [torch.arange(3.0), torch.ones(2, dtype=torch.float64)]
    distributed.all_reduce_mean_(t)
    distributed.broadcast_(t)
    assert torch.equal(t[0], torch.arange(3.0)) and torch.equal(t[1], torch.ones(2).double())
    assert distributed.all_gather_cat(t[0]) is t[0]
    assert distributed.rank_zero_study("s") == "s"
    assert distributed.shard_slice(8, 1, 2) == slice(4, 8)
    with pytest.raises(ValueError, match="rollouts_per_step=3 must be a multiple"):
        distributed.shard_slice(3, 0, 2, "rollouts_per_step")
    assert distributed.init_from_env() == (0, 1)  # WORLD_SIZE unset: stays single-process


def test_shard_seeds_are_distinct_and_deterministic() -> None:
    seeds = {distributed.shard_generator_seed(0, r, s) for r in range(4) for s in range(50)}
    assert len(seeds) == 200
    assert distributed.shard_generator_seed(3, 1, 7) == distributed.shard_generator_seed(3, 1, 7)
    assert all(0 <= s < 2**63 for s in seeds)
    with pytest.raises(ValueError):
        distributed.shard_generator_seed(-1, 0)
