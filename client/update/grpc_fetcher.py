"""python-tuf's transport over the coordinator's Updates.Fetch stream (mTLS device channel).

`GrpcFetcher` implements the `RepositoryFetcher` seam: `_fetch(url)` streams the repository file
from offset 0, `_fetch_from(url, offset)` from where a cut download stopped. The base caps the
bytes at the signed length; this class adds what only the stream can tell: every chunk is at
most `MAX_CHUNK_BYTES` (the service promises 1 MiB), every chunk names the same `total_length`,
and no byte arrives past it. A NOT_FOUND answer is `RemoteFileMissing` (how python-tuf learns
that no newer root exists); every other failure is a `ClientError` the base wraps into
python-tuf's `DownloadError`. `FleetConnection.close()` cancels a stream in flight.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from fedota.client.errors import RemoteError
from fedota.client.update.fetcher import (
    DEFAULT_REPOSITORY_URL,
    RemoteFileMissing,
    RepositoryFetcher,
    repository_path,
)
from fedota.protos.v1 import updates_pb2

# The service sends chunks of at most 1 MiB; a little slack for a server with another size.
MAX_CHUNK_BYTES = 2 * 1024 * 1024


class StreamError(Exception):
    """The Fetch stream broke its own contract (oversized chunk, changing or exceeded length)."""


class FetchChannel(Protocol):
    """What the fetcher needs of the connection (`FleetConnection.fetch`)."""

    def fetch(self, path: str, offset: int) -> Iterator[updates_pb2.FetchChunk]: ...


class GrpcFetcher(RepositoryFetcher):
    """Repository files over `Updates.Fetch`, resumable from an offset."""

    def __init__(self, channel: FetchChannel, repository_url: str = DEFAULT_REPOSITORY_URL) -> None:
        self._channel = channel
        self._repository_url = repository_url

    def _fetch(self, url: str) -> Iterator[bytes]:
        return self._fetch_from(url, 0)

    def _fetch_from(self, url: str, offset: int) -> Iterator[bytes]:
        path = repository_path(url, self._repository_url)
        return _checked(path, offset, self._channel.fetch(path, offset))


def _checked(path: str, offset: int, chunks: Iterator[updates_pb2.FetchChunk]) -> Iterator[bytes]:
    """The chunks' bytes, refusing a stream that breaks the Fetch contract."""
    total: int | None = None
    position = offset
    try:
        for chunk in chunks:
            if len(chunk.data) > MAX_CHUNK_BYTES:
                raise StreamError(
                    f"{path}: a chunk of {len(chunk.data)} bytes, more than the "
                    f"{MAX_CHUNK_BYTES} allowed"
                )
            if total is None:
                total = chunk.total_length
            elif chunk.total_length != total:
                raise StreamError(
                    f"{path}: the stream named a total length of {total} bytes, then "
                    f"{chunk.total_length}"
                )
            position += len(chunk.data)
            if position > total:
                raise StreamError(
                    f"{path}: {position} bytes sent, past the total length of {total} it named"
                )
            yield chunk.data
    except RemoteError as exc:
        if exc.code == "NOT_FOUND":
            raise RemoteFileMissing(path) from exc
        raise
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


__all__ = ["MAX_CHUNK_BYTES", "FetchChannel", "GrpcFetcher", "StreamError"]
