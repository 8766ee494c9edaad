"""Priors from local diffusers pipelines (Stable Diffusion and its kin), never downloaded.

:func:`load_pipeline_prior` turns a pipeline folder (the layout ``save_pretrained`` writes:
``unet/``, ``vae/``, ``scheduler/``, optionally ``text_encoder/`` and ``tokenizer/``) or a
pipeline object into a :class:`~sqdf_bbo.diffusion.prior.DiffusionPrior`:

==================  ==============================================================
pipeline part       becomes
==================  ==============================================================
``unet``            the denoiser (a ``UNet2DConditionModel`` reads
                    ``encoder_hidden_states``; a ``UNet2DModel`` with a class
                    embedding reads ``class_labels``)
``vae``             the prior's :class:`~sqdf_bbo.diffusion.latent.LatentDecoder`
                    (its ``scaling_factor``; decoded images clamped to [-1, 1])
``scheduler``       the prior's schedule (its ``alphas_cumprod`` and prediction
                    type; sampled with DDIM and η)
``text_encoder``,   a :class:`~sqdf_bbo.diffusion.conditioning.TextEncoder`: prompts
``tokenizer``       are accepted as conditions; the empty prompt (or
                    ``negative_prompt``) is the null condition of guidance
==================  ==============================================================

Files are read with ``local_files_only=True`` and weights from safetensors only: a folder
that is missing, or lacks a part, is one clear error, not a download. Fine-tuning such a
prior with LoRA is ``SQDFConfig(train="lora", lora_targets=("to_q", "to_k", "to_v",
"to_out.0"))``, through peft as for any prior.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sqdf_bbo.diffusion.conditioning import Conditioning, TextEncoder
from sqdf_bbo.diffusion.latent import LatentDecoder
from sqdf_bbo.diffusion.prior import DiffusionPrior

__all__ = ["load_pipeline_prior", "PipelineNotFound"]


class PipelineNotFound(FileNotFoundError):
    """A pipeline folder, or a part of it, is missing (nothing is ever downloaded)."""


def _load_part(folder: Path, part: str, required: bool = True) -> Any:
    """A diffusers model or scheduler of the pipeline folder (``None`` when absent and not
    required), by the class its config names."""
    import diffusers  # lazy: diffusers is slow to import

    sub = folder / part
    config_file = next(
        (sub / f for f in ("config.json", "scheduler_config.json") if (sub / f).is_file()), None
    )
    if config_file is None:
        if required:
            raise PipelineNotFound(f"the pipeline at {folder} has no {part}/ (config missing)")
        return None
    name = json.loads(config_file.read_text()).get("_class_name", "")
    cls = getattr(diffusers, name, None)
    if cls is None:
        raise ValueError(f"{sub}: unknown diffusers class {name!r}")
    if part == "scheduler":
        return cls.from_pretrained(sub, local_files_only=True)
    try:
        return cls.from_pretrained(sub, local_files_only=True, use_safetensors=True)
    except OSError as err:
        raise PipelineNotFound(
            f"cannot read {sub} from safetensors ({str(err).splitlines()[0]})"
        ) from None


def _text_encoder(folder: Path) -> TextEncoder | None:
    if not (folder / "text_encoder").is_dir() or not (folder / "tokenizer").is_dir():
        return None
    import transformers  # optional: only prompt-conditioned pipelines need it

    tok = transformers.AutoTokenizer.from_pretrained(folder / "tokenizer", local_files_only=True)
    model = transformers.CLIPTextModel.from_pretrained(
        folder / "text_encoder", local_files_only=True, use_safetensors=True
    )
    return TextEncoder(tok, model)


def _components(source: Any) -> dict[str, Any]:
    if isinstance(source, (str, Path)):
        folder = Path(source).expanduser()
        if not folder.is_dir():
            raise PipelineNotFound(
                f"no diffusers pipeline at {folder}: the folder does not exist (load_pipeline_prior "
                "reads local folders only; download the pipeline there first)"
            )
        return {
            "unet": _load_part(folder, "unet"),
            "vae": _load_part(folder, "vae", required=False),
            "scheduler": _load_part(folder, "scheduler"),
            "text_encoder": _text_encoder(folder),
            "name": folder.name,
        }
    unet = getattr(source, "unet", None)
    if not isinstance(unet, nn.Module):
        raise TypeError(
            f"expected a pipeline folder or a diffusers pipeline with a unet, got {type(source).__name__}"
        )
    text, tok = getattr(source, "text_encoder", None), getattr(source, "tokenizer", None)
    return {
        "unet": unet,
        "vae": getattr(source, "vae", None),
        "scheduler": source.scheduler,
        "text_encoder": None if text is None or tok is None else TextEncoder(tok, text),
        "name": type(source).__name__,
    }


def _pair(size: Any) -> tuple[int, int]:
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


def load_pipeline_prior(
    source: str | Path | Any,
    *,
    guidance_scale: float = 7.5,
    num_inference_steps: int = 50,
    eta: float = 1.0,
    negative_prompt: str = "",
    cond_length: int = 77,
    null_label: int | None = None,
    decode_chunk_size: int | None = 4,
    decode_checkpointing: bool = False,
    unet_checkpointing: bool = False,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    name: str | None = None,
) -> DiffusionPrior:
    """A prior from a local diffusers pipeline folder or a pipeline object (see the module
    docstring).

    Args:
        source: the folder (``save_pretrained`` layout) or a pipeline with ``unet``,
            ``scheduler`` and optionally ``vae``, ``text_encoder``, ``tokenizer``.
        guidance_scale: classifier-free guidance w (official SQDF: 7.5; 1: none). A
            class-conditional UNet guides only with ``null_label``.
        num_inference_steps, eta: K and DDIM η of the sampler (official: 50, 1.0).
        negative_prompt: the prompt whose embedding is the null condition (the official
            code: the empty prompt).
        cond_length: the token length L of embedding conditions ``(L, E)`` when the
            pipeline has no tokenizer (conditions are then embeddings given as tensors).
        null_label: a class-conditional UNet's "no class" label (guidance needs one).
        decode_chunk_size, decode_checkpointing: the :class:`LatentDecoder`'s memory bound.
        unet_checkpointing: gradient checkpointing in the UNet (its
            ``enable_gradient_checkpointing``), for fine-tuning large UNets.
        device, dtype: where and in which precision the networks live.
        name: a label (default: the folder's name).
    """
    import diffusers  # lazy: diffusers is slow to import

    parts = _components(source)
    unet, vae, text = parts["unet"], parts["vae"], parts["text_encoder"]
    cfg = unet.config
    latent_shape = (int(cfg.in_channels), *_pair(cfg.sample_size))
    # 1. The condition the UNet reads: prompt embeddings, class labels, or none.
    conditioning = None
    if isinstance(unet, diffusers.UNet2DConditionModel):
        length = int(text.tokenizer.model_max_length) if text is not None else int(cond_length)
        cond_shape = (length, int(cfg.cross_attention_dim))
        null = text([negative_prompt])[0].float().cpu() if text is not None else None
        conditioning = Conditioning(
            "embedding",
            cond_shape=cond_shape,
            guidance_scale=guidance_scale,
            null_embedding=null,
            text_encoder=text,
        )
    elif getattr(cfg, "num_class_embeds", None):
        conditioning = Conditioning(
            "labels",
            num_classes=int(cfg.num_class_embeds) - (null_label is not None),
            null_label=null_label,
            guidance_scale=guidance_scale if null_label is not None else 1.0,
        )
    # 2. The decoder between latents and designs (images in [-1, 1]).
    decoder = None
    if vae is not None:
        factor = 2 ** (len(vae.config.block_out_channels) - 1)
        h, w = latent_shape[1] * factor, latent_shape[2] * factor
        decoder = LatentDecoder(
            vae,
            (int(vae.config.out_channels), h, w),
            scaling_factor=vae.config.scaling_factor,
            value_range=(-1.0, 1.0),
            chunk_size=decode_chunk_size,
            checkpoint=decode_checkpointing,
        )
    if unet_checkpointing:
        unet.enable_gradient_checkpointing()
    unet.eval()
    prior = DiffusionPrior(
        unet,
        parts["scheduler"],
        shape=latent_shape,
        eta=eta,
        num_inference_steps=num_inference_steps,
        value_range=None if decoder is not None else (-1.0, 1.0),
        decoder=decoder,
        conditioning=conditioning,
        name=name or str(parts["name"]),
    )
    for net in (unet, decoder):
        if net is not None:
            net.to(device=device)
            if next(net.parameters()).dtype != dtype:
                net.to(dtype=dtype)
    if conditioning is not None:
        conditioning.to(device)
    return prior
