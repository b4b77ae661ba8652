"""A signed target downloaded into place: resumable, capped at its signed length, verified whole.

Bytes go to `<dest>.part` (0600) and are hashed as they arrive. A cut transfer leaves the part
file for the next attempt, which asks the transport for the rest from its size; a part file
longer than the signed length is discarded. Only a file of exactly the signed length whose every
signed hash matches is renamed to `dest` (fsynced, then the directory fsynced); a hash mismatch
or more bytes than signed removes the part file, so nothing unverified is ever at `dest` and
nothing known-bad is resumed from.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from tuf.api.exceptions import DownloadError, DownloadLengthMismatchError

from fedota.client.update.durable import fsync_dir
from fedota.client.update.fetcher import ByteSink, RepositoryFetcher
from fedota.client.update.trust_errors import (
    HashMismatch,
    OversizedData,
    RepositoryUnavailable,
    TargetInfoInvalid,
    TrustStateError,
    translate,
)

PARTIAL_SUFFIX = ".part"
# (bytes received so far, signed length)
Progress = Callable[[int, int], None]
_READ_CHUNK = 1 << 20


class ExpectedFile(Protocol):
    """What a download is checked against (a `SignedTarget`)."""

    @property
    def path(self) -> str: ...
    @property
    def length(self) -> int: ...
    @property
    def hashes(self) -> dict[str, str]: ...


def partial_path(dest: Path) -> Path:
    """Where the bytes of a download to `dest` collect until verified."""
    return dest.with_name(dest.name + PARTIAL_SUFFIX)


def matches(path: Path, expected: ExpectedFile) -> bool:
    """Whether the file at `path` has the expected length and hashes (False if absent).

    Raises:
        TargetInfoInvalid: a signed hash algorithm is unknown to this device.
    """
    hashers = _hashers(expected)
    try:
        if path.stat().st_size != expected.length:
            return False
        _hash_file(path, hashers)
    except OSError:  # absent or unreadable: not in place, so download (and replace) it
        return False
    return _mismatch(hashers, expected) is None


def download_verified(
    fetcher: RepositoryFetcher,
    url: str,
    expected: ExpectedFile,
    dest: Path,
    progress: Progress | None = None,
) -> None:
    """Fetch `url` into `dest`, resuming a part file, and keep it only if it verifies.

    `progress(received, length)` is called after every chunk written (counting what an earlier
    attempt left in the part file).

    Raises:
        OversizedData: the transport sent more than the signed length (part file removed).
        HashMismatch: the bytes do not hash to the signed value (part file removed).
        RepositoryUnavailable: the transfer failed or ended early (part file kept to resume).
        TargetInfoInvalid: a signed hash algorithm is unknown to this device.
        TrustStateError: the part file or `dest` cannot be written.
    """
    partial = partial_path(dest)
    hashers = _hashers(expected)
    try:
        offset = _resume_offset(partial, expected.length)
        if offset:
            _hash_file(partial, hashers)
        fd = os.open(partial, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "ab") as file:
            sink = _HashingSink(file, hashers, offset, expected.length, progress)
            try:
                if offset < expected.length:
                    fetcher.download_into(url, sink, offset, expected.length - offset)
            finally:
                file.flush()
                os.fsync(file.fileno())
        size = partial.stat().st_size
    except DownloadLengthMismatchError as e:
        _discard(partial)
        raise OversizedData(
            f"downloading {expected.path}: more bytes than its signed {expected.length}: {e}"
        ) from None
    except DownloadError as e:
        error = translate(e, f"downloading {expected.path}")
        raise error from None
    except OSError as e:
        raise TrustStateError(f"downloading {expected.path} to {partial}: {e}") from None
    if size < expected.length:
        raise RepositoryUnavailable(
            f"downloading {expected.path}: the transfer ended at {size} of {expected.length} "
            "bytes; the next attempt resumes from there"
        )
    mismatch = _mismatch(hashers, expected)
    if mismatch is not None:
        _discard(partial)
        raise HashMismatch(f"downloading {expected.path}: {mismatch}")
    try:
        os.replace(partial, dest)
        fsync_dir(dest.parent)
    except OSError as e:
        raise TrustStateError(f"moving the verified {expected.path} to {dest}: {e}") from None


class _Hasher(Protocol):
    def update(self, data: bytes, /) -> None: ...
    def hexdigest(self) -> str: ...


class _HashingSink:
    """Writes to a file and feeds every hasher the same bytes."""

    def __init__(
        self,
        file: ByteSink,
        hashers: dict[str, _Hasher],
        received: int,
        length: int,
        progress: Progress | None,
    ) -> None:
        self._file = file
        self._hashers = hashers
        self._received = received
        self._length = length
        self._progress = progress

    def write(self, data: bytes, /) -> object:
        for hasher in self._hashers.values():
            hasher.update(data)
        written = self._file.write(data)
        # Handed to the OS chunk by chunk: a daemon killed mid-download resumes from all of it.
        flush = getattr(self._file, "flush", None)
        if flush is not None:
            flush()
        self._received += len(data)
        if self._progress is not None:
            self._progress(self._received, self._length)
        return written


def _hashers(expected: ExpectedFile) -> dict[str, _Hasher]:
    if "sha256" not in expected.hashes:
        raise TargetInfoInvalid(f"{expected.path} is signed without a sha256 hash")
    try:
        return {name: hashlib.new(name) for name in expected.hashes}
    except ValueError:
        raise TargetInfoInvalid(
            f"{expected.path} is signed with a hash this device does not know: "
            f"{', '.join(sorted(expected.hashes))}"
        ) from None


def _hash_file(path: Path, hashers: dict[str, _Hasher]) -> None:
    with open(path, "rb") as file:
        while chunk := file.read(_READ_CHUNK):
            for hasher in hashers.values():
                hasher.update(chunk)


def _mismatch(hashers: dict[str, _Hasher], expected: ExpectedFile) -> str | None:
    for name, hasher in hashers.items():
        actual = hasher.hexdigest()
        if actual != expected.hashes[name]:
            return f"its {name} is {actual}, the signed one {expected.hashes[name]}"
    return None


def _resume_offset(partial: Path, length: int) -> int:
    try:
        size = partial.stat().st_size
    except FileNotFoundError:
        return 0
    if size > length:
        _discard(partial)
        return 0
    return size


def _discard(partial: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        partial.unlink()
    with contextlib.suppress(OSError):
        fsync_dir(partial.parent)


__all__ = ["PARTIAL_SUFFIX", "Progress", "download_verified", "matches", "partial_path"]
