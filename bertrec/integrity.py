"""Folder manifests: every file's size and SHA-256, written last, checked before anything is loaded.

Why: a folder renamed into place is never half-written, but files still get truncated by copies, damaged on
disk, or mixed by a rerun into an old folder. Parsers notice only some of that (a truncated safetensors
header fails, a flipped byte in a tensor loads silently). The manifest is also the completion marker: it is
written after every other file, so a folder without one was not finished.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from bertrec.atomic import atomic_write_text

MANIFEST_FILE = "bertrec_manifest.json"
_CHUNK = 1 << 20


class CorruptedFileError(ValueError):
    """A file of a bertrec folder is missing, truncated or changed since the folder was written."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _files(folder: Path, exclude: tuple[str, ...]) -> list[Path]:
    """Every regular file under ``folder`` except hidden ones (temp files), the manifest and ``exclude`` paths."""
    found = []
    for root, dirs, names in os.walk(folder):
        relative_root = Path(root).relative_to(folder)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and str(relative_root / d) not in exclude)
        found += [
            Path(root) / n
            for n in sorted(names)
            if not n.startswith(".") and n != MANIFEST_FILE and str(relative_root / n) not in exclude
        ]
    return found


def write_manifest(folder: str | os.PathLike, exclude: tuple[str, ...] = ()) -> None:
    """Record every file under ``folder`` (relative path, size, SHA-256); call it after the last other write.

    ``exclude`` names relative paths (files or folders) to leave out: ones with their own manifests, and
    documentation a user is expected to edit.
    """
    folder = Path(folder)
    files = {
        str(path.relative_to(folder)): {"bytes": path.stat().st_size, "sha256": _sha256(path)}
        for path in _files(folder, exclude)
    }
    atomic_write_text(folder / MANIFEST_FILE, json.dumps({"files": files}, indent=1, sort_keys=True) + "\n")


def mark_incomplete(folder: str | os.PathLike) -> None:
    """Remove an earlier manifest before rewriting a folder, so it stops vouching for files that will change."""
    (Path(folder) / MANIFEST_FILE).unlink(missing_ok=True)


def is_complete(folder: str | os.PathLike) -> bool:
    """True when the folder's writer finished (its manifest, written last, is there)."""
    return (Path(folder) / MANIFEST_FILE).is_file()


def verify_manifest(folder: str | os.PathLike, what: str = "folder") -> None:
    """Raise ``CorruptedFileError`` naming the first file that is missing or differs from the manifest.

    A name that is not a local folder (a Hub id) is left to ``from_pretrained``, which downloads it.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return
    manifest = folder / MANIFEST_FILE
    if not manifest.is_file():
        raise CorruptedFileError(
            f"{what} {folder} is incomplete: it has no {MANIFEST_FILE}, which is written last, so the run that "
            "wrote it was killed or is still running. Rerun it (training resumes with --resume_from_checkpoint "
            "latest) or use another folder."
        )
    try:
        files = json.loads(manifest.read_text())["files"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise CorruptedFileError(f"{manifest} is corrupted ({error}); the {what} cannot be verified") from error
    for name, expected in files.items():
        path = folder / name
        if not path.is_file():
            raise CorruptedFileError(f"{what} {folder}: {name} is missing (listed in {MANIFEST_FILE})")
        size = path.stat().st_size
        if size != expected["bytes"] or _sha256(path) != expected["sha256"]:
            raise CorruptedFileError(
                f"{what} {folder}: {name} is corrupted or truncated ({size} bytes, expected {expected['bytes']}; "
                "its SHA-256 does not match the manifest). Restore the folder from its source or rerun the "
                "step that wrote it."
            )
