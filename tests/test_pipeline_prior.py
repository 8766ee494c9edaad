"""Latent, conditional diffusers pipelines as priors: a tiny Stable-Diffusion-shaped pipeline
(UNet2DConditionModel, AutoencoderKL, CLIP text encoder, all random weights from configs,
saved to a temporary folder; no hub access) runs SQDF end to end on the CPU."""

from __future__ import annotations

import json
import string
from pathlib import Path

import pytest
import torch

from benchmarks import sd_scale_check
from sqdf_bbo.diffusion.latent import LatentDecoder
from sqdf_bbo.diffusion.pipelines import PipelineNotFound, load_pipeline_prior
from sqdf_bbo.diffusion.prior import DiffusionPrior
from sqdf_bbo.finetuning.configs import SQDFConfig
from sqdf_bbo.finetuning.lora import lora_parameters
from sqdf_bbo.finetuning.sqdf import SQDFTrainer
from sqdf_bbo.optimizers.base import Optimizer
from sqdf_bbo.optimizers.sqdf import SQDF

pytest.importorskip("peft")
diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")

EMB = 16  # cross-attention width
LENGTH = 8  # tokens per prompt
ATTENTION = ("to_q", "to_k", "to_v", "to_out.0")


def _tokenizer(folder: Path) -> object:
    """A CLIP BPE tokenizer over single letters (no merges), from files written here."""
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in string.ascii_lowercase:
        vocab[ch] = len(vocab)
        vocab[ch + "</w>"] = len(vocab)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return transformers.CLIPTokenizer(
        str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=LENGTH
    )


def tiny_pipeline(folder: Path, text: bool = True) -> Path:
    """Write a Stable-Diffusion-shaped pipeline folder (latents 4×8×8, images 3×16×16)."""
    torch.manual_seed(0)
    unet = diffusers.UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        norm_num_groups=4,
        cross_attention_dim=EMB,
        attention_head_dim=2,
    )
    vae = diffusers.AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=16,
        scaling_factor=0.18215,
    )
    scheduler = diffusers.DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False
    )
    unet.save_pretrained(folder / "unet")
    vae.save_pretrained(folder / "vae")
    scheduler.save_pretrained(folder / "scheduler")
    if text:
        config = transformers.CLIPTextConfig(
            vocab_size=60,
            hidden_size=EMB,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=LENGTH,
            eos_token_id=1,
            bos_token_id=0,
            pad_token_id=1,
        )
        transformers.CLIPTextModel(config).save_pretrained(folder / "text_encoder")
        _tokenizer(folder / "tok_files").save_pretrained(folder / "tokenizer")
    return folder


@pytest.fixture(scope="module")
def pipeline_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_pipeline(tmp_path_factory.mktemp("sd") / "tiny-sd")


@pytest.fixture(scope="module")
def embeddings_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_pipeline(tmp_path_factory.mktemp("sd") / "no-text", text=False)


def test_a_missing_pipeline_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PipelineNotFound, match="does not exist") as err:
        load_pipeline_prior(tmp_path / "nowhere")
    assert "\n" not in str(err.value)
    (tmp_path / "half").mkdir()
    with pytest.raises(PipelineNotFound, match="no unet/"):
        load_pipeline_prior(tmp_path / "half")


def test_the_pipeline_becomes_a_latent_conditional_prior(pipeline_dir: Path) -> None:
    prior = load_pipeline_prior(pipeline_dir, guidance_scale=3.0, num_inference_steps=3)
    assert prior.shape == (4, 8, 8) and prior.design_shape == (3, 16, 16)
    assert prior.conditioning.kind == "embedding" and prior.conditioning.cond_shape == (8, EMB)
    c = prior.encode_conditions(["a cat", "a dog"])
    assert c.shape == (2, LENGTH, EMB)
    out = prior.sample(2, torch.Generator().manual_seed(0), cond=c)
    images = prior.to_design(out.x)
    assert images.shape == (2, 3, 16, 16) and images.abs().max() <= 1.0
    # the null condition is the empty prompt's embedding (the official negative prompt)
    torch.testing.assert_close(prior.conditioning.null(1)[0], prior.encode_conditions([""])[0])


def test_decoding_in_chunks_and_with_checkpointing_gives_the_same_gradients(
    pipeline_dir: Path,
) -> None:
    vae = diffusers.AutoencoderKL.from_pretrained(pipeline_dir / "vae")
    z = torch.randn(5, 4, 8, 8)
    grads = []
    for chunk, ckpt in ((None, False), (2, False), (2, True)):
        dec = LatentDecoder(vae, (3, 16, 16), chunk_size=chunk, checkpoint=ckpt)
        zz = z.clone().requires_grad_(True)
        dec(zz).pow(2).sum().backward()
        grads.append(zz.grad)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(grads[2], grads[0], rtol=1e-4, atol=1e-6)
    assert float(grads[0].abs().sum()) > 0


