"""Deprecations in one place: the one warning helper and every old setting name.

:func:`deprecate` is the only way the package warns about an old spelling (a setting, a
module, a class): a :class:`DeprecationWarning` that names the new spelling and the
version that drops the old one.

:data:`RENAMED_SETTINGS` lists the old names of settings, per config class (its
``__name__``): old name → new key (dotted for a setting that moved into a nested config).
They are read only where old text meets the package — a stored study's settings
(``Optimizer.load``) and the command line's ``--set`` / ``config`` keys — through
:func:`sqdf_bbo.migration.migrate`; Python code spells every setting the one current way
(nested configs), and a config built in Python with an old name is refused with a message
naming the new key.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

__all__ = [
    "CHAINED",
    "REMOVED_IN",
    "RENAMED_SETTINGS",
    "REPLACED_SETTINGS",
    "deprecate",
    "renamed_settings",
    "rename_hint",
]

REMOVED_IN = "0.4"
"""The version that drops every spelling deprecated today."""

_TRAINER_MOVES = {  # settings of the fine-tuners that were flat fields of the optimizers
    "SQDFOptimizerConfig": (
        "gamma", "eta", "num_inference_steps", "x0_method", "ddim_m", "lr", "grad_clip",
        "onpolicy_fraction", "rollouts_per_step", "buffer_capacity", "buffer_method",
        "buffer_priority", "clear_buffer_each_round", "train", "lora_rank",
    ),
    "SEIKOConfig": ("lr", "grad_clip", "truncation", "bp_min", "bp_max"),
}  # fmt: skip

RENAMED_SETTINGS: dict[str, dict[str, str]] = {
    # the fine-tuners: ``batch_size`` only ever means designs per ask; one KL weight
    "SQDFConfig": {"batch_size": "transitions_per_step", "alpha_official": "kl_weight"},
    "SEIKOTrainConfig": {"batch_size": "chains_per_step", "alpha_official": "kl_weight"},
    # the optimizers: the fine-tuner's settings moved into ``finetune`` (issue 10)
    "SQDFOptimizerConfig": {
        **{name: f"finetune.{name}" for name in _TRAINER_MOVES["SQDFOptimizerConfig"]},
        "alpha_official": "finetune.kl_weight",
        "alpha": "finetune.alpha",
        "steps_per_round": "finetune.steps",
        "finetune_batch_size": "finetune.transitions_per_step",
    },
    "SEIKOConfig": {
        **{name: f"finetune.{name}" for name in _TRAINER_MOVES["SEIKOConfig"]},
        "alpha_official": "finetune.kl_weight",
        "alpha": "finetune.alpha",
        "steps_per_round": "finetune.steps",
        "finetune_batch_size": "finetune.chains_per_step",
    },
}
"""Old setting names per config class: old name → new (dotted) key. ``alpha`` (the KL
weight in our convention) is not a plain rename: the trainer configs convert it to
``kl_weight`` with the design dimension (``migrate_legacy`` of
:mod:`sqdf_bbo.finetuning.configs`)."""


CHAINED: frozenset[str] = frozenset({"finetune.alpha"})
"""New keys that are old names in turn (warned about where they are migrated next)."""

REPLACED_SETTINGS: dict[str, dict[str, str]] = {
    "SQDFConfig": {"alpha": "kl_weight (the official convention: α = kl_weight · 2 / D)"},
    "SEIKOTrainConfig": {"alpha": "kl_weight (the official convention: α = kl_weight / D)"},
}
"""Old settings that are not a plain rename, per config class: old name → what replaces it."""


def deprecate(old: str, new: str, removed_in: str = REMOVED_IN, *, stacklevel: int = 3) -> None:
    """Warn that ``old`` is deprecated: a :class:`DeprecationWarning` naming its replacement
    ``new`` and the version ``removed_in`` that drops it."""
    warnings.warn(
        f"{old} is deprecated and will be removed in sqdf-bbo {removed_in}; use {new} instead",
        DeprecationWarning,
        stacklevel=stacklevel,
    )


def renamed_settings(config_class: type) -> Mapping[str, str]:
    """The old setting names of ``config_class`` (old name → new dotted key)."""
    return RENAMED_SETTINGS.get(config_class.__name__, {})


def rename_hint(config_class: type, name: str) -> str:
    """`` (renamed to 'new'; …)`` when ``name`` is an old name of ``config_class``, else ``""``."""
    replaced = REPLACED_SETTINGS.get(config_class.__name__, {}).get(name)
    if replaced is not None:
        return f" ({name!r} was replaced by {replaced})"
    new = renamed_settings(config_class).get(name)
    if new is None:
        return ""
    return (
        f" ({name!r} was renamed to {new!r}; old names are read only from stored studies and --set)"
    )
