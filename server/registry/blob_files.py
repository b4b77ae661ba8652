"""A blob copied to a local file, for the libraries (safetensors, delta) that read paths."""

from __future__ import annotations

from pathlib import Path

from fedota.storage.blobs import BlobStore


def blob_to_file(blobs: BlobStore, key: str, path: Path) -> None:
    """Write blob `key` to `path`, verified as it streams (see `BlobStore.open_range`).

    Raises:
        BlobNotFound, BlobCorrupted: the blob is missing or its bytes changed.
        OSError: `path` cannot be written.
    """
    with path.open("wb") as handle:
        for chunk in blobs.open_range(key):
            handle.write(chunk)


__all__ = ["blob_to_file"]
