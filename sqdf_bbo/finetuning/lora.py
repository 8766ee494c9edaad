"""LoRA adapters (through ``peft``) for fine-tuning large denoisers.

``add_lora`` deep-copies a denoiser and injects low-rank adapters into its
``nn.Linear`` / ``nn.Conv2d`` layers; only the adapter weights are trainable,
the copied base weights are frozen. ``merge_lora`` folds the adapters into the
base weights and removes the wrappers, giving back a plain module of the
original class (which :meth:`DiffusionPrior.save` can store as usual).

``peft`` is an optional dependency (``pip install -e ".[lora]"``; ``peft`` imports
``transformers``, which it pulls in: checked for 0.10, 0.15 and 0.21); it is imported only here.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

from torch import nn

__all__ = ["add_lora", "merge_lora", "lora_target_names", "lora_parameters"]


def _require_peft():  # noqa: ANN202
    try:
        import peft  # optional: the lora extra
    except ImportError as exc:  # pragma: no cover - peft is in the test extras
        missing = getattr(exc, "name", None) or "peft"
        raise ImportError(
            f"train='lora' needs the optional dependency peft ({missing} is missing): "
            'pip install -e ".[lora]"'
        ) from exc
    return peft


def lora_target_names(module: nn.Module) -> list[str]:
    """Names of every ``nn.Linear`` and ``nn.Conv2d`` layer of ``module`` (the default targets)."""
    return [n for n, m in module.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d)) and n]


def add_lora(
    module: nn.Module,
    rank: int = 4,
    alpha: float | None = None,
    targets: Sequence[str] | None = None,
) -> nn.Module:
    """A copy of ``module`` with LoRA adapters; only adapter parameters require grad.

    Args:
        module: the denoiser (e.g. a diffusers ``UNet2DModel``); not modified.
        rank: LoRA rank r.
        alpha: LoRA scaling numerator (scale = alpha / r); default r (scale 1).
        targets: peft ``target_modules`` (module names or name suffixes such as
            ``("to_q", "to_k", "to_v", "to_out.0")``); default every Linear / Conv2d.

    Returns:
        The adapted copy. Adapters start at zero (``B = 0``), so it computes the
        same function as ``module``.
    """
    peft = _require_peft()
    if int(rank) < 1:
        raise ValueError(f"lora rank must be >= 1, got {rank}")
    names = list(targets) if targets is not None else lora_target_names(module)
    if not names:
        raise ValueError(
            f"{type(module).__name__} has no nn.Linear or nn.Conv2d layer to put LoRA adapters on; "
            "use train='full'"
        )
    cfg = peft.LoraConfig(
        r=int(rank),
        lora_alpha=float(alpha if alpha is not None else rank),
        target_modules=names,
        lora_dropout=0.0,
        init_lora_weights=True,
    )
    adapted = peft.inject_adapter_in_model(cfg, copy.deepcopy(module))
    for name, p in adapted.named_parameters():
        p.requires_grad_("lora_" in name)
    if not any(p.requires_grad for p in adapted.parameters()):
        raise ValueError(f"no LoRA adapter was created for targets {names}")
    return adapted


def lora_parameters(module: nn.Module) -> dict[str, nn.Parameter]:
    """The adapter parameters of a module returned by :func:`add_lora`, by name."""
    return {n: p for n, p in module.named_parameters() if "lora_" in n}


def merge_lora(module: nn.Module) -> nn.Module:
    """A copy of an adapted module with adapters merged into plain base layers."""
    from peft.tuners.lora import LoraLayer  # optional: the lora extra

    merged = copy.deepcopy(module)
    for name, sub in list(merged.named_modules()):
        if isinstance(sub, LoraLayer):
            sub.merge()
            parent_name, _, attr = name.rpartition(".")
            parent = merged.get_submodule(parent_name) if parent_name else merged
            setattr(parent, attr, sub.get_base_layer())
    for p in merged.parameters():
        p.requires_grad_(True)
    return merged
