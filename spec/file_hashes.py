"""SHA-256 of the files an export records: :func:`sha256_file` (graph and weight files, the
manifest's ``sha256`` fields) and :func:`checkpoint_sha256` (the checkpoint an export was made
from, ``model.checkpoint_sha256``). Torch-free."""

from __future__ import annotations

import hashlib
from pathlib import Path

from nuwa.spec.checkpoint_files import CHECKPOINT_FILES


def sha256_file(path: str | Path) -> str:
    """SHA-256 of a file's bytes (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def checkpoint_sha256(model_dir: str | Path) -> str:
    """SHA-256 over a checkpoint's config and weight files (names and bytes; absent files
    skipped): the manifest's ``model.checkpoint_sha256``, which ties an export to the
    checkpoint it was made from, and the key of the export cache."""
    model_dir = Path(model_dir)
    digest = hashlib.sha256()
    for name in CHECKPOINT_FILES:
        path = model_dir / name
        if path.is_file():
            digest.update(name.encode())
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()