def test_gradients_reach_the_lora_adapters_through_the_decoder(embeddings_dir: Path) -> None:
    prior = load_pipeline_prior(
        embeddings_dir, guidance_scale=2.0, num_inference_steps=3, cond_length=LENGTH
    )
    cfg = SQDFConfig(train="lora", lora_targets=ATTENTION, x0_method="tweedie")
    trainer = SQDFTrainer(prior, cfg, seed=0)
    x_t = torch.randn(3, 4, 8, 8)
    cond = torch.randn(3, 8, EMB)

    def reward(z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:  # a function of the image
        return prior.to_design(z)[:, 0].mean((1, 2))

    loss, _ = trainer.loss(reward, x_t, torch.tensor([0, 1, 2]), cond=cond)
    lora = lora_parameters(trainer.policy.denoiser)
    grads = torch.autograd.grad(loss, list(lora.values()), allow_unused=True)
    assert lora and all(g is not None for g in grads)
    # LoRA's B starts at zero, so only the B matrices get gradient at the first step
    assert any(float(g.abs().sum()) > 0 for g in grads)
    assert all(not p.requires_grad for p in prior.decoder.parameters())


def test_one_sqdf_round_end_to_end_with_fixed_embeddings(
    embeddings_dir: Path, tmp_path: Path
) -> None:
    """The text encoder replaced by fixed prompt embeddings: ask → tell → a fine-tuned round
    (LoRA) → ask, with the study saved and resumed."""
    prior = load_pipeline_prior(
        embeddings_dir, guidance_scale=2.0, num_inference_steps=3, cond_length=LENGTH
    )
    assert prior.conditioning.text_encoder is None
    config = {
        "finetune": {
            "steps": 2,
            "transitions_per_step": 4,
            "rollouts_per_step": 2,
            "train": "lora",
            "lora_targets": ATTENTION,
        },
        "surrogate_options": {"hidden": 8, "depth": 1, "steps": 10, "n_heads": 2},
        "progress": False,
    }
    opt = SQDF(prior, batch_size=4, seed=0, config=config, study=tmp_path / "study")
    torch.manual_seed(1)
    prompts = [torch.randn(LENGTH, EMB) for _ in range(2)]
    batch = opt.ask(conditions=prompts * 2)
    assert batch.x.shape == (4, 3, 16, 16)
    opt.tell(batch.ids, batch.x.mean((1, 2, 3)).double())  # the oracle sees decoded images
    before = {k: v.clone() for k, v in lora_parameters(opt.trainer.policy.denoiser).items()}
    second = opt.ask(conditions=prompts[:1] * 4)
    assert opt.round == 1 and opt.round_log[-1]["steps"] == 2.0
    after = lora_parameters(opt.trainer.policy.denoiser)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert opt.trainer.buffer.conditions().shape[1:] == (LENGTH, EMB)
    opt.close()
    back = Optimizer.load(tmp_path / "study")
    assert back.shape == (3, 16, 16) and back.state_shape == (4, 8, 8)
    assert back._points[second.ids[0]].traj.shape == (4, 4, 8, 8)
    back.tell(second.ids, [0.0, 0.1, 0.2, 0.3])
    assert back.ask(conditions=prompts[1:] * 2).x.shape == (2, 3, 16, 16)
    back.close()


def test_a_pipeline_prior_saves_and_loads_with_its_text_encoder(
    pipeline_dir: Path, tmp_path: Path
) -> None:
    prior = load_pipeline_prior(pipeline_dir, guidance_scale=2.0, num_inference_steps=2)
    c = prior.encode_conditions(["a cat"])
    want = prior.to_design(prior.sample(1, torch.Generator().manual_seed(3), cond=c).x)
    prior.save(tmp_path / "p")
    back = DiffusionPrior.load(tmp_path / "p")
    c2 = back.encode_conditions(["a cat"])
    torch.testing.assert_close(c2, c)
    got = back.to_design(back.sample(1, torch.Generator().manual_seed(3), cond=c2).x)
    torch.testing.assert_close(got, want)


def test_the_sd_scale_check_runs_at_tiny_size(capsys: pytest.CaptureFixture[str]) -> None:
    sd_scale_check.main(
        ["--size", "tiny", "--device", "cpu", "--steps", "1", "--inference-steps", "3",
         "--queried", "2", "--transitions", "2"]
    )  # fmt: skip
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["size"] == "tiny" and summary["lora_parameters"] > 0
    assert summary["step_s_median"] > 0
