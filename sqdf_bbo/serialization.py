"""Save and load networks without pickle: safetensors weights + JSON config.

Three kinds of module are handled:

- ``diffusers``: any diffusers ``ModelMixin`` (``save_pretrained``/``from_pretrained``);
- ``builtin``: this package's networks, rebuilt as ``cls(**module.config)``;
- ``state_dict``: any other ``nn.Module``; its weights are saved, and loading
  needs the caller to pass an instance of the same architecture.

Weights are only ever read from safetensors files: diffusers models are loaded with
``use_safetensors=True``, so a folder holding only pickled ``.bin`` weights is refused
instead of being unpickled.

Checksum manifests (``checksums.json``) record the sha256 of files in a folder, as
``{"format": "sqdf-bbo-checksums", "version": 1, "algorithm": "sha256",
"files": {"relative/posix/path": "<hex digest>", ...}}``. :func:`write_checksums` writes one,
:func:`verify_checksums` checks every listed file and raises :class:`ChecksumError` naming the
first file that is missing or differs. A folder without a manifest (saved by an older
sqdf-bbo) is accepted as *unverified*; a manifest that is present but does not match is
corruption.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

from safetensors.torch import load_file, save_file
from torch import nn

__all__ = [
    "save_module",
    "load_module",
    "builtin_classes",
    "CHECKSUMS",
    "ChecksumError",
    "file_sha256",
    "write_checksums",
    "verify_checksums",
]

_WEIGHTS = "model.safetensors"
CHECKSUMS = "checksums.json"
_CHECKSUM_FORMAT = "sqdf-bbo-checksums"
_CHUNK = 1 << 20


class ChecksumError(ValueError):
    """A file in a saved folder is missing or differs from its recorded sha256."""


def file_sha256(path: Path) -> str:
    """Hex sha256 of the file at ``path`` (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _manifest_files(folder: Path) -> list[str]:
    """Relative POSIX paths of every regular file under ``folder`` but the manifest itself."""
    return sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and not p.is_symlink() and p.relative_to(folder).as_posix() != CHECKSUMS
    )


def write_checksums(folder: str | Path, files: Iterable[str] | None = None) -> Path:
    """Write ``folder/checksums.json`` with the sha256 of ``files`` (relative POSIX paths).

    ``files=None`` covers every regular file under ``folder`` (symbolic links are skipped).
    Returns the manifest's path.
    """
    folder = Path(folder)
    names = _manifest_files(folder) if files is None else sorted(files)
    manifest = {
        "format": _CHECKSUM_FORMAT,
        "version": 1,
        "algorithm": "sha256",
        "files": {name: file_sha256(folder / name) for name in names},
    }
    out = folder / CHECKSUMS
    out.write_text(json.dumps(manifest, indent=2) + "\n")
    return out


def _read_manifest(path: Path) -> dict[str, str]:
    """The ``files`` mapping of the manifest at ``path`` (ChecksumError if malformed)."""
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ChecksumError(f"{path}: unreadable checksum manifest ({err})") from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    ok = (
        isinstance(manifest, dict)
        and manifest.get("format") == _CHECKSUM_FORMAT
        and manifest.get("algorithm") == "sha256"
        and isinstance(files, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in files.items())
    )
    if not ok:
        raise ChecksumError(f"{path}: not a {_CHECKSUM_FORMAT} manifest (sha256)")
    return files  # type: ignore[return-value]


def _listed_path(folder: Path, name: str, manifest: Path) -> Path:
    """``folder / name`` for a manifest entry that stays inside ``folder``."""
    rel = PurePosixPath(name)
    if not name or rel.is_absolute() or any(part in ("", ".", "..") for part in rel.parts):
        raise ChecksumError(f"{manifest}: entry {name!r} does not name a file inside {folder}")
    return folder.joinpath(*rel.parts)


def verify_checksums(folder: str | Path) -> bool:
    """Check every file listed in ``folder/checksums.json`` against its recorded sha256.

    Returns ``True`` when all listed files match and ``False`` when there is no manifest
    (an older save: accepted unverified). Raises :class:`ChecksumError` naming the file when
    the manifest is malformed or a listed file is missing or differs.
    """
    folder = Path(folder)
    manifest = folder / CHECKSUMS
    if not manifest.exists():
        return False
    for name, want in _read_manifest(manifest).items():
        target = _listed_path(folder, name, manifest)
        if not target.is_file():
            raise ChecksumError(f"{target}: missing (listed in {manifest.name})")
        got = file_sha256(target)
        if got != want.lower():
            raise ChecksumError(
                f"{target}: sha256 mismatch (recorded {want[:12]}…, found {got[:12]}…); "
                "the file is corrupted or was changed after saving"
            )
    return True


def builtin_classes() -> dict[str, type[nn.Module]]:
    """Networks this package can rebuild from their config."""
    from .consistency import ConsistencyModel
    from .models import GaussianDenoiser, MLPDenoiser

    return {c.__name__: c for c in (MLPDenoiser, GaussianDenoiser, ConsistencyModel)}


def _diffusers_class(name: str) -> type[nn.Module] | None:
    import diffusers
    from diffusers import ModelMixin

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
    if name in builtin_classes():
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
