"""Oracles: noise, negate, failures → NaN with reasons, CommandOracle protocol, executors, known optima."""

from __future__ import annotations

import math
import multiprocessing
import pickle
import sys
import textwrap
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from oracles import (
    BoTorchOracle,
    BumpOracle,
    CallableOracle,
    CommandOracle,
    DigitsClassOracle,
    DigitsInkOracle,
    DigitsMarginOracle,
    Evaluation,
    LinearOracle,
    Oracle,
    RingsOracle,
)

# ----------------------------------------------------------------------------- base behaviour


def test_noise_reproducible_per_seed_and_has_the_right_scale() -> None:
    x = torch.zeros(4000, 2)
    a = BumpOracle((0.0, 0.0), noise_std=0.1, seed=3)(x)
    b = BumpOracle((0.0, 0.0), noise_std=0.1, seed=3)(x)
    c = BumpOracle((0.0, 0.0), noise_std=0.1, seed=4)(x)
    assert a.dtype == torch.float64 and a.shape == (4000,)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert abs(float(a.mean()) - 1.0) < 0.01  # noise-free value 1 at the centre
    assert abs(float(a.std()) - 0.1) < 0.005
    exact = BumpOracle((0.0, 0.0), seed=3)
    assert torch.equal(exact(x[:3]), torch.ones(3, dtype=torch.float64))
    # the stream continues across calls and restarts on reseed
    o = BumpOracle((0.0, 0.0), noise_std=0.1, seed=3)
    first, second = o(x[:5]), o(x[:5])
    assert not torch.equal(first, second)
    o.reseed(3)
    assert torch.equal(o(x[:5]), first)


def test_negate_flips_values_and_optimum() -> None:
    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(0))
    plain = BumpOracle((1.0, 0.0), width=2.0, noise_std=0.05, seed=1)
    neg = BumpOracle((1.0, 0.0), width=2.0, noise_std=0.05, seed=1, negate=True)
    assert torch.equal(neg(x), -plain(x))
    assert plain.optimal_value == 1.0 and neg.optimal_value == -1.0
    assert torch.allclose(neg.true_value(x), -plain.true_value(x))


def test_failures_become_nan_with_reasons() -> None:
    def fn(v: torch.Tensor) -> float:
        if v[0] > 0.5:
            raise RuntimeError("simulation diverged")
        return math.inf if v[1] > 0.5 else float(v.sum())

    oracle = CallableOracle(fn, (2,), noise_std=0.1, seed=0)
    x = torch.tensor([[0.0, 0.0], [0.9, 0.0], [0.1, 0.9], [0.2, 0.3]])
    y = oracle(x)
    assert torch.isnan(y[1]) and torch.isnan(y[2])
    assert torch.isfinite(y[[0, 3]]).all()
    assert set(oracle.failures) == {1, 2}
    assert "RuntimeError: simulation diverged" in oracle.failures[1]
    assert "non-finite" in oracle.failures[2]
    assert oracle.last_failures is oracle.failures
    oracle(x[[0]])
    assert oracle.failures == {}
    assert [(c, i, t) for c, i, _, t in oracle.failure_log] == [(1, 1, False), (1, 2, False)]
    assert oracle.transient_failures == set()
    assert oracle.n_calls == 2 and oracle.n_evaluations == 5


def test_batched_callable_failure_is_isolated_point_by_point() -> None:
    def batch_fn(x: np.ndarray) -> np.ndarray:
        if (x[:, 0] < 0).any():
            raise ValueError("negative pressure")
        return x.sum(1)

    oracle = CallableOracle(batch_fn, (3,), batched=True, as_numpy=True)
    x = torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.0, 0.0], [0.5, 0.5, 0.5]])
    y = oracle(x)
    assert y[0] == 6.0 and y[2] == 1.5 and torch.isnan(y[1])
    assert oracle.failures == {1: "ValueError: negative pressure"}
    wrong = CallableOracle(lambda x: np.zeros(2), (3,), batched=True, as_numpy=True)
    y = wrong(x)
    assert torch.isnan(y).all() and "shape" in wrong.failures[0]


def test_bad_batches_and_options_raise() -> None:
    oracle = RingsOracle()
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        oracle(torch.zeros(2))
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        oracle(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="noise_std"):
        RingsOracle(noise_std=-1.0)
    with pytest.raises(TypeError, match="Executor"):
        RingsOracle(executor=object())
    assert oracle(torch.zeros(0, 2)).shape == (0,)


