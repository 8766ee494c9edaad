"""Issue 19: the sampler's K and the discount rule (analytic checks with known answers)."""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import DDIMScheduler

from benchmarks.frontier.grid import get_frontier_suite
from benchmarks.suites import Suite, get_suite, make_optimizer
from benchmarks.tasks import get_task
from sqdf_bbo.config import ConfigError
from sqdf_bbo.diffusion.networks import GaussianDenoiser
from sqdf_bbo.diffusion.prior import DiffusionPrior
from sqdf_bbo.finetuning.configs import SQDFConfig
from sqdf_bbo.finetuning.discount import (
    GAMMA_RULES,
    REFERENCE_STEPS,
    discount_for_steps,
    discount_weights,
    first_half_mass,
)
from sqdf_bbo.finetuning.sqdf import SQDFTrainer
from sqdf_bbo.optimizers import SQDFOptimizerConfig


def gaussian_prior(K: int) -> DiffusionPrior:
    sched = DDIMScheduler(clip_sample=False)
    net = GaussianDenoiser(torch.tensor([0.5, -0.3]), torch.eye(2), sched.alphas_cumprod)
    return DiffusionPrior(net, sched, shape=(2,), num_inference_steps=K, value_range=None)


# --------------------------------------------------------------------------- the γ rule
@pytest.mark.parametrize("gamma", [0.5, 0.9, 1.0])
def test_per50_reproduces_gamma_at_the_reference_k(gamma: float) -> None:
    assert REFERENCE_STEPS == 50
    assert discount_for_steps(gamma, 50, "per50") == pytest.approx(gamma, rel=1e-15)
    for K in (5, 20, 50, 200):
        assert discount_for_steps(gamma, K, "constant") == gamma


def test_per50_values_at_k20() -> None:
    # 0.9^(50/20) = 0.9^2.5, and the first transition's weight γ_20^19 = 0.9^47.5.
    g20 = discount_for_steps(0.9, 20, "per50")
    assert g20 == pytest.approx(0.9**2.5, rel=1e-12)
    assert float(discount_weights(g20, 20)[0]) == pytest.approx(0.9**47.5, rel=1e-10)
    assert float(discount_weights(0.9, 20)[0]) == pytest.approx(0.9**19, rel=1e-12)


def test_per50_weight_profile_matches_the_official_chain() -> None:
    # K = 25 divides 50: every weight at K = 25 is the K = 50 weight two steps apart.
    w50 = discount_weights(0.9, 50)
    w25 = discount_weights(discount_for_steps(0.9, 25, "per50"), 25)
    assert torch.allclose(w25, w50[1::2], rtol=1e-12, atol=0)
    # Any K: the weight at the fraction u = k/K of the chain still to go is γ^(50·u).
    for K in (10, 20, 37, 100):
        w = discount_weights(discount_for_steps(0.9, K, "per50"), K)
        u = torch.arange(K - 1, -1, -1, dtype=torch.float64) / K
        assert torch.allclose(w, 0.9 ** (50 * u), rtol=1e-12, atol=0)
    # The constant rule does not: at K = 20 the first step weighs 0.135 instead of ~0.0067.
    assert float(discount_weights(0.9, 20)[0]) > 20 * float(
        discount_weights(discount_for_steps(0.9, 20, "per50"), 20)[0]
    )


