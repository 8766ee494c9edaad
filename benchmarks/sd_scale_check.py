"""SQDF at Stable Diffusion size: time and peak memory per step on a random-weight SD-1.5-sized
UNet and VAE (built from their configs; nothing is downloaded). Meant for a GPU::

    python -m benchmarks.sd_scale_check --device cuda --steps 5
    python -m benchmarks.sd_scale_check --size tiny --device cpu --steps 2   # smoke run

It builds the pipeline parts (UNet2DConditionModel 4×64×64 latents, cross-attention 768,
channels 320/640/1280/1280; AutoencoderKL to 3×512×512; the scaled-linear DDIM schedule),
turns them into a prior with :func:`~sqdf_bbo.load_pipeline_prior` (guidance 7.5, K = 50,
gradient checkpointing in the UNet and the decoder), samples the queried chains of one round
with fixed prompt embeddings, and runs SQDF optimizer steps with LoRA (rank 4, attention
projections) against a differentiable reward of the decoded image. It prints one JSON
line per step (seconds, peak memory) and a summary.
"""

from __future__ import annotations

import argparse
import json
import time
from types import SimpleNamespace

import torch

from sqdf_bbo.diffusion.pipelines import load_pipeline_prior
from sqdf_bbo.finetuning.configs import SQDFConfig
from sqdf_bbo.finetuning.sqdf import SQDFTrainer

__all__ = ["build_parts", "main"]

SIZES = {
    "sd15": {
        "unet": {"block_out_channels": (320, 640, 1280, 1280), "sample_size": 64,
                 "cross_attention_dim": 768, "attention_head_dim": 8, "layers_per_block": 2,
                 "norm_num_groups": 32},
        "vae": {"block_out_channels": (128, 256, 512, 512), "layers_per_block": 2,
                "sample_size": 512, "norm_num_groups": 32},
        "tokens": 77,
    },
    "tiny": {
        "unet": {"block_out_channels": (8, 16, 16, 16), "sample_size": 8,
                 "cross_attention_dim": 16, "attention_head_dim": 2, "layers_per_block": 1,
                 "norm_num_groups": 4},
        "vae": {"block_out_channels": (8, 8, 8, 8), "layers_per_block": 1, "sample_size": 64,
                "norm_num_groups": 4},
        "tokens": 8,
    },
}  # fmt: skip


def build_parts(size: str, seed: int = 0) -> SimpleNamespace:
    """Random-weight ``unet``, ``vae`` and ``scheduler`` of the given size."""
    import diffusers  # lazy: diffusers is slow to import

    spec = SIZES[size]
    torch.manual_seed(seed)
    unet = diffusers.UNet2DConditionModel(
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        **spec["unet"],
    )
    vae = diffusers.AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        scaling_factor=0.18215,
        **spec["vae"],
    )
    scheduler = diffusers.DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
    )
    return SimpleNamespace(unet=unet, vae=vae, scheduler=scheduler, tokens=spec["tokens"])


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _peak_gib(device: str) -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else float("nan")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", choices=sorted(SIZES), default="sd15")
    p.add_argument("--device", default="cuda")
    p.add_argument("--steps", type=int, default=5, help="SQDF optimizer steps timed")
    p.add_argument("--queried", type=int, default=8, help="chains sampled for the buffer")
    p.add_argument("--transitions", type=int, default=4, help="transitions per step")
    p.add_argument("--rollouts", type=int, default=1, help="on-policy rollouts per step")
    p.add_argument("--inference-steps", type=int, default=50)
    args = p.parse_args(argv)
    parts = build_parts(args.size)
    prior = load_pipeline_prior(
        parts,
        guidance_scale=7.5,
        num_inference_steps=args.inference_steps,
        cond_length=parts.tokens,
        decode_chunk_size=2,
        decode_checkpointing=True,
        unet_checkpointing=True,
        device=args.device,
    )
    cfg = SQDFConfig(
        train="lora",
        lora_rank=4,
        lora_targets=("to_q", "to_k", "to_v", "to_out.0"),
        lr=1e-3,
        x0_method="tweedie",
        transitions_per_step=args.transitions,
        rollouts_per_step=args.rollouts,
    )
    trainer = SQDFTrainer(prior, cfg, seed=0)
    gen = torch.Generator(device=args.device).manual_seed(0)
    emb = torch.randn((2, *prior.conditioning.cond_shape), generator=gen, device=args.device)
    cond = emb[torch.arange(args.queried) % 2]

    def reward(z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:  # mean brightness of the image
        return prior.to_design(z).mean((1, 2, 3))

    # 1. The round's queried chains (sampling, no gradients) and their values.
    _sync(args.device)
    t0 = time.perf_counter()
    out = trainer.sample(args.queried, gen, return_trajectory=True, cond=cond)
    with torch.no_grad():
        values = reward(out.x, cond)
    _sync(args.device)
    sample_s = time.perf_counter() - t0
    trainer.start_round(1, out.trajectory, values, conditions=cond)
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    # 2. SQDF steps: rollouts, a batch from the buffer, the loss through the decoder, AdamW.
    times = []
    for _ in range(args.steps):
        _sync(args.device)
        t = time.perf_counter()
        m = trainer.train_step(reward)
        _sync(args.device)
        times.append(time.perf_counter() - t)
        print(
            json.dumps({"step_s": times[-1], "peak_gib": _peak_gib(args.device), "loss": m["loss"]})
        )
    n_unet = sum(q.numel() for q in prior.denoiser.parameters())
    print(
        json.dumps(
            {
                "size": args.size,
                "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
                "unet_parameters": n_unet,
                "lora_parameters": sum(q.numel() for q in trainer.trainable_parameters.values()),
                "sample_s_per_chain": sample_s / args.queried,
                "step_s_median": sorted(times)[len(times) // 2],
                "peak_gib_during_steps": _peak_gib(args.device),
                "transitions_per_step": args.transitions,
                "rollouts_per_step": args.rollouts,
                "num_inference_steps": args.inference_steps,
            }
        )
    )


if __name__ == "__main__":
    main()
