"""Conditions of a conditional prior: what they are, how they reach the network, guidance.

A conditional denoiser ε(x_t, t, c) takes a condition c besides the state (diffusers'
``UNet2DModel(class_embed_type=...)`` takes ``class_labels``, ``UNet2DConditionModel`` takes
``encoder_hidden_states``). A :class:`Conditioning` says which, and maps the conditions a user
gives to the tensors the network reads:

=============  ===========================  ==================================================
kind           a user's condition           the network's input ``c``
=============  ===========================  ==================================================
``labels``     an ``int`` class label       ``class_labels``, long ``(n,)``
``embedding``  a float tensor ``cond_shape``  ``encoder_hidden_states`` ``(n, *cond_shape)``
               (e.g. prompt embeddings
               ``(L, E)``), or a ``str``
               prompt when a text encoder
               is attached
=============  ===========================  ==================================================

Classifier-free guidance (Ho & Salimans 2022) with scale w, when ``guidance_scale != 1``:

    ε̃(x_t, t, c) = ε(x_t, t, ∅) + w · (ε(x_t, t, c) − ε(x_t, t, ∅))

with ∅ the null condition (``null_label``, or ``null_embedding``: the embedding of the empty
prompt for a text model). w = 1 is the plain conditional model (one network call). The
guided ε̃ is *the* prior here: its DDIM means are the reference's and the policy's μ in the
KL, as in the official SQDF code (``BBO/online/sqdf_utils.py``), which guides both the
trained and the reference UNet with ``sd_guidance_scale = 7.5`` against the empty-prompt
embedding and calls its LCM consistency model with guidance 1 (the conditional prediction
alone) for x0 estimates.

A condition reaches the fine-tuner's reward as well: a conditional reward is ``r(x0, c)``
with ``c`` the network's input; :meth:`Conditioning.features` gives a surrogate a flat view
of it (a one-hot label, or the token-mean of an embedding).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from sqdf_bbo.diffusion.io import register_network

__all__ = ["Conditioning", "ConditionValue", "CONDITION_KINDS", "TextEncoder"]

CONDITION_KINDS = ("labels", "embedding")
#: What a user passes per design: a class label, a prompt, or an embedding tensor.
ConditionValue = int | str | torch.Tensor
_KWARG = {"labels": "class_labels", "embedding": "encoder_hidden_states"}


class TextEncoder(nn.Module):
    """Prompts → embeddings ``(n, L, E)`` with a transformers tokenizer and text model (as
    Stable Diffusion's pipeline encodes them: padded to ``model_max_length``, last hidden
    state). Saved with the prior it belongs to (``save_pretrained``, safetensors)."""

    def __init__(self, tokenizer: Any, text_model: nn.Module) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.text_model = text_model.eval().requires_grad_(False)

    @torch.no_grad()
    def forward(self, prompts: Sequence[str]) -> torch.Tensor:
        """Embeddings ``(n, L, E)`` of ``n`` prompts."""
        ids = self.tokenizer(
            list(prompts),
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids
        device = next(self.text_model.parameters()).device
        return self.text_model(ids.to(device))[0]

    def save(self, directory: Path) -> None:
        self.tokenizer.save_pretrained(directory / "tokenizer")
        self.text_model.save_pretrained(directory / "text_encoder", safe_serialization=True)

    @classmethod
    def load(cls, directory: Path) -> TextEncoder:
        import transformers  # optional: only prompt-conditioned priors need it

        tok = transformers.AutoTokenizer.from_pretrained(directory / "tokenizer")
        model = transformers.CLIPTextModel.from_pretrained(
            directory / "text_encoder", use_safetensors=True
        )
        return cls(tok, model)


@register_network
class Conditioning(nn.Module):
    """How the conditions of a conditional prior reach its network.

    Args:
        kind: ``"labels"`` (class labels) or ``"embedding"`` (tensors, e.g. prompt embeddings).
        num_classes: for ``labels``: valid labels are ``0 … num_classes − 1``.
        cond_shape: for ``embedding``: the shape of one condition, e.g. ``(77, 768)``.
        guidance_scale: classifier-free guidance scale w (1: no guidance, one network call).
        null_label: for ``labels`` with guidance: the label the network was trained with as
            "no condition" (e.g. ``num_classes`` when its embedding table has one more row).
        null_embedding: for ``embedding`` with guidance: the unconditional embedding
            ``cond_shape`` (the empty prompt's); default zeros.
        text_encoder: optional ``prompts -> (n, *cond_shape)`` (e.g. :class:`TextEncoder`):
            then ``str`` conditions (prompts) are accepted and encoded with it.
    """

    def __init__(
        self,
        kind: str,
        *,
        num_classes: int | None = None,
        cond_shape: Sequence[int] | None = None,
        guidance_scale: float = 1.0,
        null_label: int | None = None,
        null_embedding: torch.Tensor | None = None,
        text_encoder: Callable[[Sequence[str]], torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        if kind not in CONDITION_KINDS:
            raise ValueError(
                f"conditioning kind {kind!r} is unknown; accepted values: {', '.join(CONDITION_KINDS)}"
            )
        guidance_scale = float(guidance_scale)
        if not (0.0 <= guidance_scale <= 100.0):
            raise ValueError(f"guidance_scale must lie in [0, 100], got {guidance_scale}")
        self.kind = kind
        self.guidance_scale = guidance_scale
        self.num_classes = None if num_classes is None else int(num_classes)
        self.null_label = None if null_label is None else int(null_label)
        self.cond_shape = None if cond_shape is None else tuple(int(s) for s in cond_shape)
        if kind == "labels":
            if self.num_classes is None or self.num_classes < 1:
                raise ValueError("labels conditioning needs num_classes >= 1")
            if guidance_scale != 1.0 and self.null_label is None:
                raise ValueError(
                    "classifier-free guidance (guidance_scale != 1) needs null_label, the label "
                    "the network was trained with for 'no condition'"
                )
        else:
            if not self.cond_shape or any(s < 1 for s in self.cond_shape):
                raise ValueError("embedding conditioning needs cond_shape, e.g. (77, 768)")
            if null_embedding is None:
                null_embedding = torch.zeros(self.cond_shape)
            if tuple(null_embedding.shape) != self.cond_shape:
                raise ValueError(
                    f"null_embedding has shape {tuple(null_embedding.shape)}; expected {self.cond_shape}"
                )
        if null_embedding is not None:
            self.register_buffer("null_embedding", null_embedding.detach().float().clone())
        else:
            self.null_embedding = None
        self.text_encoder = text_encoder
        self.config: dict[str, Any] = {
            "kind": kind,
            "num_classes": self.num_classes,
            "cond_shape": None if self.cond_shape is None else list(self.cond_shape),
            "guidance_scale": guidance_scale,
            "null_label": self.null_label,
        }

    # ------------------------------------------------------------------ user values → tensors
    @property
    def kwarg(self) -> str:
        """The keyword the network reads the condition by (``class_labels`` or
        ``encoder_hidden_states``)."""
        return _KWARG[self.kind]

    def check_value(self, value: Any) -> ConditionValue:
        """One user condition, checked (``ValueError``/``TypeError`` naming the problem) and
        normalized: an ``int`` label, a ``str`` prompt or a float CPU tensor ``cond_shape``."""
        if self.kind == "labels":
            if (
                isinstance(value, torch.Tensor)
                and value.numel() == 1
                and not value.is_floating_point()
            ):
                value = int(value.item())
            if isinstance(value, np.integer):
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"a class-label condition must be an int, got {value!r}")
            if not 0 <= value < int(self.num_classes or 0):
                raise ValueError(
                    f"class label {value} is out of range; valid labels: 0 … {self.num_classes - 1}"
                )
            return value
        if isinstance(value, str):
            if self.text_encoder is None:
                raise TypeError(
                    "this prior takes embedding conditions; a prompt needs a text encoder "
                    "(attach one: Conditioning(..., text_encoder=...)) or pass its embedding"
                )
            return value
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            raise TypeError(
                f"an embedding condition must be a float tensor of shape {self.cond_shape}"
                + (" or a prompt" if self.text_encoder is not None else "")
                + f", got {type(value).__name__}"
            )
        if tuple(value.shape) != self.cond_shape:
            raise ValueError(
                f"embedding condition has shape {tuple(value.shape)}; expected {self.cond_shape}"
            )
        if not bool(torch.isfinite(value).all()):
            raise ValueError("embedding condition has non-finite values")
        return value.detach().to("cpu", torch.float32).clone()

    def check_values(self, values: Any, n: int | None = None) -> list[ConditionValue]:
        """A batch of user conditions: a sequence (or a tensor whose rows are conditions),
        of length ``n`` when given."""
        if isinstance(values, (str, int)) or (
            isinstance(values, torch.Tensor)
            and values.ndim == (0 if self.kind == "labels" else len(self.cond_shape or ()))
        ):
            raise TypeError(
                "conditions must be a sequence with one condition per design, e.g. "
                "[3] * n or a list of prompts"
            )
        rows = list(values)
        if n is not None and len(rows) != n:
            raise ValueError(f"got {len(rows)} conditions for {n} designs; pass one per design")
        return [self.check_value(v) for v in rows]

    def encode(
        self, values: Sequence[ConditionValue], device: torch.device | str = "cpu"
    ) -> torch.Tensor:
        """The network's input ``c`` for checked conditions: labels ``(n,)`` long, or
        embeddings ``(n, *cond_shape)`` (prompts through the text encoder)."""
        values = [self.check_value(v) for v in values]
        if self.kind == "labels":
            return torch.tensor(values, dtype=torch.long, device=device)
        out = torch.empty((len(values), *self.cond_shape), device=device)  # type: ignore[misc]
        prompts = [i for i, v in enumerate(values) if isinstance(v, str)]
        if prompts:
            assert self.text_encoder is not None
            enc = self.text_encoder([values[i] for i in prompts]).to(device, out.dtype)
            if tuple(enc.shape[1:]) != self.cond_shape:
                raise ValueError(
                    f"the text encoder returned embeddings of shape {tuple(enc.shape[1:])}; "
                    f"this prior's conditions have shape {self.cond_shape}"
                )
            out[prompts] = enc
        for i, v in enumerate(values):
            if isinstance(v, torch.Tensor):
                out[i] = v.to(device)
        return out

    def null(self, n: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """The null condition ∅ for ``n`` designs (``ValueError`` when the prior has none)."""
        if self.kind == "labels":
            if self.null_label is None:
                raise ValueError(
                    "this prior is conditional and has no null label: pass conditions "
                    "(e.g. ask(n, conditions=[label] * n))"
                )
            return torch.full((n,), self.null_label, dtype=torch.long, device=device)
        assert self.null_embedding is not None
        return self.null_embedding.to(device).expand(n, *self.cond_shape).clone()  # type: ignore[misc]

    def features(self, c: torch.Tensor) -> torch.Tensor:
        """A flat view ``(n, F)`` of network conditions for a surrogate: one-hot labels
        (F = num_classes; the null label is all zeros) or the token mean of an embedding
        (F = its last dimension)."""
        if self.kind == "labels":
            k = int(self.num_classes or 0)
            hot = torch.zeros((c.shape[0], k), device=c.device)
            ok = (c >= 0) & (c < k)
            hot[ok.nonzero().flatten(), c[ok]] = 1.0
            return hot
        flat = c.reshape(c.shape[0], -1, c.shape[-1]) if c.ndim > 2 else c
        return flat.mean(1) if flat.ndim == 3 else flat

    # ------------------------------------------------------------------ the network call
    def call(
        self, model: Callable[..., Any], x: torch.Tensor, t: torch.Tensor, c: torch.Tensor
    ) -> torch.Tensor:
        """The guided network output for states ``x (n, *shape)``, timesteps ``t (n,)`` and
        conditions ``c (n, …)``: ``out(c)`` when w = 1, else
        ``out(∅) + w (out(c) − out(∅))`` from one batched call of ``2n`` rows."""
        if self.guidance_scale == 1.0:
            return _output(model(x, t, **{self.kwarg: c}))
        both = torch.cat([c, self.null(c.shape[0], c.device).to(c.dtype)])
        out = _output(model(torch.cat([x, x]), torch.cat([t, t]), **{self.kwarg: both}))
        cond, uncond = out.chunk(2)
        return uncond + self.guidance_scale * (cond - uncond)

    # ------------------------------------------------------------------ save / load
    def save_parts(self, directory: Path) -> dict[str, Any]:
        """Write the null embedding and the text encoder (if any); return the config."""
        directory.mkdir(parents=True, exist_ok=True)
        if self.null_embedding is not None:
            save_file(
                {"null_embedding": self.null_embedding.cpu().contiguous()},
                str(directory / "null.safetensors"),
            )
        has_text = isinstance(self.text_encoder, TextEncoder)
        if has_text:
            self.text_encoder.save(directory)  # type: ignore[union-attr]
        return {**self.config, "text_encoder": has_text}

    @classmethod
    def load_parts(cls, config: dict[str, Any], directory: Path) -> Conditioning:
        config = dict(config)
        has_text = bool(config.pop("text_encoder", False))
        null = None
        if (directory / "null.safetensors").is_file():
            null = load_file(str(directory / "null.safetensors"))["null_embedding"]
        text = TextEncoder.load(directory) if has_text else None
        kind = config.pop("kind")
        return cls(kind, **config, null_embedding=null, text_encoder=text)


def _output(out: Any) -> torch.Tensor:
    return getattr(out, "sample", out)
