"""Conditional priors: conditions reach the network (with guidance), the fine-tuner's KL is
to the conditional reference (exact on a Gaussian-step case), ask/tell take conditions and a
study keeps them."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
from diffusers import DDIMScheduler, UNet2DConditionModel, UNet2DModel
from torch import nn

from sqdf_bbo.cli import main
from sqdf_bbo.diffusion.conditioning import Conditioning
from sqdf_bbo.diffusion.prior import DiffusionPrior
from sqdf_bbo.finetuning.buffer import ReplayBuffer
from sqdf_bbo.finetuning.configs import SQDFConfig
from sqdf_bbo.finetuning.kl import chain_kl
from sqdf_bbo.finetuning.sqdf import SQDFTrainer
from sqdf_bbo.optimizers.base import Optimizer
from sqdf_bbo.optimizers.sqdf import SQDF
from sqdf_bbo.study.codec import bytes_condition, condition_bytes
from tests.conftest import tiny_unet

TINY = {"hidden": 8, "depth": 1, "steps": 10, "batch_size": 32, "n_heads": 2}


class LabelBias(nn.Module):
    """ε(x, t, c) = 0.1 x + bias[c]: a conditional network whose step means differ between
    two copies by a known, state-independent amount."""

    def __init__(self, dim: int = 3, classes: int = 3) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(classes + 1, dim))  # last row: the null label

    def forward(self, x: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor) -> torch.Tensor:
        return 0.1 * x + self.bias[class_labels]


def label_prior(guidance: float = 1.0, steps: int = 4) -> DiffusionPrior:
    cond = Conditioning("labels", num_classes=3, null_label=3, guidance_scale=guidance)
    return DiffusionPrior(
        LabelBias(),
        DDIMScheduler(clip_sample=False),
        shape=(3,),
        num_inference_steps=steps,
        value_range=None,
        conditioning=cond,
    )


def tiny_label_unet() -> UNet2DModel:
    return tiny_unet(num_class_embeds=4)


def unet_prior(guidance: float = 2.0) -> DiffusionPrior:
    cond = Conditioning("labels", num_classes=3, null_label=3, guidance_scale=guidance)
    return DiffusionPrior(
        tiny_label_unet(), shape=(1, 8, 8), num_inference_steps=3, conditioning=cond
    )


# ---------------------------------------------------------------------- the conditioning
def test_guidance_combines_conditional_and_null_outputs_exactly() -> None:
    prior = label_prior(guidance=3.0)
    with torch.no_grad():
        prior.denoiser.bias.copy_(torch.arange(12.0).reshape(4, 3))
    x = torch.randn(4, 3)
    c = prior.encode_conditions([0, 1, 2, 1])
    eps = prior.epsilon(x, 0, cond=c)
    bias = prior.denoiser.bias.detach()
    want = 0.1 * x + bias[3] + 3.0 * (bias[c] - bias[3])
    torch.testing.assert_close(eps, want)
    # without conditions a conditional prior is its unconditional (null) model
    torch.testing.assert_close(prior.epsilon(x, 0), 0.1 * x + bias[3])


def test_bad_conditions_are_refused_with_clear_errors() -> None:
    prior = label_prior()
    with pytest.raises(ValueError, match="out of range"):
        prior.encode_conditions([0, 3])
    with pytest.raises(TypeError, match="must be an int"):
        prior.encode_conditions(["a cat"])
    with pytest.raises(ValueError, match="2 conditions for 3 designs"):
        prior.encode_conditions([0, 1], n=3)
    emb = Conditioning("embedding", cond_shape=(2, 4))
    with pytest.raises(TypeError, match="needs a text encoder"):
        emb.check_values(["a cat"])
    with pytest.raises(ValueError, match=r"expected \(2, 4\)"):
        emb.check_values([torch.zeros(3, 4)])
    with pytest.raises(ValueError, match="null_label"):
        Conditioning("labels", num_classes=3, guidance_scale=2.0)
    plain = DiffusionPrior(nn.Linear(3, 3), shape=(3,))  # never called
    with pytest.raises(TypeError, match="unconditional"):
        plain.encode_conditions([0])


def test_conditions_survive_the_study_codec() -> None:
    emb = torch.randn(2, 5)
    for value in (7, "a photo of a cat", emb):
        back = bytes_condition(condition_bytes(value))
        if isinstance(value, torch.Tensor):
            assert torch.equal(back, emb)
        else:
            assert back == value and type(back) is type(value)
    with pytest.raises(ValueError, match="unreadable"):
        bytes_condition(b"Xjunk")


def test_a_conditional_prior_saves_and_loads(tmp_path: Path) -> None:
    prior = unet_prior()
    c = prior.encode_conditions([0, 1, 2])
    want = prior.sample(3, torch.Generator().manual_seed(1), cond=c).x
    prior.save(tmp_path / "p")
    back = DiffusionPrior.load(tmp_path / "p")
    assert back.conditioning is not None and back.conditioning.config == prior.conditioning.config
    got = back.sample(3, torch.Generator().manual_seed(1), cond=c).x
    torch.testing.assert_close(got, want)
    null = torch.randn(2, 4)
    emb = DiffusionPrior(
        nn.Linear(3, 3),
        shape=(3,),
        conditioning=Conditioning("embedding", cond_shape=(2, 4), null_embedding=null),
    )
    emb.save(tmp_path / "e")
    loaded = DiffusionPrior.load(tmp_path / "e", denoiser=nn.Linear(3, 3)).conditioning
    assert loaded is not None and torch.equal(loaded.null(1)[0], null)


# ---------------------------------------------------------------------- the fine-tuner
def _step_coefficient(prior: DiffusionPrior, i: int) -> tuple[float, float]:
    """a_i = ∂μ/∂ε of transition i and σ_i (ε-prediction DDIM)."""
    ab_t = float(prior.alpha_bars[i])
    ab_prev = float(prior.alpha_bars[i + 1])
    sigma = float(prior.sigmas[i])
    a = -math.sqrt(ab_prev) * math.sqrt(1 - ab_t) / math.sqrt(ab_t) + math.sqrt(
        max(1 - ab_prev - sigma**2, 0.0)
    )
    return a, sigma


@pytest.mark.parametrize("guidance", [1.0, 2.0])
def test_the_kl_is_to_the_conditional_reference_exactly(guidance: float) -> None:
    """The policy moves class 1's ε by β: a class-1 transition's KL is (w a_i)² ‖β‖² / (2σ_i²)
    (w the guidance scale), every class-0 transition's is 0."""
    prior = label_prior(guidance)
    trainer = SQDFTrainer(
        prior, SQDFConfig(kl_weight=1.5, x0_method="tweedie"), seed=0
    )  # α = 1 on D = 3
    beta = torch.tensor([0.3, -0.2, 0.1])
    with torch.no_grad():
        trainer.policy.denoiser.bias[1] += beta
    K = prior.num_inference_steps
    x_t = torch.randn(2 * K, 3)
    step = torch.arange(K).repeat(2)
    cond = torch.tensor([0] * K + [1] * K)
    _, parts = trainer.loss(lambda x, c: x.sum(1), x_t, step, cond=cond)
    for i in range(K - 1):  # the last DDIM step has σ = 0 here: floored variance
        a, sigma = _step_coefficient(prior, i)
        want = (guidance * a) ** 2 * float(beta.pow(2).sum()) / (2 * sigma**2)
        assert float(parts["kl"][K + i]) == pytest.approx(want, rel=1e-4)
        assert float(parts["kl"][i]) == pytest.approx(0.0, abs=1e-9)
    # the chain KL of trajectories under class 1 sums the same steps
    trajs = torch.randn(5, K + 1, 3)
    est = chain_kl(trainer.policy.denoiser, trainer.reference, trajs, cond=torch.ones(5).long())
    want = sum(
        (guidance * a) ** 2 * float(beta.pow(2).sum()) / (2 * s**2)
        for a, s in (_step_coefficient(prior, i) for i in range(K))
        if s > 1e-6
    )
    assert est.kl == pytest.approx(want, rel=1e-4)
    zero = chain_kl(trainer.policy.denoiser, trainer.reference, trajs, cond=torch.zeros(5).long())
    assert zero.kl == pytest.approx(0.0, abs=1e-9)


