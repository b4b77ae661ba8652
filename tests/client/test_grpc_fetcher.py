"""The gRPC fetcher's own checks on the Fetch stream, over an in-memory channel (the contract
python-tuf's length caps do not see), and its error mapping."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tuf.api.exceptions import DownloadError, DownloadLengthMismatchError

from fedota.client.errors import CoordinatorFailed, CoordinatorUnavailable
from fedota.client.update import DEFAULT_REPOSITORY_URL, RemoteFileMissing
from fedota.client.update.grpc_fetcher import MAX_CHUNK_BYTES, GrpcFetcher
from fedota.protos.v1 import updates_pb2

URL = DEFAULT_REPOSITORY_URL + "targets/artifacts/digits/1/abc.fp32.safetensors"
PATH = "targets/artifacts/digits/1/abc.fp32.safetensors"


class Channel:
    """Answers Fetch with the chunks a test gives, or raises; records (path, offset)."""

    def __init__(self, chunks: list[updates_pb2.FetchChunk], error: Exception | None = None):
        self.chunks = chunks
        self.error = error
        self.calls: list[tuple[str, int]] = []

    def fetch(self, path: str, offset: int) -> Iterator[updates_pb2.FetchChunk]:
        self.calls.append((path, offset))
        yield from self.chunks
        if self.error is not None:
            raise self.error


def chunk(data: bytes, total: int) -> updates_pb2.FetchChunk:
    return updates_pb2.FetchChunk(data=data, total_length=total)


def test_the_stream_is_read_from_the_offset_asked() -> None:
    channel = Channel([chunk(b"cdef", 6)])
    fetcher = GrpcFetcher(channel)

    assert b"".join(fetcher.fetch_from(URL, 2)) == b"cdef"
    assert channel.calls == [(PATH, 2)]


@pytest.mark.parametrize(
    ("chunks", "message"),
    [
        ([chunk(b"ab", 4), chunk(b"cd", 5)], "total length of 4 bytes, then 5"),
        ([chunk(b"abc", 2)], "past the total length of 2"),
        ([chunk(b"x" * (MAX_CHUNK_BYTES + 1), MAX_CHUNK_BYTES + 1)], "more than the"),
    ],
    ids=["changing_total", "past_total", "oversized_chunk"],
)
def test_a_stream_that_breaks_the_contract_is_a_download_error(
    chunks: list[updates_pb2.FetchChunk], message: str
) -> None:
    fetcher = GrpcFetcher(Channel(chunks))

    with pytest.raises(DownloadError) as raised:
        b"".join(fetcher.fetch(URL))
    assert message in str(raised.value.__cause__)


def test_more_than_the_signed_length_is_refused_before_it_is_kept() -> None:
    fetcher = GrpcFetcher(Channel([chunk(b"abcd", 8), chunk(b"efgh", 8)]))
    kept = bytearray()

    class Sink:
        def write(self, data: bytes) -> None:
            kept.extend(data)

    with pytest.raises(DownloadLengthMismatchError):
        fetcher.download_into(URL, Sink(), 0, 6)
    assert bytes(kept) == b"abcd"


def test_not_found_means_the_file_is_missing() -> None:
    error = CoordinatorFailed("NOT_FOUND", "metadata/3.root.json is not in the repository")
    fetcher = GrpcFetcher(Channel([], error))

    with pytest.raises(RemoteFileMissing) as raised:
        b"".join(fetcher.fetch(DEFAULT_REPOSITORY_URL + "metadata/3.root.json"))
    assert raised.value.status_code == 404


def test_a_cut_or_refused_stream_is_a_download_error() -> None:
    cut = GrpcFetcher(Channel([chunk(b"ab", 4)], CoordinatorUnavailable("coordinator unavailable")))
    with pytest.raises(DownloadError) as raised:
        b"".join(cut.fetch(URL))
    assert not isinstance(raised.value, RemoteFileMissing)

    denied = GrpcFetcher(Channel([], CoordinatorFailed("PERMISSION_DENIED", "device revoked")))
    with pytest.raises(DownloadError) as raised:
        b"".join(denied.fetch(URL))
    assert not isinstance(raised.value, RemoteFileMissing)


def test_a_url_outside_the_repository_is_refused_before_any_call() -> None:
    channel = Channel([])

    with pytest.raises(DownloadError):
        GrpcFetcher(channel).fetch("https://elsewhere.example/targets/x")
    assert channel.calls == []
