"""Surrogate contract (every surrogate passes it) plus per-surrogate checks."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file, save_file

from benchmarks.surrogate_fit import dataset_2d, dataset_image, r_squared, sines_2d
from sqdf_bbo.surrogates import (
    SURROGATES,
    EnsembleSurrogate,
    GPSurrogate,
    Surrogate,
    UCBSurrogate,
    make_surrogate,
)


def is_jsonable(value: object) -> bool:
    try:
        json.dumps(value)
    except TypeError:
        return False
    return True


class SurrogateContract:
    """Mixin: subclass with ``name`` (a ``make_surrogate`` name) and ``fast`` (cheap options)."""

    name: str
    fast: dict

    def make(self, seed: int = 0, **kw) -> Surrogate:
        return make_surrogate(self.name, seed=seed, **{**self.fast, **kw})

    @pytest.fixture(scope="class")
    def fitted(self) -> tuple[Surrogate, torch.Tensor]:
        x, y = dataset_2d(80, seed=1)
        return self.make().fit(x, y), x

    # --- accuracy (default options) ------------------------------------------------
    def test_heldout_r2_2d(self) -> None:
        x, y = dataset_2d(300, seed=0)
        xt, _ = dataset_2d(300, seed=99)
        sur = make_surrogate(self.name, seed=0).fit(x, y)
        with torch.no_grad():
            assert r_squared(sur.mean(xt), sines_2d(xt)) >= 0.8

    def test_heldout_r2_image_shape(self) -> None:
        x, y, _ = dataset_image(300, seed=0)
        xt, yt, _ = dataset_image(200, seed=7)
        sur = make_surrogate(self.name, seed=0).fit(x, y)
        with torch.no_grad():
            pred = sur.mean(xt)
        assert pred.shape == (200,)
        assert r_squared(pred, yt) >= 0.8

    # --- optimism and gradients ----------------------------------------------------
    def test_optimistic_at_least_mean(self, fitted) -> None:
        sur, x = fitted
        probe = torch.cat([x, dataset_2d(50, seed=5)[0] * 4])  # data and far away
        with torch.no_grad():
            mean, opt = sur.mean(probe), sur.optimistic(probe)
        assert mean.shape == opt.shape == (probe.shape[0],)
        assert torch.isfinite(opt).all()
        assert (opt >= mean).all()
        assert torch.equal(sur(probe), opt)

    def test_gradients_finite(self, fitted) -> None:
        sur, x = fitted
        probe = torch.cat([x[:10], x[:10] * 5]).clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(sur.optimistic(probe).sum(), probe)
        assert torch.isfinite(grad).all()
        assert grad.abs().sum() > 0

    # --- degenerate data -----------------------------------------------------------
    def test_constant_targets(self) -> None:
        x, _ = dataset_2d(20, seed=2)
        sur = self.make().fit(x, torch.full((20,), 3.5))
        probe = dataset_2d(10, seed=3)[0].requires_grad_(True)
        mean, opt = sur.mean(probe), sur.optimistic(probe)
        assert torch.allclose(mean, torch.full((10,), 3.5))
        assert torch.isfinite(opt).all() and (opt >= mean).all()
        (grad,) = torch.autograd.grad(opt.sum(), probe)
        assert torch.isfinite(grad).all()

    def test_single_point(self) -> None:
        sur = self.make().fit(torch.tensor([[0.3, -0.2]]), torch.tensor([-1.25]))
        probe = dataset_2d(5, seed=4)[0]
        assert torch.allclose(sur.mean(probe), torch.full((5,), -1.25))
        assert torch.isfinite(sur.optimistic(probe)).all()

    # --- bad input -----------------------------------------------------------------
    def test_bad_inputs_raise_clear_errors(self) -> None:
        x, y = dataset_2d(10, seed=0)
        sur = self.make()
        with pytest.raises(RuntimeError, match="not fitted"):
            sur.mean(x)
        with pytest.raises(ValueError, match=r"y must have shape \(n,\)"):
            sur.fit(x, y[:5])
        with pytest.raises(ValueError, match="non-finite"):
            sur.fit(x, torch.where(torch.arange(10) == 3, torch.nan, y))
        with pytest.raises(ValueError, match=r"\(n, \*shape\)"):
            sur.fit(x[:, 0], y)
        with pytest.raises(ValueError, match="empty"):
            sur.fit(x[:0], y[:0])
        sur.fit(x, y)
        with pytest.raises(ValueError, match="design shape"):
            sur.mean(torch.zeros(3, 5))

    def test_unknown_option_lists_accepted(self) -> None:
        with pytest.raises(TypeError, match="accepted"):
            make_surrogate(self.name, not_an_option=1)

    # --- reproducibility and persistence -------------------------------------------
    def test_deterministic_given_seed(self) -> None:
        x, y = dataset_2d(60, seed=6)
        probe = dataset_2d(20, seed=8)[0]
        a = self.make(seed=3).fit(x, y)
        b = self.make(seed=3).fit(x, y)
        assert torch.equal(a.optimistic(probe), b.optimistic(probe))
        assert torch.equal(a.mean(probe), b.mean(probe))
        c = self.make(seed=4).fit(x, y)
        assert not torch.equal(a.mean(probe), c.mean(probe))

    def test_state_dict_round_trip(self, fitted, tmp_path) -> None:
        sur, x = fitted
        state = sur.state_dict()
        tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
        meta = {k: v for k, v in state.items() if not isinstance(v, torch.Tensor)}
        assert tensors and is_jsonable(meta)
        save_file(tensors, str(tmp_path / "s.safetensors"))
        (tmp_path / "s.json").write_text(json.dumps(meta))
        restored = {
            **load_file(str(tmp_path / "s.safetensors")),
            **json.loads((tmp_path / "s.json").read_text()),
        }
        clone = Surrogate.from_state_dict(restored)
        assert type(clone) is type(sur)
        probe = torch.cat([x[:7], x[:7] * 3])
        assert torch.equal(clone.mean(probe), sur.mean(probe))
        assert torch.equal(clone.optimistic(probe), sur.optimistic(probe))
        # an unfitted or degenerate surrogate round-trips too
        degenerate = self.make().fit(x[:1], torch.ones(1))
        again = Surrogate.from_state_dict(degenerate.state_dict())
        assert torch.equal(again.mean(probe), degenerate.mean(probe))
        assert not Surrogate.from_state_dict(self.make().state_dict()).fitted

    def test_feature_map_is_used(self) -> None:
        x, _, s = dataset_image(120, seed=11)
        y = sines_2d(s * 1.5)
        embed_pinv = torch.linalg.pinv(
            torch.randn(64, 2, generator=torch.Generator().manual_seed(123)) / math.sqrt(2)
        )
        calls: list[int] = []

        def latent(v: torch.Tensor) -> torch.Tensor:  # (n, 1, 8, 8) -> (n, 2), differentiable
            calls.append(v.shape[0])
            return v.reshape(v.shape[0], -1) @ embed_pinv.T

        sur = self.make(feature_map=latent).fit(x, y)
        probe = x[:4].clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(sur.optimistic(probe).sum(), probe)
        assert calls and calls[-1] == 4
        assert torch.isfinite(grad).all()
        assert sur.state_dict()["z_mean"].shape == (2,)


class TestEnsemble(SurrogateContract):
    name = "ensemble"
    fast = {"steps": 150}

    def test_optimistic_is_max_over_heads(self, fitted) -> None:
        sur, x = fitted
        assert isinstance(sur, EnsembleSurrogate)
        with torch.no_grad():
            heads = sur.heads(x)
            assert heads.shape == (sur.config.n_heads, x.shape[0])
            assert torch.allclose(sur.optimistic(x), heads.max(0).values, atol=1e-5)
            assert torch.allclose(sur.mean(x), heads.mean(0), atol=1e-5)
            # bootstrap heads disagree somewhere
            assert (heads.max(0).values - heads.min(0).values).max() > 1e-3


class TestUCB(SurrogateContract):
    name = "ucb"
    fast = {"steps": 150}

    def test_bonus_clipped_and_matches_formula(self, fitted) -> None:
        """Official form: bonus = min(β·√(φᵀ(C+λI)⁻¹φ), b_max) in raw units, added to the
        MLP's own output."""
        sur, x = fitted
        assert isinstance(sur, UCBSurrogate) and sur.config.bonus == "official"
        beta, _, bonus_max = sur.config.resolved()
        assert (beta, bonus_max) == (0.01, 10.0)
        far = x[:5] * 1e6
        with torch.no_grad():
            bonus = sur.optimistic(far) - sur.mean(far)
            assert torch.allclose(bonus, torch.full((5,), bonus_max), rtol=1e-3)
            z = sur._normalized(x[:5])
            phi = sur._phi(z).double()
            quad = ((phi @ sur.precision_inv.double()) * phi).sum(1)
            near = sur.optimistic(x[:5]) - sur.mean(x[:5])
            assert torch.allclose(near.double(), beta * quad.sqrt(), rtol=1e-3, atol=1e-6)
            assert torch.allclose(
                sur.mean(x[:5]).double(),
                sur._y_mean + sur._y_std * sur.net(z)[0].double(),
                rtol=1e-5,
                atol=1e-5,
            )

    def test_ridge_form_bonus_clipped_and_matches_formula(self) -> None:
        x, y = dataset_2d(60, seed=3)
        sur = make_surrogate("ucb", seed=0, steps=150, bonus="ridge").fit(x, y)
        far = x[:5] * 1e3
        with torch.no_grad():
            bonus = sur.optimistic(far) - sur.mean(far)
            assert torch.allclose(bonus, torch.full((5,), 3.0 * sur._y_std), rtol=1e-4)
            # at the data the bonus is β·√(φᵀA⁻¹φ) (unclipped), recomputed here by hand
            z = sur._normalized(x[:5])
            phi = sur._phi(z).double()
            quad = ((phi @ sur.precision_inv.double()) * phi).sum(1)
            near = sur.optimistic(x[:5]) - sur.mean(x[:5])
            assert torch.allclose(near.double(), quad.sqrt() * sur._y_std, rtol=1e-3, atol=1e-6)
            assert (near < bonus).all()