def test_the_buffer_keeps_each_trajectorys_condition() -> None:
    buf = ReplayBuffer(16, seed=0)
    traj = torch.arange(8.0)[:, None, None].expand(8, 4, 2).clone()  # trajectory j holds j
    buf.add(traj, torch.randn(8), "queried", conditions=torch.arange(8) * 10)
    tb = buf.sample(32, "reward+gamma", 0.9)
    assert torch.equal(tb.condition, tb.x_t[:, 0].long() * 10)
    with pytest.raises(ValueError, match="conditional trajectories"):
        buf.add(traj, torch.randn(8), "rollout")
    state = buf.state_dict()
    other = ReplayBuffer(16)
    other.load_state_dict(state)
    assert torch.equal(other.conditions(), buf.conditions())


def test_rollouts_draw_their_conditions_from_the_pool_and_train() -> None:
    prior = unet_prior()
    cfg = SQDFConfig(steps=2, transitions_per_step=4, rollouts_per_step=2, x0_method="tweedie")
    trainer = SQDFTrainer(prior, cfg, seed=0)
    seen: list[torch.Tensor] = []

    def reward(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        seen.append(c.detach().clone())
        return x.mean((1, 2, 3)) * (c == 2).float()

    with pytest.raises(ValueError, match="need conditions"):
        trainer.train(reward, progress=False)
    trainer.set_condition_pool(prior.encode_conditions([2]))
    logs = trainer.train(reward, progress=False)
    assert len(logs) == 2 and all(torch.equal(c, torch.full_like(c, 2)) for c in seen)
    assert set(trainer.buffer.conditions().tolist()) == {2}


# ---------------------------------------------------------------------- ask / tell / study
def _config() -> dict:
    return {
        "finetune": {"steps": 2, "transitions_per_step": 4, "rollouts_per_step": 2},
        "surrogate_options": TINY,
        "progress": False,
    }


def test_ask_tell_with_conditions_round_trips_through_a_study(tmp_path: Path) -> None:
    opt = SQDF(unet_prior(), batch_size=3, seed=0, config=_config(), study=tmp_path / "s")
    with pytest.raises(TypeError, match="pass one condition per design"):
        opt.ask(3)
    with pytest.raises(ValueError, match="2 conditions for 3 designs"):
        opt.ask(3, conditions=[0, 1])
    batch = opt.ask(conditions=[0, 1, 2])
    assert batch.conditions == [0, 1, 2] and batch.x.shape == (3, 1, 8, 8)
    opt.tell(batch.ids, batch.x.mean((1, 2, 3)).double())
    opt.tell_external(torch.zeros(1, 1, 8, 8), [0.5], conditions=[1])
    second = opt.ask(2, conditions=[2, 2])
    assert opt.round == 1 and opt.trainer.condition_pool.tolist() == [0, 1, 2]
    assert opt.history["condition"].tolist() == [0, 1, 2, 1, 2, 2]
    opt.close()
    back = Optimizer.load(tmp_path / "s")
    assert [p.condition for p in back._points.values()] == [0, 1, 2, 1, 2, 2]
    assert torch.equal(back.trainer.condition_pool, opt.trainer.condition_pool)
    back.tell(second.ids, [0.1, 0.2])
    back.ask(1, conditions=[0])
    assert back.round == 2
    back.close()


def test_embedding_conditions_are_stored_as_tensors(tmp_path: Path) -> None:
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        block_out_channels=(4, 8),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        norm_num_groups=4,
        cross_attention_dim=6,
        attention_head_dim=2,
    )
    cond = Conditioning("embedding", cond_shape=(3, 6), guidance_scale=2.0)
    prior = DiffusionPrior(unet, shape=(1, 8, 8), num_inference_steps=3, conditioning=cond)
    opt = SQDF(prior, batch_size=2, seed=0, config=_config(), study=tmp_path / "e")
    embs = [torch.randn(3, 6), torch.randn(3, 6)]
    batch = opt.ask(conditions=embs)
    opt.tell(batch.ids, [1.0, 2.0])
    opt.ask(conditions=embs[:1] * 2)
    opt.close()
    back = Optimizer.load(tmp_path / "e", attach=False)
    stored = [p.condition for p in back._points.values()]
    assert all(torch.equal(s, e) for s, e in zip(stored, [*embs, embs[0], embs[0]]))