def test_evaluation_hook_reasons_are_kept() -> None:
    class Flaky(Oracle):
        name = "flaky"
        shape = (1,)

        def _evaluate(self, x: torch.Tensor) -> Evaluation:
            values = x[:, 0].double().clone()
            values[0] = float("nan")
            return Evaluation(values, {0: "sensor offline"})

    oracle = Flaky(negate=True)
    y = oracle(torch.tensor([[1.0], [2.0]]))
    assert torch.isnan(y[0]) and y[1] == -2.0
    assert oracle.failures == {0: "sensor offline"}


# ----------------------------------------------------------------------------- BoTorch


def test_botorch_branin_optimum_and_value_range_mapping() -> None:
    oracle = BoTorchOracle("branin")  # designs in [-1, 1]², maximize −Branin
    assert oracle.shape == (2,) and oracle.optimal_value == pytest.approx(-0.397887)
    opts = oracle.optimizers
    assert opts.shape == (3, 2) and (opts.abs() <= 1).all()
    assert torch.allclose(oracle(opts), torch.full((3,), -0.397887, dtype=torch.float64), atol=1e-5)
    grid = torch.rand(2000, 2, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert oracle(grid).max() <= oracle.optimal_value + 1e-9
    # corner (-1, -1) ↦ Branin's (-5, 0): f = 308.129…
    assert float(oracle(torch.tensor([[-1.0, -1.0]]))) == pytest.approx(-308.1290960, rel=1e-6)
    # bounds from a prior's value range
    prior = SimpleNamespace(value_range=(0.0, 2.0), shape=(6,))
    hart = BoTorchOracle("hartmann", prior=prior, function_kwargs={"dim": 6})
    assert (hart.optimizers >= 0).all() and (hart.optimizers <= 2).all()
    assert float(hart(hart.optimizers.float())) == pytest.approx(3.32237, abs=1e-4)
    with pytest.raises(ValueError, match="accepted"):
        BoTorchOracle("nope")
    with pytest.raises(ValueError, match="value_range"):
        BoTorchOracle("branin", prior=SimpleNamespace(value_range=None, shape=(2,)))


# ----------------------------------------------------------------------------- toy + digits


def test_rings_oracle_maximum_is_off_the_rings() -> None:
    from sqdf_bbo.data import RingsDistribution

    oracle = RingsOracle()
    rings = RingsDistribution()
    on = oracle.true_value(rings.sample(4000, torch.Generator().manual_seed(0)))
    assert float(oracle(torch.tensor([[3.0, 3.0]]))) == oracle.optimal_value == 1.0
    assert on.max() < 0.6  # every ring sample is far below the maximum
    best_mode = rings.means[oracle.true_value(rings.means.float()).argmax()]
    assert torch.allclose(
        best_mode, torch.tensor([math.sqrt(2), math.sqrt(2)], dtype=torch.float64)
    )
    # at the best mode the gradient points away from the ring, toward (3, 3)
    x = best_mode.float().reshape(1, 2).requires_grad_(True)
    (grad,) = torch.autograd.grad(oracle.true_value(x).sum(), x)
    assert torch.allclose(grad / grad.norm(), torch.tensor([[1.0, 1.0]]) / math.sqrt(2), atol=1e-5)
    lin = LinearOracle((2.0, -1.0))
    assert torch.equal(lin(torch.tensor([[1.0, 1.0]])), torch.tensor([1.0], dtype=torch.float64))


class _FixedClassifier(nn.Module):
    """A stand-in classifier with known logits: logit_k = (k + 1)·mean(x)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.reshape(x.shape[0], -1).mean(1, keepdim=True)
        return m * torch.arange(1, 11, dtype=x.dtype)


def test_digits_oracles_with_known_classifier() -> None:
    x = torch.full((2, 1, 8, 8), 0.5)
    x[1] = -0.5
    logit = DigitsClassOracle(target=3, classifier=_FixedClassifier())
    assert torch.allclose(logit(x), torch.tensor([2.0, -2.0], dtype=torch.float64))
    logp = DigitsClassOracle(target=3, output="log_prob", classifier=_FixedClassifier())
    expected = torch.log_softmax(_FixedClassifier()(x), -1)[:, 3].double()
    assert torch.allclose(logp(x), expected) and (logp(x) <= 0).all()
    margin = DigitsMarginOracle(target=9, classifier=_FixedClassifier())
    assert torch.allclose(margin(x), torch.tensor([0.5, -4.5], dtype=torch.float64))
    with pytest.raises(ValueError, match="0..9"):
        DigitsClassOracle(target=10)
    with pytest.raises(ValueError, match="output"):
        DigitsClassOracle(target=1, output="prob")
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(logit.true_value(xg).sum(), xg)
    assert torch.allclose(grad, torch.full_like(grad, 4.0 / 64))


def test_digits_ink_oracle() -> None:
    from sqdf_bbo.data import digits_split

    ink = DigitsInkOracle()
    blank, full = -torch.ones(1, 1, 8, 8), torch.ones(1, 1, 8, 8)
    assert float(ink(blank)) == 0.0 and float(ink(full)) == 1.0 == ink.optimal_value
    real = ink(digits_split().x_heldout)
    assert 0.2 < float(real.mean()) < 0.45 and float(real.max()) < 0.7


# ----------------------------------------------------------------------------- CommandOracle

SIMULATOR = textwrap.dedent(
    """
    import sys, time
    import numpy as np

    mode, in_path, out_path = sys.argv[1], sys.argv[2], sys.argv[3]
    x = np.load(in_path) if in_path.endswith(".npy") else np.loadtxt(in_path, delimiter=",", ndmin=2)
    x = x.reshape(x.shape[0], -1)
    values = x.sum(1) ** 2 - x[:, 0]
    if mode == "sleep":
        time.sleep(30)
    if mode == "exit":
        sys.stderr.write("license server unreachable")
        sys.exit(3)
    if mode == "none":
        sys.exit(0)
    if out_path.endswith(".npy"):
        np.save(out_path, values)
        sys.exit(0)
    with open(out_path, "w") as f:
        if mode == "garbage":
            f.write("hello world\\n")
            sys.exit(0)
        for i, v in enumerate(values):
            if mode == "partial" and i == 1:
                f.write("oops\\n")
            elif mode == "partial" and i == 2:
                f.write("nan,mesh did not converge\\n")
            else:
                f.write(f"{float(v)!r}\\n")
    """
)


@pytest.fixture
def simulator(tmp_path: Path) -> Path:
    path = tmp_path / "simulate.py"
    path.write_text(SIMULATOR)
    return path


def expected_values(x: torch.Tensor) -> torch.Tensor:
    flat = x.reshape(x.shape[0], -1).double()
    return flat.sum(1) ** 2 - flat[:, 0]


def designs(n: int = 4) -> torch.Tensor:
    return torch.randn(n, 1, 2, 2, generator=torch.Generator().manual_seed(0))


def command(simulator: Path, mode: str = "ok", **kw) -> CommandOracle:
    return CommandOracle([sys.executable, str(simulator), mode], (1, 2, 2), **kw)


@pytest.mark.parametrize("fmt_in,fmt_out", [("npy", "csv"), ("csv", "npy")])
def test_command_oracle_success(simulator: Path, fmt_in: str, fmt_out: str, tmp_path: Path) -> None:
    x = designs()
    oracle = command(simulator, input_format=fmt_in, output_format=fmt_out, workdir=tmp_path)
    y = oracle(x)
    assert torch.allclose(y, expected_values(x), rtol=1e-12, atol=1e-12)
    assert oracle.failures == {}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["simulate.py"]  # temp folders removed


@pytest.mark.parametrize(
    "mode,reason",
    [
        ("exit", "exit status 3: license server unreachable"),
        ("garbage", "expected 4 output lines, got 1"),
        ("none", "no output file values.csv written"),
    ],
)
def test_command_oracle_failures(simulator: Path, mode: str, reason: str) -> None:
    oracle = command(simulator, mode)
    y = oracle(designs())
    assert torch.isnan(y).all()
    assert oracle.failures == dict.fromkeys(range(4), reason)


def test_command_oracle_timeout(simulator: Path) -> None:
    oracle = command(simulator, "sleep", timeout=1.0)
    y = oracle(designs(2))
    assert torch.isnan(y).all()
    assert all(r.startswith("timeout after 1 s") for r in oracle.failures.values())


def test_command_oracle_partial_garbage(simulator: Path) -> None:
    x = designs()
    oracle = command(simulator, "partial")
    y = oracle(x)
    ok = [0, 3]
    assert torch.allclose(y[ok], expected_values(x)[ok]) and torch.isnan(y[[1, 2]]).all()
    assert oracle.failures == {1: "unparsable output line 2: 'oops'", 2: "mesh did not converge"}


def test_command_oracle_rejects_shell_strings() -> None:
    with pytest.raises(TypeError, match="no shell string"):
        CommandOracle("python simulate.py", (2,))


# ----------------------------------------------------------------------------- executors


def test_executors_give_the_serial_values(simulator: Path) -> None:
    x = torch.rand(7, 2, generator=torch.Generator().manual_seed(1)) * 2 - 1
    serial = BoTorchOracle("branin", noise_std=0.3, seed=5)(x)
    with ThreadPoolExecutor(max_workers=2) as pool:
        threads = BoTorchOracle("branin", noise_std=0.3, seed=5, executor=pool)(x)
        xc = designs(5)
        cmd = command(simulator, executor=pool, chunk_size=2)
        assert torch.allclose(cmd(xc), expected_values(xc))
    ctx = multiprocessing.get_context("fork") if sys.platform == "linux" else None
    with ProcessPoolExecutor(max_workers=2, mp_context=ctx) as pool:
        oracle = BoTorchOracle("branin", noise_std=0.3, seed=5, executor=pool, chunk_size=3)
        procs = oracle(x)
        assert pickle.loads(pickle.dumps(oracle)).executor is None
    # chunks change the batch shapes the function sees: equal up to float rounding, not bitwise
    assert torch.allclose(serial, threads, rtol=1e-12, atol=1e-12)
    assert torch.allclose(serial, procs, rtol=1e-12, atol=1e-12)


def test_executor_job_failure_is_recorded() -> None:
    """An unpicklable function fails its jobs in a process pool: NaN + reason, no exception."""
    ctx = multiprocessing.get_context("fork") if sys.platform == "linux" else None
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        oracle = CallableOracle(lambda v: float(v.sum()), (2,), executor=pool)
        y = oracle(torch.zeros(2, 2))
    assert torch.isnan(y).all()
    assert all(r.startswith("executor: ") for r in oracle.failures.values())


@pytest.mark.parametrize("device", ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
def test_values_follow_the_batch_device(device: str) -> None:
    x = torch.tensor([[3.0, 3.0], [0.0, 0.0]], device=device)
    oracle = RingsOracle(noise_std=0.01, seed=0)
    y = oracle(x)
    assert y.device == x.device and y.dtype == torch.float64
    assert torch.allclose(y.cpu(), RingsOracle(noise_std=0.01, seed=0)(x.cpu()))
    branin = BoTorchOracle("branin")
    assert torch.allclose(
        branin(branin.optimizers.to(device)).cpu(),
        torch.full((3,), -0.397887, dtype=torch.float64),
        atol=1e-5,
    )
    hart = BoTorchOracle("hartmann", function_kwargs={"dim": 6})
    assert float(hart(hart.optimizers.to(device))) == pytest.approx(3.32237, abs=1e-4)


def test_digits_oracles_with_the_shipped_classifier() -> None:
    from sqdf_bbo.data import digits_split

    split = digits_split()
    x, labels = split.x_heldout, split.y_heldout
    oracle = DigitsClassOracle(target=3)
    logit = oracle(x)
    assert float(logit[labels == 3].mean()) > float(logit[labels != 3].mean()) + 3.0
    margin = DigitsMarginOracle(target=3)(x)
    assert float((margin[labels == 3] > 0).float().mean()) > 0.9
    assert float((margin[labels != 3] > 0).float().mean()) < 0.05
    # the logit's maximum is off the manifold: plain gradient ascent in the box beats every real digit
    z = x[labels == 3][:4].clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=0.05)
    for _ in range(100):
        opt.zero_grad()
        (-oracle.true_value(z.clamp(-1, 1)).sum()).backward()
        opt.step()
    assert float(oracle(z.detach().clamp(-1, 1)).min()) > float(logit.max()) + 1.0
    # pickling for process pools drops the shipped network; the copy reloads it
    copy = pickle.loads(pickle.dumps(oracle))
    assert copy._classifier is None
    # a batch of 5 and the full batch may take different float kernels on some CPUs
    assert torch.allclose(copy(x[:5]), logit[:5], rtol=1e-4, atol=1e-4)


def test_complex_or_boolean_batches_are_refused_not_cast() -> None:
    """Issue 16, item 6: a cast to float would silently drop an imaginary part."""
    oracle = CallableOracle(lambda v: float(v.sum()), (2,))
    for bad in (
        torch.zeros(1, 2, dtype=torch.complex64),
        np.array([[1 + 2j, 0.0]]),
        torch.zeros(1, 2, dtype=torch.bool),
        [["a", "b"]],
    ):
        with pytest.raises(TypeError, match="expects real numbers"):
            oracle(bad)
    assert oracle.n_calls == 0
    assert torch.equal(oracle(np.array([[1, 2]])), torch.tensor([3.0], dtype=torch.float64))
