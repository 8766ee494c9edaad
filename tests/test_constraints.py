"""Known constraints: the Constraints object, the airfoil geometry as constraints, and every
optimizer's guarantee that ``ask`` never returns an infeasible design."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from oracles.airfoil import airfoil_constraints, geometry_failures
from sqdf_bbo.constraints import Constraint, Constraints
from sqdf_bbo.data import airfoil_split, kulfan_from_database
from sqdf_bbo.diffusion.priors import load_prior, load_standardization
from sqdf_bbo.optimizers.cmaes import CMAES
from sqdf_bbo.optimizers.gp_bo import GPBO
from sqdf_bbo.optimizers.prior_sampler import PriorSampler
from sqdf_bbo.optimizers.sqdf import SQDF, SQDFOptimizerConfig
from sqdf_bbo.study.store import StudyError
from tests.conftest import mlp_prior

FAST = SQDFOptimizerConfig(
    finetune={"steps": 3, "transitions_per_step": 8, "rollouts_per_step": 2},
    progress=False,
    surrogate_options={"steps": 20, "n_heads": 2},
)


def right_half(x: torch.Tensor) -> torch.Tensor:
    """x_0 ≥ 0.5 (a half-space)."""
    return x[:, 0] - 0.5


def in_disc(x: torch.Tensor) -> torch.Tensor:
    """Two margins: inside the disc of radius 3, and x_1 ≥ −1."""
    return torch.stack([9.0 - (x**2).sum(1), x[:, 1] + 1.0], dim=1)


# ---------------------------------------------------------------------------- Constraints
def test_margins_feasibility_and_reasons() -> None:
    cons = Constraints([right_half, Constraint(in_disc, name="disc", tau=0.5)])
    assert cons.names == ["right_half", "disc"]
    x = torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, -2.0], [float("nan"), 0.0]])
    c = cons.margins(x)
    assert c.shape == (4, 3)
    assert torch.allclose(c[0], torch.tensor([0.5, 8.0, 1.0]))
    assert cons.feasible(x).tolist() == [True, False, False, False]
    why = cons.violations(x)
    assert set(why) == {1, 2, 3}
    assert why[1].startswith("violates right_half") and why[2].startswith("violates disc")


def test_bad_constraints_are_refused() -> None:
    with pytest.raises(ValueError, match="unique"):
        Constraints([right_half, right_half])
    with pytest.raises(ValueError, match="at least one"):
        Constraints([])
    with pytest.raises(ValueError, match="tau"):
        Constraint(right_half, tau=0.0)
    with pytest.raises(TypeError, match="callable"):
        Constraint(3.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="margins of shape"):
        Constraints([lambda x: x]).margins(torch.zeros(4, 2, 2))
    with pytest.raises(ValueError, match="max_draws_factor"):
        Constraints([right_half], max_draws_factor=0)


def test_temperatures_and_barrier_limits() -> None:
    cons = Constraints([right_half, Constraint(in_disc, name="disc", tau=0.5)])
    x = torch.randn(400, 2, generator=torch.Generator().manual_seed(0))
    tau = cons.temperatures(x)
    assert tau.shape == (3,)
    assert tau[0] == pytest.approx(0.1 * float(x[:, 0].double().std(unbiased=False)), rel=1e-6)
    assert tau[1:].tolist() == [0.5, 0.5]
    barrier = cons.log_barrier(x, tau)
    assert barrier.shape == (400,) and bool((barrier <= 0).all())
    # τ → 0: log σ(c/τ) → 0 where feasible and → −∞ where not (the indicator's log)
    sharp = cons.log_barrier(x, torch.full((3,), 1e-4, dtype=torch.float64))
    feasible = cons.feasible(x)
    assert bool((sharp[feasible] > -1e-3).all()) and bool((sharp[~feasible] < -10).all())


def test_barrier_tilt_of_a_gaussian_is_the_truncated_gaussian() -> None:
    """The target p·exp(r̃/α) with r̃ = α·log σ(c/τ) is p·σ(c/τ) for every α: for a standard
    normal and c = x − a it tends to the truncated normal, mean φ(a)/(1 − Φ(a)), as τ → 0."""
    a = 0.5
    x = torch.linspace(-8, 8, 200_001, dtype=torch.float64)[:, None]
    log_p = -0.5 * x[:, 0] ** 2
    cons = Constraints([lambda z: z[:, 0] - a])
    phi = math.exp(-0.5 * a * a) / math.sqrt(2 * math.pi)
    exact = phi / (0.5 * math.erfc(a / math.sqrt(2)))
    for alpha in (0.1, 1.0, 10.0):
        r_tilde = alpha * cons.log_barrier(x, torch.tensor([1e-3], dtype=torch.float64))
        w = torch.softmax(log_p + r_tilde / alpha, 0)
        assert float((w * x[:, 0]).sum()) == pytest.approx(exact, rel=2e-3)


# ---------------------------------------------------------------------------- airfoils
def _oracle_feasible(k: np.ndarray) -> np.ndarray:
    bad = geometry_failures(k, 0.12, 1e-3)
    return np.array([i not in bad for i in range(k.shape[0])])


def test_airfoil_constraints_equal_the_oracle_checks() -> None:
    """On every database airfoil and on random designs (standardized and raw)."""
    std = load_standardization("airfoil")
    split = airfoil_split()
    k_db = np.concatenate([split.kulfan_train, split.kulfan_heldout])
    g = np.random.default_rng(0)
    z_rand = g.normal(0.0, 1.5, size=(3000, 18))
    sets = {"database": k_db, "random": np.asarray(std.to_kulfan(z_rand))}
    for name, k in sets.items():
        expect = _oracle_feasible(k)
        assert 0 < expect.mean() < 1, name  # both kinds present
        raw = Constraints(airfoil_constraints(None)).feasible(torch.as_tensor(k))
        z = torch.as_tensor(std.from_kulfan(k), dtype=torch.float64)
        standardized = Constraints(airfoil_constraints(std)).feasible(z)
        assert raw.numpy().tolist() == expect.tolist(), name
        assert standardized.numpy().tolist() == expect.tolist(), name
    # each margin alone matches its own rule
    k = sets["random"]
    no_thickness = Constraints(airfoil_constraints(None, min_thickness=None))
    bad = geometry_failures(k, None, 1e-3)
    expect = [i not in bad for i in range(k.shape[0])]
    assert no_thickness.feasible(torch.as_tensor(k)).tolist() == expect


def test_airfoil_constraints_are_differentiable() -> None:
    std = load_standardization("airfoil")
    z = torch.as_tensor(std.from_kulfan(kulfan_from_database("naca2412")[None])).float()
    z.requires_grad_(True)
    cons = Constraints(airfoil_constraints(std))
    c = cons.margins(z)
    assert c[0, 1].item() == pytest.approx(0.0, abs=2e-3)  # NACA 2412 is 12 % thick
    c.sum().backward()
    assert z.grad is not None and bool(torch.isfinite(z.grad).all()) and z.grad.abs().sum() > 0


# ---------------------------------------------------------------------------- ask never violates
def test_prior_sampler_resamples_until_feasible() -> None:
    opt = PriorSampler(mlp_prior(), batch_size=64, seed=0, constraints=[right_half])
    plain = PriorSampler(mlp_prior(), batch_size=64, seed=0)
    share = float((plain.ask().x[:, 0] >= 0.5).double().mean())
    assert 0.05 < share < 0.95, "the constraint must cut the prior"
    for _ in range(3):
        b = opt.ask()
        assert len(b) == 64 and bool((b.x[:, 0] >= 0.5).all())
        opt.tell(b.ids, b.x[:, 1])
        # the share of drawn designs that were feasible, about the prior's share
        assert abs(opt.metrics()["constraint_acceptance"] - share) < 0.2


def test_rare_and_impossible_constraints() -> None:
    def far(x: torch.Tensor) -> torch.Tensor:
        return x[:, 0] - 1e6

    opt = PriorSampler(mlp_prior(), batch_size=8, seed=0, constraints=Constraints([far], 3))
    with pytest.raises(RuntimeError, match="none of 24 drawn designs"):
        opt.ask()
    assert len(opt) == 0, "a failed ask records nothing"
    plain = PriorSampler(mlp_prior(), batch_size=400, seed=0).ask().x[:, 0]
    edge = float(plain.quantile(0.995))

    def rare(x: torch.Tensor) -> torch.Tensor:
        return x[:, 0] - edge

    opt = PriorSampler(mlp_prior(), batch_size=50, seed=0, constraints=Constraints([rare], 2))
    with pytest.warns(RuntimeWarning, match="only .* of 50 designs satisfy"):
        b = opt.ask()
    assert 0 < len(b) < 50 and bool((b.x[:, 0] >= edge).all())


def test_sqdf_with_a_known_constraint_asks_only_feasible_designs() -> None:
    sharp = Constraint(right_half, tau=0.05)
    opt = SQDF(mlp_prior(), batch_size=16, seed=0, config=FAST, constraints=[sharp])
    for _ in range(3):
        b = opt.ask()
        assert len(b) == 16 and bool((b.x[:, 0] >= 0.5).all())
        opt.tell(b.ids, -b.x[:, 0])  # the reward pulls towards the infeasible side
    tau = opt.constraint_model.tau
    assert tau is not None and tau.tolist() == [0.05]
    # the barrier is in the reward: an infeasible design scores lower than without it
    x = torch.tensor([[-2.0, 0.0], [2.0, 0.0]])
    r_plain = opt.objective(x)
    assert opt.constraint_term(x) is not None
    r = opt.reward(x)
    assert float(r[0]) < float(r_plain[0]) - 1.0 and float(r[1]) == pytest.approx(
        float(r_plain[1]), abs=1e-3
    )


def test_cma_es_resamples_and_replays_exactly(tmp_path) -> None:
    study = tmp_path / "cma"
    opt = CMAES((2,), box=(-2.0, 2.0), batch_size=8, seed=0, constraints=[right_half], study=study)
    for _ in range(3):
        b = opt.ask()
        assert len(b) == 8 and bool((b.x[:, 0] >= 0.5).all())
        opt.tell(b.ids, -(b.x**2).sum(1))
    assert 0 < opt.metrics()["constraint_acceptance"] <= 1
    opt.ask(4)  # an open iteration with resampled draws
    opt.close()
    with pytest.raises(StudyError, match="known constraints"):
        CMAES.load(study, attach=False)
    loaded = CMAES.load(study, attach=False, constraints=[right_half])
    # the replay reproduced every stored draw (checked at its first ask) and continues with
    # the same draws as the original
    a, b = opt.ask(4).x, loaded.ask(4).x
    assert torch.equal(a, b) and bool((a[:, 0] >= 0.5).all())


def test_gp_bo_penalizes_and_keeps_feasible() -> None:
    opt = GPBO((2,), box=(-4.0, 4.0), batch_size=6, seed=0, constraints=[right_half],
               config={"raw_samples": 16, "maxiter": 5, "fit_maxiter": 10})  # fmt: skip
    for _ in range(2):
        b = opt.ask()
        assert len(b) == 6 and bool((b.x[:, 0] >= 0.5).all())
        opt.tell(b.ids, -((b.x - torch.tensor([-3.0, 0.0])) ** 2).sum(1))


def test_study_records_constraint_names(tmp_path) -> None:
    opt = SQDF(mlp_prior(), batch_size=4, seed=0, config=FAST, constraints=[right_half],
               study=tmp_path / "s")  # fmt: skip
    b = opt.ask()
    opt.tell(b.ids, b.x[:, 0])
    opt.close()
    with pytest.raises(StudyError, match=r"known constraints \['right_half'\]"):
        SQDF.load(tmp_path / "s")
    with pytest.raises(StudyError, match="were given"):
        SQDF.load(tmp_path / "s", constraints=[Constraint(right_half, name="other")])
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        again = SQDF.load(tmp_path / "s", constraints=[right_half])
    assert again.constraints is not None and again.constraints.names == ["right_half"]
    b = again.ask()
    assert bool((b.x[:, 0] >= 0.5).all())


# ---------------------------------------------------------------------------- learned feasibility
def _right_only(x: torch.Tensor) -> torch.Tensor:
    """The rings oracle of the feasibility tests: value x_1, failed where x_0 < 0.3 (a
    region the optimizer is not told about; it cuts about half of the rings)."""
    y = x[:, 1].double().clone()
    y[x[:, 0] < 0.3] = float("nan")
    return y


def _failure_shares(learn: bool, rounds: int = 6) -> list[float]:
    cfg = SQDFOptimizerConfig(
        learn_feasibility=learn,
        progress=False,
        finetune={"steps": 40, "transitions_per_step": 32, "rollouts_per_step": 4, "gamma": 1.0},
        surrogate_options={"steps": 100, "n_heads": 2},
        feasibility_options={"steps": 200},
    )
    opt = SQDF(load_prior("rings"), batch_size=32, seed=0, config=cfg)
    shares = []
    for _ in range(rounds):
        b = opt.ask()
        y = _right_only(b.x)
        opt.tell(b.ids, y)
        shares.append(float(torch.isnan(y).double().mean()))
    return shares


def test_learned_feasibility_lowers_the_failed_share_round_after_round() -> None:
    """On the rings prior with an unknown infeasible region (half of the modes): with the
    feasibility model the failed share of the asks falls; without it, it does not."""
    with_model, without = _failure_shares(True), _failure_shares(False)
    assert with_model[0] == without[0] > 0.4  # the same first batch (the prior)
    late_with, late_without = sum(with_model[-2:]) / 2, sum(without[-2:]) / 2
    assert late_with < 0.3 and late_without > 0.45
    assert late_with < sum(with_model[:2]) / 2 - 0.2


def test_transient_failures_teach_nothing() -> None:
    """Failures told transient leave the round exactly as if they had never been told."""
    cfg = SQDFOptimizerConfig(progress=False, finetune={"steps": 2, "transitions_per_step": 8, "rollouts_per_step": 2},
                              surrogate_options={"steps": 20, "n_heads": 2},
                              feasibility_options={"steps": 30})  # fmt: skip
    a = SQDF(load_prior("rings"), batch_size=12, seed=0, config=cfg)
    b = SQDF(load_prior("rings"), batch_size=12, seed=0, config=cfg)
    ba, bb = a.ask(), b.ask()
    assert torch.equal(ba.x, bb.x)
    y = _right_only(ba.x)
    design_failed = [i for i, v in zip(ba.ids, y.tolist()) if math.isnan(v)]
    assert design_failed
    ok = [i for i in ba.ids if i not in design_failed]
    transient, kept = ok[:4], ok[4:]
    both = design_failed + kept
    values = {i: float(v) for i, v in zip(ba.ids, y.tolist())}
    a.tell(both, [values[i] for i in both])
    a.tell(transient, [float("nan")] * len(transient), transient=True)
    b.tell(both, [values[i] for i in both])  # b never hears of the transient points
    assert a.history.set_index("id").loc[transient, "transient"].all()
    na, nb = a.ask(), b.ask()
    assert a.constraint_model.use_feasibility and b.constraint_model.use_feasibility
    sa = a.constraint_model.feasibility.state_dict()
    sb = b.constraint_model.feasibility.state_dict()
    assert sa["n_train"] == sb["n_train"] == len(both)
    for k, v in sa.items():
        assert torch.equal(v, sb[k]) if isinstance(v, torch.Tensor) else v == sb[k], k
    assert torch.equal(na.x, nb.x)
    # transient failures alone start no round; design failures alone do
    rnd = a.round
    a.tell(na.ids, [float("nan")] * len(na), transient=True)
    a.ask()
    assert a.round == rnd
    c = a.ask()
    a.tell(c.ids, [float("nan")] * len(c))
    a.ask()
    assert a.round == rnd + 1 and a.round_table()["n_design_failures"].iloc[-1] > len(design_failed)


def test_sqdf_does_not_discount_the_constraint_term() -> None:
    """Q̂ = γ^k r̂(f(x_prev)) + h(f(x_prev)); with discount_constraints, γ^k (r̂ + h)."""
    from sqdf_bbo.finetuning.configs import SQDFConfig
    from sqdf_bbo.finetuning.sqdf import SQDFTrainer

    def r_fn(x: torch.Tensor) -> torch.Tensor:
        return x.sum(1)

    def h_fn(x: torch.Tensor) -> torch.Tensor:
        return -(x**2).sum(1)

    x_t = torch.randn(6, 2, generator=torch.Generator().manual_seed(0))
    step = torch.tensor([0, 1, 2, 3, 4, 5])
    noise = torch.randn(6, 2, generator=torch.Generator().manual_seed(1))
    parts = {}
    for discount in (False, True):
        trainer = SQDFTrainer(mlp_prior(), SQDFConfig(gamma=0.5, discount_constraints=discount))
        _, plain = trainer.loss(r_fn, x_t, step, noise)
        _, both = trainer.loss(r_fn, x_t, step, noise, constraint_fn=h_fn)
        parts[discount] = (plain, both)
    k = (trainer.num_inference_steps - 1 - step).double()
    plain, both = parts[False]
    h = both["reward"].double() - plain["reward"].double()  # h(f(x_prev)) per transition
    assert bool((h < 0).all())
    torch.testing.assert_close(both["q"].double(), plain["q"].double() + h)
    plain, both = parts[True]
    torch.testing.assert_close(both["q"].double(), 0.5**k * both["reward"].double())
