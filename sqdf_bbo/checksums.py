"""sha256 manifests of the files in a folder (saved priors, study snapshots).

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

__all__ = ["CHECKSUMS", "ChecksumError", "file_sha256", "write_checksums", "verify_checksums"]

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