def test_an_unconditional_optimizer_refuses_conditions(flat_prior: DiffusionPrior) -> None:
    opt = SQDF(flat_prior, batch_size=2, seed=0, config=_config())
    with pytest.raises(TypeError, match="takes no conditions"):
        opt.ask(2, conditions=[0, 1])


# ---------------------------------------------------------------------- the shell
def test_the_cli_asks_and_adds_with_conditions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prior_dir = unet_prior().save(tmp_path / "prior")
    s = str(tmp_path / "study")
    fast = ["--set", "finetune.steps=1", "--set", "progress=false"]
    assert main(["init", "--study", s, "--prior", str(prior_dir), "--batch-size", "4", *fast]) == 0
    assert main(["ask", "--study", s, "--out", str(tmp_path / "b.csv")]) == 2
    assert "pass one condition per design" in capsys.readouterr().err
    out = tmp_path / "b.csv"
    assert main(["ask", "--study", s, "--out", str(out), "--conditions", "0,2"]) == 0
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["condition"] for r in rows] == ["0", "2", "0", "2"]
    archive = tmp_path / "archive.csv"
    cols = [f"x{j}" for j in range(64)]
    with open(archive, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([*cols, "value", "condition"])
        w.writerow([*(["0.0"] * 64), "0.5", "1"])
    assert main(["add", "--study", s, str(archive)]) == 0
    assert Optimizer.load(s, attach=False).history["condition"].tolist() == [0, 2, 0, 2, 1]
