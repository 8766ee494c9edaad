"""Save and load networks without pickle: safetensors weights + JSON config.

Three kinds of module are handled:

- ``diffusers``: any diffusers ``ModelMixin`` (``save_pretrained``/``from_pretrained``);
- ``builtin``: this package's networks, rebuilt as ``cls(**module.config)``;
- ``state_dict``: any other ``nn.Module``; its weights are saved, and loading
  needs the caller to pass an instance of the same architecture.

Weights are only ever read from safetensors files: diffusers models are loaded with
``use_safetensors=True``, so a folder holding only pickled ``.bin`` weights is refused
instead of being unpickled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from torch import nn

from sqdf_bbo.registry import Registry

__all__ = ["save_module", "load_module", "builtin_classes", "register_network", "NETWORKS"]

_WEIGHTS = "model.safetensors"
NETWORKS: Registry[type[nn.Module]] = Registry("network")
"""Network classes :func:`load_module` rebuilds, by class name (:func:`register_network`)."""


def register_network(cls: type[nn.Module]) -> type[nn.Module]:
    """Class decorator: a network registers itself so that :func:`load_module` can rebuild it
    by class name, as ``cls(**module.config)`` (``config``: a JSON-able dict of constructor
    arguments) or through ``cls.save_parts`` / ``cls.load_parts``. A registered network with
    neither is saved as weights only and loads into an instance the caller passes."""
    return NETWORKS.register(cls.__name__, cls)


def builtin_classes() -> dict[str, type[nn.Module]]:
    """Networks this package can rebuild from their config (the registered ones)."""
    return dict(NETWORKS)


def _diffusers_class(name: str) -> type[nn.Module] | None:
    # lazy: diffusers is slow to import, and only diffusers networks need it
    import diffusers
    from diffusers import ModelMixin  # lazy

    cls = getattr(diffusers, name, None)
    return cls if isinstance(cls, type) and issubclass(cls, ModelMixin) else None


def save_module(module: nn.Module, directory: Path) -> dict[str, Any]:
    """Write ``module`` under ``directory``; return the JSON-able description to store."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    name = type(module).__name__
    if _diffusers_class(name) is type(module):
        module.save_pretrained(directory, safe_serialization=True)
        return {"kind": "diffusers", "class": name}
    if name in builtin_classes() and hasattr(module, "save_parts"):
        return {"kind": "builtin", "class": name, "config": module.save_parts(directory)}
    state = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    save_file(state, str(directory / _WEIGHTS))
    if name in builtin_classes() and isinstance(getattr(module, "config", None), dict):
        return {"kind": "builtin", "class": name, "config": module.config}
    return {"kind": "state_dict", "class": f"{type(module).__module__}.{name}"}


def _diffusers_from_safetensors(cls: type[nn.Module], directory: Path) -> nn.Module:
    """``cls.from_pretrained(directory)`` restricted to safetensors weights (never a ``.bin``)."""
    try:
        return cls.from_pretrained(directory, use_safetensors=True)  # type: ignore[attr-defined]
    except OSError as err:
        raise FileNotFoundError(
            f"cannot load the {cls.__name__} weights in {directory} from safetensors ({err}); "
            "pickled .bin weights are never loaded"
        ) from None


def load_module(
    meta: dict[str, Any], directory: Path, instance: nn.Module | None = None
) -> nn.Module:
    """Rebuild a module saved by :func:`save_module` (no code is imported from the folder)."""
    directory = Path(directory)
    kind = meta.get("kind")
    name = str(meta.get("class", ""))
    if kind == "diffusers":
        cls = _diffusers_class(name)
        if cls is None:
            raise ValueError(f"{name!r} is not a diffusers model class")
        return _diffusers_from_safetensors(cls, directory)
    if kind == "builtin":
        cls = builtin_classes().get(name)
        if cls is None:
            raise ValueError(
                f"unknown builtin network {name!r}; known: {sorted(builtin_classes())}"
            )
        if hasattr(cls, "load_parts"):
            return cls.load_parts(meta["config"], directory)
        module = cls(**meta["config"])
    elif kind == "state_dict":
        if instance is None:
            raise ValueError(
                f"the saved network is a {name}, which this package cannot rebuild by itself; "
                "pass an instance of the same architecture (e.g. DiffusionPrior.load(path, denoiser=net))"
            )
        module = instance
    else:
        raise ValueError(
            f"unknown saved network kind {kind!r}; expected diffusers, builtin or state_dict"
        )
    weights = directory / _WEIGHTS
    if not weights.is_file():
        raise FileNotFoundError(f"missing weights file {weights}")
    module.load_state_dict(load_file(str(weights)))
    return module
