"""The transport seam under python-tuf's ngclient: one method to implement, limits in the base.

A transport (the Updates gRPC stream, plain HTTP, an in-memory test repository) subclasses
`RepositoryFetcher` and implements `_fetch(url)`: the file's bytes as an iterator of chunks. It
may also implement `_fetch_from(url, offset)` to resume a cut target download without resending
the part already on disk; the default fetches everything and drops the first `offset` bytes.

The base adds what must hold for every transport: no more bytes than the caller's cap (python-tuf
passes the signed length, or its configured maximum for unsized metadata), checked before each
chunk is kept; a bound on empty chunks (a stream that never ends but sends nothing); and every
transport failure, raised when the call is made *or while iterating*, wrapped into python-tuf's
`DownloadError`, so nothing transport-specific escapes. A missing file is `RemoteFileMissing`
(HTTP 404 to python-tuf, which is how it learns there is no newer root).

URLs are `<repository URL>metadata/...` and `<repository URL>targets/...`; `repository_path`
turns one back into the repository-relative path a transport asks its server for.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Iterator
from typing import Protocol

from tuf.api.exceptions import DownloadError, DownloadHTTPError, DownloadLengthMismatchError
from tuf.ngclient.fetcher import FetcherInterface

# Where the Updater's URLs point when the transport is not HTTP (the gRPC Fetch takes paths).
DEFAULT_REPOSITORY_URL = "fedota://updates/"
# A stream may send an empty chunk now and then, not forever.
MAX_EMPTY_CHUNKS = 64
_SEGMENT = re.compile(r"[A-Za-z0-9._%-]+")


class ByteSink(Protocol):
    """Where downloaded bytes go (a binary file, or a wrapper that also hashes them)."""

    def write(self, data: bytes, /) -> object: ...


class RemoteFileMissing(DownloadHTTPError):
    """The repository has no such file (what a transport raises for NOT_FOUND or HTTP 404)."""

    def __init__(self, path: str) -> None:
        super().__init__(f"{path} is not in the update repository", 404)
        self.path = path


def repository_path(url: str, repository_url: str = DEFAULT_REPOSITORY_URL) -> str:
    """The path of `url` inside the repository, e.g. `metadata/3.root.json`.

    Raises:
        DownloadError: `url` is not under `repository_url`, or has an empty, `.` or `..` segment
            or a character outside URL-safe ASCII.
    """
    if not url.startswith(repository_url):
        raise DownloadError(f"{url!r} is not under the update repository {repository_url!r}")
    path = url[len(repository_url) :]
    segments = path.split("/")
    if not path or any(s in ("", ".", "..") or not _SEGMENT.fullmatch(s) for s in segments):
        raise DownloadError(f"{path!r} is not a path of the update repository")
    return path


class RepositoryFetcher(FetcherInterface):
    """A python-tuf fetcher over one `_fetch(url)` seam, with length caps and error wrapping."""

    @abc.abstractmethod
    def _fetch(self, url: str) -> Iterator[bytes]:
        """The whole file at `url` as chunks.

        Raises:
            RemoteFileMissing: the repository has no such file.
            Exception: any transport failure (wrapped into DownloadError by the base).
        """
        raise NotImplementedError

    def _fetch_from(self, url: str, offset: int) -> Iterator[bytes]:
        """The file at `url` from byte `offset`. Override to resume without resending.

        Raises:
            As `_fetch`.
        """
        return _skip(self._fetch(url), offset)

    # -- what python-tuf and the device call -----------------------------------------------------

    def fetch(self, url: str) -> Iterator[bytes]:
        """The whole file; every transport failure (now or while iterating) is a DownloadError.

        Raises:
            DownloadError: the transport failed (RemoteFileMissing: no such file).
        """
        return self.fetch_from(url, 0)

    def fetch_from(self, url: str, offset: int) -> Iterator[bytes]:
        """The file from byte `offset`, failures wrapped as in `fetch`.

        Raises:
            ValueError: a negative offset.
            DownloadError: the transport failed.
        """
        if offset < 0:
            raise ValueError(f"offset must be >= 0, got {offset}")
        try:
            chunks = self._fetch(url) if offset == 0 else self._fetch_from(url, offset)
        except DownloadError:
            raise
        except Exception as e:
            raise DownloadError(f"failed to download {url}") from e
        return _wrapped(url, chunks)

    def download_bytes(self, url: str, max_length: int) -> bytes:
        """The whole file in memory (metadata), refusing more than `max_length` bytes.

        Raises:
            DownloadLengthMismatchError: the file is longer than `max_length`.
            DownloadError: the transport failed.
        """
        data = bytearray()
        for chunk in _capped(url, self.fetch(url), max_length):
            data += chunk
        return bytes(data)

    def download_into(self, url: str, file: ByteSink, offset: int, max_length: int) -> int:
        """Append the file's bytes from `offset` to `file`, at most `max_length` of them; returns
        how many were written. Nothing past the cap is written.

        Raises:
            DownloadLengthMismatchError: the transport sent more than `max_length` bytes.
            DownloadError: the transport failed (what arrived before is written).
            OSError: `file` cannot be written.
        """
        written = 0
        for chunk in _capped(url, self.fetch_from(url, offset), max_length):
            file.write(chunk)
            written += len(chunk)
        return written


def _wrapped(url: str, chunks: Iterator[bytes]) -> Iterator[bytes]:
    empty_in_a_row = 0
    try:
        for chunk in chunks:
            if not isinstance(chunk, bytes | bytearray | memoryview):
                raise DownloadError(f"{url}: the transport yielded {type(chunk).__name__}")
            empty_in_a_row = 0 if chunk else empty_in_a_row + 1
            if empty_in_a_row > MAX_EMPTY_CHUNKS:
                raise DownloadError(f"{url}: more than {MAX_EMPTY_CHUNKS} empty chunks in a row")
            yield bytes(chunk)
    except DownloadError:
        raise
    except Exception as e:
        raise DownloadError(f"transfer of {url} failed") from e
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


def _capped(url: str, chunks: Iterator[bytes], max_length: int) -> Iterator[bytes]:
    received = 0
    try:
        for chunk in chunks:
            received += len(chunk)
            if received > max_length:
                raise DownloadLengthMismatchError(
                    f"{url}: received at least {received} bytes, more than the {max_length} allowed"
                )
            yield chunk
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


def _skip(chunks: Iterator[bytes], offset: int) -> Iterator[bytes]:
    skipped = 0
    for chunk in chunks:
        if skipped < offset:
            take = min(len(chunk), offset - skipped)
            skipped += take
            chunk = chunk[take:]
        if chunk:
            yield chunk


__all__ = [
    "DEFAULT_REPOSITORY_URL",
    "MAX_EMPTY_CHUNKS",
    "ByteSink",
    "RemoteFileMissing",
    "RepositoryFetcher",
    "repository_path",
]
