"""The seed paper's own experiment: SQDF on Stable Diffusion against an aesthetic score.

For a user with the weights on disk and a GPU (nothing is downloaded)::

    python -m benchmarks.aesthetic --pipeline ~/models/stable-diffusion-v1-5 \\
        --clip ~/models/clip-vit-large-patch14 --head ~/models/aesthetic-head.safetensors \\
        --out results/aesthetic --device cuda

Without the weights it stops with one line naming what is missing (exit status 2).

The setup (docs/latent.md, from the official code ``BBO/config/Bootstrap.py``,
``BBO/online/sqdf_cm_buffer_main.py``):

- prior: the pipeline (SD 1.5 in the paper) through :func:`~sqdf_bbo.load_pipeline_prior`:
  K = 50 DDIM steps, η = 1, classifier-free guidance 7.5 against the empty prompt, latents
  decoded by the VAE (÷ 0.18215);
- oracle: the LAION aesthetic predictor (an MLP on normalized CLIP ViT-L/14 image embeddings)
  plus N(0, 0.1²) observation noise;
- rounds of 1024, 2048, 4096, 8192 queries; each design's prompt drawn from the prompt list
  (the official code queries with ImageNet class names and trains on 45 simple animals; the
  default list here is our own list of common animals);
- SQDF: LoRA (rank 4) on the attention projections, lr 1e-3, α_official = 1, γ = 0.9, 40
  optimizer steps per round, the bootstrap-ensemble surrogate on the CLIP embedding.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from sqdf_bbo.diffusion.pipelines import load_pipeline_prior
from sqdf_bbo.optimizers.sqdf import SQDF

__all__ = ["AestheticSuite", "AestheticScorer", "MissingWeights", "check_paths", "run", "main"]

ANIMALS = (
    "cat", "dog", "horse", "cow", "sheep", "goat", "pig", "rabbit", "fox", "wolf", "bear",
    "lion", "tiger", "leopard", "zebra", "giraffe", "elephant", "monkey", "deer", "squirrel",
    "mouse", "hedgehog", "owl", "eagle", "parrot", "duck", "swan", "penguin", "frog", "turtle",
    "snake", "lizard", "fish", "dolphin", "whale", "shark", "octopus", "crab", "butterfly", "bee",
)  # fmt: skip
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class MissingWeights(FileNotFoundError):
    """A weight file or folder the suite needs is not on disk."""


@dataclass(frozen=True)
class AestheticSuite:
    """The paper's aesthetic experiment (module docstring); every path is local.

    Attributes:
        pipeline: a diffusers Stable Diffusion pipeline folder.
        clip: a transformers CLIP ViT-L/14 folder (``CLIPModel``).
        head: the aesthetic MLP's weights (safetensors, or a ``.pth`` state dict read with
            ``weights_only=True``).
        prompts: the prompts designs are asked under.
        budgets: queries per round (the paper: 1024, 2048, 4096, 8192).
        noise_std: the oracle's observation noise.
        seed: the run's seed.
    """

    pipeline: Path
    clip: Path
    head: Path
    prompts: tuple[str, ...] = ANIMALS
    budgets: tuple[int, ...] = (1024, 2048, 4096, 8192)
    noise_std: float = 0.1
    seed: int = 0
    sqdf: dict = field(
        default_factory=lambda: {
            "finetune": {
                "kl_weight": 1.0,
                "gamma": 0.9,
                "lr": 1e-3,
                "steps": 40,
                "train": "lora",
                "lora_rank": 4,
                "lora_targets": ("to_q", "to_k", "to_v", "to_out.0"),
                "num_inference_steps": 50,
                "eta": 1.0,
            }
        }
    )


def check_paths(suite: AestheticSuite) -> None:
    """``MissingWeights`` naming the first missing path (one line)."""
    for what, path, folder in (
        ("Stable Diffusion pipeline folder", suite.pipeline, True),
        ("CLIP ViT-L/14 folder", suite.clip, True),
        ("aesthetic head weights", suite.head, False),
    ):
        ok = Path(path).is_dir() if folder else Path(path).is_file()
        if not ok:
            raise MissingWeights(
                f"aesthetic suite: the {what} {path} is missing (nothing is downloaded; put the "
                "weights there, see benchmarks/aesthetic.py)"
            )


class AestheticScorer(nn.Module):
    """The LAION aesthetic predictor: images ``(n, 3, H, W)`` in [-1, 1] → scores ``(n,)``
    (CLIP ViT-L/14 image embedding, L2-normalized, then an MLP 768 → 1024 → 128 → 64 → 16 → 1)."""

    def __init__(self, clip: nn.Module, head_state: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.clip = clip.eval().requires_grad_(False)
        dims = (768, 1024, 128, 64, 16, 1)
        self.head = nn.Sequential(
            *[nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:])]
        ).requires_grad_(False)
        # the LAION file names its linear layers layers.0, .2, .4, .6, .7 (dropouts between)
        old = sorted({int(k.split(".")[1]) for k in head_state if k.startswith("layers.")})
        mapped = {
            f"{new}.{p}": head_state[f"layers.{o}.{p}"]
            for new, o in enumerate(old)
            for p in ("weight", "bias")
        }
        self.head.load_state_dict(mapped)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Normalized CLIP image embeddings ``(n, 768)`` of images in [-1, 1]."""
        x = (images.float() + 1) / 2
        x = F.interpolate(x, size=(224, 224), mode="bicubic", align_corners=False)
        mean = torch.tensor(CLIP_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(CLIP_STD, device=x.device).view(1, 3, 1, 1)
        e = self.clip.get_image_features(pixel_values=(x - mean) / std)
        return e / e.norm(dim=-1, keepdim=True)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(images)).squeeze(-1)