def test_official_ucb_bonus_on_a_hand_computed_case() -> None:
    """Φ = [[1,0],[0,1],[1,1],[0,0]]: cov(Φ) = [[1/3, 0], [0, 1/3]] (centered, / (m−1)),
    so for φ = (1, 2) with λ = 1e-3: φᵀ(C+λI)⁻¹φ = 5 / (1/3 + 1e-3) and the bonus is
    0.01·√(that) = 0.03868; b_max = 0.02 clips it."""
    from sqdf_bbo.surrogates.ucb import official_ucb_bonus

    train = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
    phi = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    expected = 0.01 * (5.0 / (1.0 / 3.0 + 1e-3)) ** 0.5
    got = official_ucb_bonus(phi, train, beta=0.01, ridge=1e-3, bonus_max=10.0)
    assert got[0].item() == pytest.approx(expected, rel=1e-5)
    assert expected == pytest.approx(0.038672, rel=1e-4)
    assert got[1].item() == pytest.approx(1e-8, abs=1e-7)  # √ of the 1e-12 floor
    clipped = official_ucb_bonus(phi, train, beta=0.01, ridge=1e-3, bonus_max=0.02)
    assert clipped[0].item() == pytest.approx(0.02)


def test_near_constant_features_cannot_be_exploited() -> None:
    """Issue 9: features with tiny training spread (background pixels) were standardized by
    their own std, so an in-domain nudge of 0.1 moved the prediction by many target std.
    With the floor the move stays bounded."""
    g = torch.Generator().manual_seed(0)
    n = 200
    signal = torch.rand(n, 4, generator=g) * 2 - 1
    flat = 1e-3 * torch.randn(n, 4, generator=g)  # near-constant features
    x = torch.cat([signal, flat], 1)
    y = signal.sum(1).double()
    nudge = torch.zeros(1, 8)
    nudge[0, 4:] = 0.1
    probe = x[:20]
    moves = {}
    for floor in (0.0, 0.25):
        for name in ("ensemble", "ucb"):
            sur = make_surrogate(name, seed=0, steps=300, feature_std_floor=floor).fit(x, y)
            with torch.no_grad():
                d = (sur.optimistic(probe + nudge) - sur.optimistic(probe)).abs().max()
            moves[(name, floor)] = float(d) / float(y.std())
    for name in ("ensemble", "ucb"):
        assert moves[(name, 0.25)] < 1.0, moves  # bounded: < 1 target std
        assert moves[(name, 0.0)] > 3.0 * moves[(name, 0.25)], moves  # v0.1: blown up