def test_first_half_reward_mass() -> None:
    # Closed form for even K: Σ_{k=K/2}^{K-1} γ^k / Σ_{k=0}^{K-1} γ^k = γ^{K/2} (1-γ^{K/2}) / (1-γ^K).
    def closed(g: float, K: int) -> float:
        h = g ** (K // 2)
        return h * (1 - h) / (1 - g**K)

    assert first_half_mass(0.9, 50) == pytest.approx(closed(0.9, 50), rel=1e-12)
    assert first_half_mass(0.9, 50) == pytest.approx(0.0670, abs=5e-4)
    assert first_half_mass(0.9, 20) == pytest.approx(0.2585, abs=5e-4)
    assert first_half_mass(1.0, 20) == pytest.approx(0.5)
    # per50 keeps the official first-half mass at every even K (γ_K^{K/2} = γ^25).
    for K in (10, 20, 40, 100):
        g = discount_for_steps(0.9, K, "per50")
        assert first_half_mass(g, K) == pytest.approx(first_half_mass(0.9, 50), rel=1e-9)


def test_bad_rule_and_arguments_are_refused() -> None:
    assert GAMMA_RULES == ("constant", "per50")
    with pytest.raises(ValueError, match="accepted values: constant, per50"):
        discount_for_steps(0.9, 20, "per20")
    with pytest.raises(ValueError, match="num_steps"):
        discount_for_steps(0.9, 0, "per50")
    with pytest.raises(ConfigError, match="gamma_rule 'mass'"):
        SQDFConfig(gamma_rule="mass")


# --------------------------------------------------------------------------- the config and trainer
def test_config_resolves_gamma_at_the_samplers_k() -> None:
    prior20 = gaussian_prior(20)
    cfg = SQDFConfig(gamma_rule="per50", kl_weight=1.0)
    r = cfg.resolve(prior20)
    assert r.gamma == pytest.approx(0.9**2.5, rel=1e-12) and r.gamma_rule == "constant"
    assert r.resolve(prior20).gamma == r.gamma  # resolving twice changes nothing
    # K from the config wins over the prior's: at K = 50 the rule gives γ itself.
    assert SQDFConfig(gamma_rule="per50", num_inference_steps=50).resolve(prior20).gamma == 0.9
    assert SQDFConfig().resolve(prior20).gamma == 0.9  # the default rule is constant
    # The ask/tell config takes it nested, as every fine-tuner setting (issue 17).
    nested = SQDFOptimizerConfig(finetune={"gamma_rule": "per50"})
    assert nested.finetune.gamma_rule == "per50"


def test_trainer_discounts_with_the_resolved_gamma() -> None:
    K = 20
    trainer = SQDFTrainer(
        gaussian_prior(K),
        SQDFConfig(gamma_rule="per50", kl_weight=1.0, x0_method="tweedie"),
        seed=0,
    )
    x_t = torch.randn(K, 2, generator=torch.Generator().manual_seed(1))
    step = torch.arange(K)
    _, parts = trainer.loss(lambda x: torch.ones(x.shape[0]), x_t, step)
    # A constant reward of 1: Q̂ = γ_K^k, k = K-1-i.
    expected = (0.9**2.5) ** (K - 1 - step).double()
    assert torch.allclose(parts["q"].double(), expected, rtol=1e-5)
    # The buffer's PER uses it as well: P(step i) ∝ γ_K^(K-1-i).
    trainer.buffer.add(torch.zeros(4, K + 1, 2), torch.ones(4), "queried", 0)
    probs = trainer.buffer.probabilities(trainer.config.gamma, "shift")
    per_step = probs.sum(0).double()
    assert torch.allclose(per_step / per_step[-1], expected, rtol=1e-5)


# --------------------------------------------------------------------------- K per run
def test_suite_k_reaches_every_prior_based_method() -> None:
    suite = get_suite("smoke").restricted(num_inference_steps=7)
    task = get_task("rings")
    assert task.prior().num_inference_steps == 20  # the shipped prior is unchanged
    prior = make_optimizer("prior", task, 0, suite)
    sqdf = make_optimizer("sqdf-per50", task, 0, suite)
    seiko = make_optimizer("seiko-ucb", task, 0, suite)
    assert sqdf.trainer.num_inference_steps == 7
    assert seiko.trainer.num_inference_steps == 7
    assert sqdf.trainer.config.gamma == pytest.approx(0.9 ** (50 / 7), rel=1e-12)
    # The number of transitions of a stored chain follows K: (n, K + 1, *shape).
    traj = sqdf.trainer.policy.sample(3, torch.Generator().manual_seed(0), return_trajectory=True)
    assert traj.trajectory is not None and tuple(traj.trajectory.shape) == (3, 8, 2)
    batch = prior.ask(4)
    assert batch.x.shape == (4, 2)
    assert get_suite("smoke").prior(task) is task.prior()  # no K: the task's own prior
    with pytest.raises(ValueError, match="num_inference_steps must be >= 2"):
        Suite(name="x", tasks=("rings",), methods=("sqdf",), seeds=(0,), budgets=(4,),
              num_inference_steps=1)  # fmt: skip


def test_k_changes_the_rollout_work() -> None:
    # One SQDF step adds rollouts_per_step chains of K + 1 states each to the buffer.
    counts = {}
    for K in (5, 12):
        tr = SQDFTrainer(
            gaussian_prior(K),
            SQDFConfig(kl_weight=1.0, x0_method="tweedie", rollouts_per_step=3, steps=1,
                       transitions_per_step=8),
            seed=0,
        )  # fmt: skip
        tr.train(lambda x: x.sum(1), progress=False)
        counts[K] = tuple(tr.buffer.trajectories().shape)
    assert counts == {5: (3, 6, 2), 12: (3, 13, 2)}


def test_frontier_k_suites_and_steps_option(tmp_path) -> None:
    for name, K in (("steps20", 20), ("steps50", 50), ("airfoil-steps20", 20),
                    ("airfoil-steps50", 50)):  # fmt: skip
        fs = get_frontier_suite(name)
        assert fs.suite.num_inference_steps == K and len(fs.seeds) >= 3
        assert {"sqdf", "seiko-ucb", "seiko-bootstrap"} <= set(fs.methods)
    assert "sqdf-per50" in get_frontier_suite("steps20").methods
    # --steps overrides the suite's K; the run records it in done.json.
    from benchmarks.frontier.run import main

    out = tmp_path / "f"
    assert main(["--suite", "smoke", "--steps", "6", "--tasks", "rings", "--methods",
                 "sqdf-per50", "--alphas", "1", "--seeds", "0", "--workers", "1",
                 "--out", str(out), "--no-progress"]) == 0  # fmt: skip
    import json

    done = json.loads((out / "runs/rings/sqdf-per50/a1/seed0/done.json").read_text())
    assert done["suite_settings"]["num_inference_steps"] == 6
    assert json.loads((out / "frontier.json").read_text())["num_inference_steps"] == 6
    assert math.isfinite(float(done["optimizer_wall_s"]))


def test_steps_table_conditions_and_ratios() -> None:
    import pandas as pd

    from benchmarks.steps_table import steps_summary

    def rows(method, alpha, reward, nat, K=None, seeds=(0, 1, 2)):
        return [
            {"task": "digits-logit", "method": method, "alpha_official": alpha, "seed": s,
             "queries": 224, "reward_mean": reward, "best_so_far": reward,
             "natural_frac": nat, "naturalness": -6.0, "vendi": 3.0, "kl_to_prior": 1.0,
             "optimism_gap": 0.0, "pred_gap": 0.0, **({} if K is None else
             {"K": K, "wall_per_round": 2.0 if K == 50 else 1.0, "ask_s": 1.0, "source": "x"})}
            for s in seeds
        ]  # fmt: skip

    nan = float("nan")
    published = pd.DataFrame(
        rows("prior", nan, 0.0, 1.0) + rows("sqdf", 0.25, 3.0, 1.0) + rows("sqdf", 0.5, 9.0, 1.0)
        + rows("seiko-ucb", 0.25, 2.0, 1.0) + rows("seiko-bootstrap", 0.25, 2.5, 0.5)
    )  # fmt: skip
    runs = pd.DataFrame(
        rows("prior", nan, 0.0, 1.0, K=50) + rows("sqdf", 0.25, 4.0, 1.0, K=50)
        + rows("seiko-ucb", 0.25, 1.0, 1.0, K=50) + rows("seiko-bootstrap", 0.25, 2.0, 0.99, K=50)
        + rows("sqdf-per50", 0.25, 5.0, 1.0, K=20)
    )  # fmt: skip
    s = steps_summary(runs, published)
    # α 0.5 is off digits-logit's declared grid: only the 7-α view sees SQDF's 9.0.
    assert s["K20 published 7α"]["digits-logit"]["methods"]["sqdf"]["constrained_reward"] == 9.0
    k20 = s["K20 constant"]["digits-logit"]
    assert k20["methods"]["sqdf"]["constrained_reward"] == 3.0
    assert k20["best_seiko"] == "seiko-ucb" and k20["ratio"] == pytest.approx(
        1.5
    )  # boot. unnatural
    assert s["K20 per50"]["digits-logit"]["ratio"] == pytest.approx(2.5)
    k50 = s["K50"]["digits-logit"]
    assert k50["best_seiko"] == "seiko-bootstrap" and k50["ratio"] == pytest.approx(2.0)
    assert k50["wall_per_round"]["sqdf"] == 2.0 and k20["wall_per_round"]["sqdf"] == 1.0