def _load_scorer(suite: AestheticSuite, device: str) -> AestheticScorer:
    import transformers  # optional: only this suite needs CLIP
    from safetensors.torch import load_file  # lazy: only with the weights present

    clip = transformers.CLIPModel.from_pretrained(suite.clip, local_files_only=True)
    head = Path(suite.head)
    if head.suffix == ".safetensors":
        state = load_file(str(head))
    else:
        state = torch.load(head, map_location="cpu", weights_only=True)
    return AestheticScorer(clip, state).to(device)


def run(suite: AestheticSuite, out: Path, device: str = "cuda") -> pd.DataFrame:
    """The whole experiment (needs the weights and, at the paper's sizes, a GPU)."""
    check_paths(suite)
    prior = load_pipeline_prior(suite.pipeline, guidance_scale=7.5, device=device)
    scorer = _load_scorer(suite, device)
    noise = torch.Generator(device=device).manual_seed(suite.seed + 101)
    prompts = torch.Generator().manual_seed(suite.seed + 202)
    opt = SQDF(
        prior,
        batch_size=suite.budgets[0],
        seed=suite.seed,
        config=suite.sqdf,
        feature_map=scorer.embed,
        study=out / "study",
    )
    rows = []
    for r, n in enumerate(suite.budgets):
        pick = torch.randint(len(suite.prompts), (n,), generator=prompts).tolist()
        conds = [f"a photo of a {suite.prompts[i]}" for i in pick]
        batch = opt.ask(n, conditions=conds)
        with torch.no_grad():
            true = torch.cat([scorer(batch.x[s : s + 32]) for s in range(0, n, 32)])
        y = true + suite.noise_std * torch.randn(true.shape, generator=noise, device=true.device)
        opt.tell(batch.ids, y.double().cpu())
        rows.append(
            {"round": r, "n": n, "aesthetic": float(true.mean()), "best": float(true.max())}
        )
        pd.DataFrame(rows).to_csv(out / "rounds.csv", index=False)
    return pd.DataFrame(rows)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pipeline", type=Path, required=True)
    p.add_argument("--clip", type=Path, required=True)
    p.add_argument("--head", type=Path, required=True)
    p.add_argument("--out", type=Path, default=Path("results/aesthetic"))
    p.add_argument("--device", default="cuda")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    suite = AestheticSuite(args.pipeline, args.clip, args.head, seed=args.seed)
    try:
        check_paths(suite)
    except MissingWeights as err:
        print(err, file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    print(run(suite, args.out, args.device).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
