"""The sequence optimizers (GA, our LaMBO-2 variant) and the sequence prior's decoder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from benchmarks.runner import run_suite
from benchmarks.suites import SEQUENCE_METHODS, get_suite, make_optimizer
from benchmarks.tasks import get_task
from oracles.ehrlich import EhrlichOracle
from sqdf_bbo.diffusion.prior import DiffusionPrior
from sqdf_bbo.diffusion.sequence import OneHotDecoder, SequenceDenoiser
from sqdf_bbo.optimizers import GeneticAlgorithm, LaMBO2
from sqdf_bbo.optimizers.base import Optimizer
from sqdf_bbo.sequences import decode_tokens, one_hot_designs
from tests.test_optimizer_contract import OptimizerContract

V, L = 6, 10
_ORACLE = EhrlichOracle(V, L, 2, 3, 3, random_seed=0)
_START = _ORACLE.initial_solution(12)


def _count_zeros(x: torch.Tensor) -> torch.Tensor:
    return (decode_tokens(x) == 0).sum(1).double()


class TestGAContract(OptimizerContract):
    def make_optimizer(self, study: Path | None = None) -> Optimizer:
        return GeneticAlgorithm(_START, V, batch_size=self.batch_size, seed=0, study=study)

    def objective(self, x: torch.Tensor) -> torch.Tensor:
        return _count_zeros(x)


_TINY_LAMBO = {"train_steps": 3, "guidance_steps": 2, "width": 8, "depth": 1, "train_batch": 8}


class TestLaMBO2Contract(OptimizerContract):
    def make_optimizer(self, study: Path | None = None) -> Optimizer:
        return LaMBO2(
            _START, V, batch_size=self.batch_size, seed=0, config=_TINY_LAMBO, study=study
        )

    def objective(self, x: torch.Tensor) -> torch.Tensor:
        return _count_zeros(x)


def test_ga_generation_follows_holo() -> None:
    """Round 0 returns the start; then the best half survives (failed = −∞) and children mix
    two survivors; with tiny mutation, every new sequence comes from the survivors."""
    start = torch.arange(8)[:, None].expand(8, L) % V  # sequence i is all token i % 6
    ga = GeneticAlgorithm(start, V, batch_size=8, seed=1, config={"mutation_prob": 1e-9})
    b = ga.ask()
    assert torch.equal(decode_tokens(b.x), start)
    y = torch.tensor([0.0, 1.0, 2.0, 3.0, float("nan"), 5.0, 6.0, 7.0])  # 4 fails
    ga.tell(b.ids, y)
    nxt = decode_tokens(ga.ask().x)
    survivors = {i % V for i in (3, 5, 6, 7)}  # values >= the median of (0, 1, 2, 3, −∞, 5, 6, 7)
    assert set(nxt[:4, 0].tolist()) <= survivors
    assert set(nxt.flatten().tolist()) <= survivors
    assert ga.mutation_prob == 1e-9 and GeneticAlgorithm(start, V).recombine_prob == 1.1 / L


def test_ga_mutation_rate_and_bad_input() -> None:
    start = torch.zeros(64, 200, dtype=torch.long)
    ga = GeneticAlgorithm(start, 5, batch_size=64, seed=0, config={"recombine_prob": 0.0})
    b = ga.ask()
    ga.tell(b.ids, torch.zeros(64))
    changed = (decode_tokens(ga.ask().x) != 0).double().mean()
    assert abs(float(changed) - 1.1 / 200 * 4 / 5) < 0.002  # a mutation draws 0 w.p. 1/5
    with pytest.raises(ValueError, match="integer tokens"):
        GeneticAlgorithm(torch.zeros(3, 4), 5)
    with pytest.raises(ValueError, match="mutation_prob"):
        GeneticAlgorithm(start, 5, config={"mutation_prob": 1.5})


def test_lambo2_improves_a_simple_objective() -> None:
    """After a few rounds on 'count of token 0', the batch has more zeros than the start."""
    opt = LaMBO2(_START, V, batch_size=12, seed=0, config={**_TINY_LAMBO, "train_steps": 50})
    first = None
    for _ in range(4):
        b = opt.ask()
        y = _count_zeros(b.x)
        first = float(y.mean()) if first is None else first
        opt.tell(b.ids, y)
    assert float(y.mean()) > first


def test_one_hot_decoder_and_prior_round_trip(tmp_path: Path) -> None:
    dec = OneHotDecoder(4)
    x = torch.tensor([[[0.1, 0.7, -2.0, 0.3]]], requires_grad=True)
    d = dec(x)
    assert torch.equal(d.detach(), torch.tensor([[[-1.0, 1.0, -1.0, -1.0]]]))
    (d * torch.tensor([1.0, 2.0, 3.0, 4.0])).sum().backward()
    assert torch.equal(x.grad, torch.tensor([[[1.0, 2.0, 0.0, 4.0]]]))  # clamp's gradient
    torch.manual_seed(0)
    net = SequenceDenoiser(4, width=8, depth=1)
    prior = DiffusionPrior(net, shape=(5, 4), num_inference_steps=3, decoder=OneHotDecoder(4))
    prior.save(tmp_path / "p")
    back = DiffusionPrior.load(tmp_path / "p")
    assert (
        isinstance(back.decoder, OneHotDecoder) and back.with_settings(eta=0.5).decoder is not None
    )
    s = back.sample(6, torch.Generator().manual_seed(0)).x
    assert torch.equal(back.to_design(s), one_hot_designs(s.argmax(-1), 4))
    assert torch.equal(prior.to_design(s), back.to_design(s))


def test_every_sequence_method_runs_through_ask_tell(tmp_path: Path) -> None:
    """The prior-based methods of the ehrlich-smoke suite on the shipped prior (2 rounds of 8;
    GA and LaMBO-2 run their ask/tell loops in the contract tests above): infeasible asks are
    failed points, the sequence columns are written."""
    methods = ["prior", "sqdf", "seiko-bootstrap"]
    assert set(methods) | {"ga", "lambo2"} == set(SEQUENCE_METHODS)
    suite = get_suite("ehrlich-smoke").restricted(methods=methods)
    rounds = run_suite(suite, tmp_path, progress=False, report=False)
    assert sorted(rounds["method"].unique()) == sorted(methods)
    assert len(rounds) == 2 * len(methods)
    for col in ("feasible_frac", "hamming", "vendi_onehot"):
        assert rounds[col].between(0, 1e9).all()
    infeasible = (1 - rounds["feasible_frac"]) * rounds["batch_size"]
    assert (rounds["n_failed"] == infeasible.round()).all()
    assert rounds["best_so_far"].between(0, 1).all()


def test_sequence_methods_refuse_other_tasks() -> None:
    with pytest.raises(ValueError, match="needs a sequence task"):
        make_optimizer("ga", get_task("rings"), 0, get_suite("smoke"))
