"""The blob store on a local filesystem: `root/ab/cd/abcd…`, published by fsync and rename.

A put writes to `root/tmp/` (same filesystem, so the rename is atomic), fsyncs the file, renames it
to its key and fsyncs the directory: after a crash at any point the key names either nothing or the
complete blob. Temp files a crash left behind are removed when a store opens on the root, once they
are older than `stale_temp_after` (a younger one may be a live put of another process).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from fedota.storage.blobs import BlobLimits, BlobStore, BlobWriter, validate_key
from fedota.storage.errors import BlobNotFound, InvalidBlobKey

TEMP_DIR = "tmp"
TEMP_SUFFIX = ".part"
# Stored blobs are read-only: content-addressed bytes must never change in place.
BLOB_MODE = 0o444
DEFAULT_STALE_TEMP_AFTER_S = 3600.0
_HEX = frozenset("0123456789abcdef")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_dir_durable(path: Path) -> None:
    """Create `path` (one level) if missing and make its directory entry durable."""
    if not path.is_dir():
        path.mkdir(exist_ok=True)
        _fsync_dir(path.parent)


class _LocalWriter(BlobWriter):
    def __init__(self, store: LocalBlobStore) -> None:
        self._store = store
        fd, name = tempfile.mkstemp(dir=store.temp_dir, prefix="put-", suffix=TEMP_SUFFIX)
        self._temp = Path(name)
        self._file: BinaryIO | None = os.fdopen(fd, "wb")

    def write(self, data: bytes) -> None:
        assert self._file is not None, "write after commit or abort"
        self._file.write(data)

    def commit(self, key: str) -> None:
        assert self._file is not None, "commit after commit or abort"
        self._file.flush()
        os.fsync(self._file.fileno())
        os.fchmod(self._file.fileno(), BLOB_MODE)
        self._file.close()
        self._file = None
        final = self._store.path_of(key)
        _make_dir_durable(final.parent.parent)
        _make_dir_durable(final.parent)
        # Atomic, and replacing an existing blob is harmless: equal key, equal bytes.
        os.replace(self._temp, final)
        _fsync_dir(final.parent)

    def abort(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
        with contextlib.suppress(OSError):
            self._temp.unlink(missing_ok=True)


class LocalBlobStore(BlobStore):
    """Blobs under `root`, sharded by the first two bytes of the key.

    Raises (on construction):
        OSError: `root` cannot be created or written.
        ValueError: `stale_temp_after` is negative.
    """

    def __init__(
        self,
        root: Path,
        *,
        limits: BlobLimits | None = None,
        stale_temp_after: float = DEFAULT_STALE_TEMP_AFTER_S,
    ) -> None:
        super().__init__(limits)
        if stale_temp_after < 0:
            raise ValueError(f"stale_temp_after must be >= 0 seconds, got {stale_temp_after}")
        self.root = Path(root)
        self.temp_dir = self.root / TEMP_DIR
        self.root.mkdir(parents=True, exist_ok=True)
        _make_dir_durable(self.temp_dir)
        self.removed_temp_files = self._remove_stale_temps(stale_temp_after)

    def path_of(self, key: str) -> Path:
        """Where the blob `key` lives. Raises: InvalidBlobKey."""
        validate_key(key)
        return self.root / key[0:2] / key[2:4] / key

    def _remove_stale_temps(self, older_than: float) -> int:
        cutoff = time.time() - older_than
        removed = 0
        for entry in os.scandir(self.temp_dir):
            try:
                if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime <= cutoff:
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                continue  # another process finished or cleaned it meanwhile
        return removed

    def _begin_put(self) -> BlobWriter:
        return _LocalWriter(self)

    def _read(self, key: str, offset: int, length: int) -> Iterator[bytes]:
        try:
            file = open(self.path_of(key), "rb")  # noqa: SIM115 - closed by the generator
        except FileNotFoundError:
            raise BlobNotFound(f"no blob {key}", key=key) from None
        return self._chunks(file, offset, length)

    def _chunks(self, file: BinaryIO, offset: int, length: int) -> Iterator[bytes]:
        with file:
            file.seek(offset)
            remaining = length
            while remaining > 0:
                chunk = file.read(min(self.limits.chunk_size, remaining))
                if not chunk:
                    return  # shorter than its size said: the hash check reports it
                remaining -= len(chunk)
                yield chunk

    def _size(self, key: str) -> int:
        try:
            return os.stat(self.path_of(key)).st_size
        except FileNotFoundError:
            raise BlobNotFound(f"no blob {key}", key=key) from None

    def _delete(self, key: str) -> bool:
        path = self.path_of(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        _fsync_dir(path.parent)
        return True

    def _keys(self) -> Iterator[str]:
        for first in sorted(_subdirs(self.root)):
            for second in sorted(_subdirs(self.root / first)):
                for name in sorted(os.listdir(self.root / first / second)):
                    try:
                        validate_key(name)
                    except InvalidBlobKey:
                        continue
                    if name[0:2] == first and name[2:4] == second:
                        yield name


def _subdirs(path: Path) -> Iterator[str]:
    """Names of the two-hex-digit shard directories directly under `path`."""
    try:
        entries = list(os.scandir(path))
    except FileNotFoundError:
        return
    for entry in entries:
        name = entry.name
        if len(name) == 2 and set(name) <= _HEX and entry.is_dir(follow_symlinks=False):
            yield name


__all__ = ["LocalBlobStore"]
