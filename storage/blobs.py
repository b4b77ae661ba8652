"""The content-addressed blob store interface: weights, patches and metadata files by SHA-256.

A backend implements five primitives (begin a put, read a byte range, size, delete, list); this
base class adds everything that must hold for every backend: key validation, size caps, hashing
while streaming, digest checks and verified reads. A blob is immutable and visible under its key
only once complete, so a reader never sees a partial or foreign blob.
"""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from fedota.storage.errors import (
    BlobCorrupted,
    BlobHashMismatch,
    BlobNotFound,
    BlobTooLarge,
    InvalidBlobKey,
    InvalidBlobRange,
)

_KEY = re.compile(r"[0-9a-f]{64}")


def validate_key(key: object) -> str:
    """Return `key` if it is a blob key: the SHA-256 of the content, 64 lowercase hex digits.

    Raises:
        InvalidBlobKey: anything else (which therefore never reaches a path or an object name).
    """
    if not isinstance(key, str) or _KEY.fullmatch(key) is None:
        shown = repr(key) if len(repr(key)) <= 80 else repr(key)[:77] + "..."
        raise InvalidBlobKey(f"a blob key is 64 lowercase hex digits (a SHA-256), got {shown}")
    return key


@dataclass(frozen=True)
class BlobLimits:
    """Byte caps and chunking shared by every backend.

    Raises (on construction):
        ValueError: a limit is not positive.
    """

    # What a put accepts when the caller names no cap of its own.
    max_blob_size: int = 16 * 1024**3
    # The unit of every read and of a file put.
    chunk_size: int = 1024 * 1024

    def __post_init__(self) -> None:
        if self.max_blob_size <= 0 or self.chunk_size <= 0:
            raise ValueError(f"blob limits must be positive, got {self}")


@dataclass(frozen=True)
class BlobInfo:
    """What a put stored: the key (SHA-256 hex of the content) and the size in bytes."""

    key: str
    size: int


class BlobWriter(ABC):
    """A put in progress: bytes go somewhere invisible until `commit` publishes them atomically."""

    @abstractmethod
    def write(self, data: bytes) -> None:
        """Append bytes. Raises: OSError (or the backend's transport error)."""

    @abstractmethod
    def commit(self, key: str) -> None:
        """Publish the bytes under `key` (replacing an equal blob). Raises: OSError."""

    @abstractmethod
    def abort(self) -> None:
        """Discard the bytes; safe to call twice and after a failed commit. Never raises."""