class TestGP(SurrogateContract):
    name = "gp"
    fast = {"max_points": 40}

    def test_subset_is_top_plus_random_and_std_grows_away(self, fitted) -> None:
        sur, x = fitted
        assert isinstance(sur, GPSurrogate)
        _, y = dataset_2d(80, seed=1)
        subset = sur.subset
        assert subset.numel() == 40 and subset.unique().numel() == 40
        top = torch.argsort(y, descending=True)[:20]
        assert set(top.tolist()) <= set(subset.tolist())
        with torch.no_grad():
            near = sur.optimistic(x[subset[:5]]) - sur.mean(x[subset[:5]])
            pts = torch.tensor(
                [[10.0, 10.0], [-10.0, 10.0], [10.0, -10.0], [-10.0, -10.0], [0.0, 12.0]]
            )
            far = sur.optimistic(pts) - sur.mean(pts)
        assert (far > near).all()
        assert torch.allclose(far, torch.full_like(far, far[0]), rtol=0.05)  # prior std far away


def test_make_surrogate_names_and_errors() -> None:
    assert sorted(SURROGATES) == ["ensemble", "gp", "ucb"]
    for name, cls in SURROGATES.items():
        assert isinstance(make_surrogate(name, seed=1), cls)
    with pytest.raises(ValueError, match=r"accepted names: \['ensemble', 'gp', 'ucb'\]"):
        make_surrogate("forest")
    with pytest.raises(ValueError, match="must be"):
        make_surrogate("ucb", beta=-1.0)
    with pytest.raises(ValueError, match="max_points"):
        make_surrogate("gp", max_points=1)


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(SURROGATES))
def test_device_follows_inputs(name: str, device: str) -> None:
    """Fit and predict on the inputs' device; state_dict is CPU; load + to(device) restores it."""
    x, y = dataset_2d(50, seed=12)
    x, y = x.to(device), y.to(device)
    sur = make_surrogate(name, seed=0, steps=50) if name != "gp" else make_surrogate(name, seed=0)
    sur.fit(x, y)
    probe = x[:6].clone().requires_grad_(True)
    opt = sur.optimistic(probe)
    assert opt.device == probe.device and opt.dtype == probe.dtype
    (grad,) = torch.autograd.grad(opt.sum(), probe)
    assert torch.isfinite(grad).all()
    state = sur.state_dict()
    assert all(v.device.type == "cpu" for v in state.values() if isinstance(v, torch.Tensor))
    clone = Surrogate.from_state_dict(state).to(device)
    assert torch.allclose(clone.optimistic(probe), opt, rtol=1e-5, atol=1e-6)


def test_failed_fit_keeps_the_previous_model() -> None:
    x, y = dataset_2d(30, seed=13)
    sur = make_surrogate("ucb", seed=0, steps=50).fit(x, y)
    before = sur.mean(x)
    with pytest.raises(ValueError, match="non-finite"):
        sur.fit(torch.zeros(4, 3), torch.tensor([1.0, float("nan"), 2.0, 3.0]))
    assert torch.equal(sur.mean(x), before)
    sur.fit(torch.zeros(4, 3), torch.arange(4.0))  # a new design shape is fine on refit
    assert sur.mean(torch.zeros(2, 3)).shape == (2,)
