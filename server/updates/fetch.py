"""The Updates service's Fetch: a repository file from a byte offset, in bounded chunks."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from fedota.protos.v1 import updates_pb2
from fedota.server.errors import NotFound, ServiceError
from fedota.server.runtime import Runtime
from fedota.server.updates.files import UnknownFile, resolve


class OffsetOutOfRange(ServiceError):
    """A resume offset past the end of the file."""

    code = grpc.StatusCode.OUT_OF_RANGE


def fetch(runtime: Runtime, request: updates_pb2.FetchRequest) -> Iterator[updates_pb2.FetchChunk]:
    """The file at `request.path` from `request.offset`, `limits.fetch_chunk_bytes` at a time.

    Raises:
        NotFound: the path names no file of the repository.
        OffsetOutOfRange: the offset is past the file's end.
    """
    try:
        with runtime.database.session() as session:
            found = resolve(session, request.path)
    except UnknownFile as exc:
        raise NotFound(str(exc)) from None
    size = runtime.blobs.size(found.blob_sha256)
    if request.offset > size:
        raise OffsetOutOfRange(f"offset {request.offset} is past the end of {size} bytes")
    step = runtime.limits.fetch_chunk_bytes
    pending = b""
    for piece in runtime.blobs.open_range(found.blob_sha256, request.offset):
        pending += piece
        while len(pending) >= step:
            yield updates_pb2.FetchChunk(data=pending[:step], total_length=size)
            pending = pending[step:]
    if pending or request.offset == size:
        yield updates_pb2.FetchChunk(data=pending, total_length=size)


__all__ = ["OffsetOutOfRange", "fetch"]