class BlobStore(ABC):
    """Content-addressed, immutable blobs. Subclasses implement the underscored primitives."""

    def __init__(self, limits: BlobLimits | None = None) -> None:
        self.limits = limits or BlobLimits()

    # -- primitives a backend implements --------------------------------------------------------

    @abstractmethod
    def _begin_put(self) -> BlobWriter:
        """Start an invisible write."""

    @abstractmethod
    def _read(self, key: str, offset: int, length: int) -> Iterator[bytes]:
        """Chunks of `length` bytes from `offset` (within bounds). Raises BlobNotFound eagerly."""

    @abstractmethod
    def _size(self, key: str) -> int:
        """Size in bytes. Raises BlobNotFound."""

    @abstractmethod
    def _delete(self, key: str) -> bool:
        """Remove the blob; False if there was none."""

    @abstractmethod
    def _keys(self) -> Iterator[str]:
        """Every stored key, in a stable order."""

    # -- the public face ------------------------------------------------------------------------

    def put_bytes(self, data: bytes, *, expected_sha256: str | None = None) -> BlobInfo:
        """Store `data` and return its key and size; storing equal content again is harmless.

        Raises:
            InvalidBlobKey: `expected_sha256` is not a SHA-256 hex digest.
            BlobHashMismatch: the data does not hash to `expected_sha256` (nothing stored).
            BlobTooLarge: the data exceeds `limits.max_blob_size` (nothing stored).
            OSError: the backend failed to write (nothing stored).
        """
        return self.put_stream([data], expected_sha256=expected_sha256)

    def put_file(
        self, file: BinaryIO, *, max_size: int | None = None, expected_sha256: str | None = None
    ) -> BlobInfo:
        """Store what remains in a binary file, reading it chunk by chunk. See `put_stream`."""
        chunks = iter(lambda: file.read(self.limits.chunk_size), b"")
        return self.put_stream(chunks, max_size=max_size, expected_sha256=expected_sha256)

    def put_stream(
        self,
        chunks: Iterable[bytes],
        *,
        max_size: int | None = None,
        expected_sha256: str | None = None,
    ) -> BlobInfo:
        """Store the concatenated chunks, hashing as they arrive; never holds the whole in memory.

        `max_size` (default `limits.max_blob_size`) is checked before each chunk is written, so
        an oversized upload stops at the cap rather than at its end.

        Raises:
            ValueError: `max_size` is negative.
            TypeError: a chunk is not bytes-like.
            InvalidBlobKey: `expected_sha256` is not a SHA-256 hex digest.
            BlobTooLarge: the content exceeds the cap (nothing stored).
            BlobHashMismatch: the content does not hash to `expected_sha256` (nothing stored).
            OSError: the backend failed to write (nothing stored).
        """
        limit = self.limits.max_blob_size if max_size is None else max_size
        if limit < 0:
            raise ValueError(f"max_size must be >= 0, got {limit}")
        if expected_sha256 is not None:
            validate_key(expected_sha256)
        writer = self._begin_put()
        try:
            digest = hashlib.sha256()
            size = 0
            for chunk in chunks:
                if not isinstance(chunk, bytes | bytearray | memoryview):
                    raise TypeError(f"blob chunks must be bytes, got {type(chunk).__name__}")
                size += len(chunk)
                if size > limit:
                    raise BlobTooLarge(
                        f"blob exceeds its cap of {limit} bytes (at least {size} arrived)",
                        limit=limit,
                    )
                digest.update(chunk)
                writer.write(bytes(chunk))
            key = digest.hexdigest()
            if expected_sha256 is not None and key != expected_sha256:
                raise BlobHashMismatch(
                    f"content hashes to {key}, expected {expected_sha256}",
                    expected=expected_sha256,
                    actual=key,
                )
            writer.commit(key)
        except BaseException:
            writer.abort()
            raise
        return BlobInfo(key=key, size=size)

    def open_range(self, key: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        """Stream `length` bytes (default: to the end) from `offset`, for resumable downloads.

        When the range is the whole blob the stream is verified: its last chunk is held back until
        the hash matches, so a consumer never receives all of a corrupted blob. A partial range
        cannot be checked alone; whoever assembles the blob verifies it against its signed digest.
        Closing the iterator early releases the backend's handle.

        Raises:
            InvalidBlobKey: `key` is not a SHA-256 hex digest.
            BlobNotFound: no blob under `key` (raised by this call, not by the iteration).
            InvalidBlobRange: `offset` past the end, or negative `offset` or `length`.
            BlobCorrupted: (while iterating a whole-blob range) the bytes do not hash to `key`.
        """
        validate_key(key)
        size = self._size(key)
        if offset < 0 or offset > size or (length is not None and length < 0):
            raise InvalidBlobRange(
                f"range offset={offset} length={length} is outside blob {key} of {size} bytes",
                key=key,
                size=size,
            )
        length = size - offset if length is None else min(length, size - offset)
        chunks = self._read(key, offset, length)
        if offset == 0 and length == size:
            return _verified(key, chunks)
        return chunks

    def read_bytes(self, key: str) -> bytes:
        """The whole blob, verified against its key (meant for small blobs such as metadata).

        Raises:
            InvalidBlobKey: `key` is not a SHA-256 hex digest.
            BlobNotFound: no blob under `key`.
            BlobCorrupted: the stored bytes do not hash to `key`.
        """
        return b"".join(self.open_range(key))

    def verify(self, key: str) -> None:
        """Re-read the blob and check its hash (a scrub).

        Raises:
            InvalidBlobKey: `key` is not a SHA-256 hex digest.
            BlobNotFound: no blob under `key`.
            BlobCorrupted: the stored bytes do not hash to `key`.
        """
        for _ in self.open_range(key):
            pass

    def exists(self, key: str) -> bool:
        """Whether a blob is stored under `key`. Raises: InvalidBlobKey."""
        try:
            self._size(validate_key(key))
        except BlobNotFound:
            return False
        return True

    def size(self, key: str) -> int:
        """The blob's size in bytes. Raises: InvalidBlobKey, BlobNotFound."""
        return self._size(validate_key(key))

    def delete(self, key: str) -> bool:
        """Remove the blob; False when there was none (deleting twice is harmless).

        Raises:
            InvalidBlobKey: `key` is not a SHA-256 hex digest.
        """
        return self._delete(validate_key(key))

    def keys(self) -> Iterator[str]:
        """Every stored key, in a stable order (for garbage collection and scrubbing)."""
        return self._keys()


def _verified(key: str, chunks: Iterator[bytes]) -> Iterator[bytes]:
    digest = hashlib.sha256()
    held: bytes | None = None
    try:
        for chunk in chunks:
            digest.update(chunk)
            if held is not None:
                yield held
            held = chunk
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    actual = digest.hexdigest()
    if actual != key:
        raise BlobCorrupted(
            f"blob {key} is corrupted: its bytes hash to {actual}", key=key, actual_sha256=actual
        )
    if held is not None:
        yield held


__all__ = ["BlobInfo", "BlobLimits", "BlobStore", "BlobWriter", "validate_key"]
