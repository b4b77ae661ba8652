"""The fetcher base: its length caps and error wrapping hold for any transport, and python-tuf's
errors map to fedota's two families once."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from tuf.api import exceptions as tuf_errors

from fedota.client.update import (
    DEFAULT_REPOSITORY_URL,
    HashMismatch,
    MalformedMetadata,
    MetadataExpired,
    OversizedData,
    RemoteFileMissing,
    RepositoryFetcher,
    RepositoryUnavailable,
    SignatureRejected,
    TrustStateError,
    VersionRejected,
    repository_path,
)
from fedota.client.update.apply_errors import UpdateRejected
from fedota.client.update.trust_errors import translate

URL = DEFAULT_REPOSITORY_URL + "targets/a/b.bin"


class Scripted(RepositoryFetcher):
    """Yields `chunks`, then raises `fail` (when set) mid-stream; or raises it at call time."""

    def __init__(self, chunks: list[bytes], fail: Exception | None = None, eager: bool = False):
        self.chunks = chunks
        self.fail = fail
        self.eager = eager

    def _fetch(self, url: str) -> Iterator[bytes]:
        if self.eager and self.fail is not None:
            raise self.fail
        return self._stream()

    def _stream(self) -> Iterator[bytes]:
        yield from self.chunks
        if self.fail is not None:
            raise self.fail


@pytest.mark.parametrize(
    ("url", "path"),
    [
        (DEFAULT_REPOSITORY_URL + "metadata/3.root.json", "metadata/3.root.json"),
        (DEFAULT_REPOSITORY_URL + "targets/artifacts/d/1/abc.fp32.safetensors", None),
    ],
)
def test_repository_path_of_an_updater_url(url: str, path: str | None) -> None:
    assert repository_path(url) == (path or url[len(DEFAULT_REPOSITORY_URL) :])


@pytest.mark.parametrize(
    "url",
    [
        "https://elsewhere/metadata/timestamp.json",
        DEFAULT_REPOSITORY_URL,
        DEFAULT_REPOSITORY_URL + "targets/../../etc/passwd",
        DEFAULT_REPOSITORY_URL + "targets//x",
        DEFAULT_REPOSITORY_URL + "targets/./x",
        DEFAULT_REPOSITORY_URL + "targets/a b",
        DEFAULT_REPOSITORY_URL + "/etc/passwd",
    ],
)
def test_repository_path_refuses_what_is_not_a_repository_file(url: str) -> None:
    with pytest.raises(tuf_errors.DownloadError):
        repository_path(url)


@pytest.mark.parametrize("eager", [True, False], ids=["at-call", "while-iterating"])
def test_transport_failures_become_download_errors(eager: bool) -> None:
    fetcher = Scripted([b"abc"], fail=ConnectionResetError("peer went away"), eager=eager)

    with pytest.raises(tuf_errors.DownloadError) as caught:
        fetcher.download_bytes(URL, 100)

    assert isinstance(caught.value.__cause__, ConnectionResetError)


def test_a_missing_file_is_http_404_to_python_tuf() -> None:
    fetcher = Scripted([], fail=RemoteFileMissing("metadata/9.root.json"))

    with pytest.raises(tuf_errors.DownloadHTTPError) as caught:
        fetcher.download_bytes(URL, 100)

    assert caught.value.status_code == 404


def test_the_cap_is_checked_before_a_chunk_is_kept() -> None:
    sink = io.BytesIO()
    fetcher = Scripted([b"12345", b"67890", b"abcde"])

    with pytest.raises(tuf_errors.DownloadLengthMismatchError, match="more than the 8 allowed"):
        fetcher.download_into(URL, sink, 0, 8)

    assert sink.getvalue() == b"12345"


def test_the_default_resume_skips_the_bytes_already_held() -> None:
    fetcher = Scripted([b"12", b"345", b"6789"])
    sink = io.BytesIO()

    written = fetcher.download_into(URL, sink, 4, 100)

    assert (written, sink.getvalue()) == (5, b"56789")


def test_a_chunk_of_the_wrong_type_is_a_download_error() -> None:
    fetcher = Scripted(["text"])  # type: ignore[list-item]

    with pytest.raises(tuf_errors.DownloadError, match="yielded str"):
        fetcher.download_bytes(URL, 100)


@pytest.mark.parametrize(
    ("error", "ours"),
    [
        (tuf_errors.UnsignedMetadataError("x"), SignatureRejected),
        (tuf_errors.BadVersionNumberError("x"), VersionRejected),
        (tuf_errors.EqualVersionNumberError("x"), VersionRejected),
        (tuf_errors.ExpiredMetadataError("x"), MetadataExpired),
        (tuf_errors.LengthOrHashMismatchError("x"), HashMismatch),
        (tuf_errors.DownloadLengthMismatchError("x"), OversizedData),
        (tuf_errors.RepositoryError("x"), MalformedMetadata),
        (tuf_errors.DownloadHTTPError("x", 503), RepositoryUnavailable),
        (tuf_errors.SlowRetrievalError("x"), RepositoryUnavailable),
        (tuf_errors.DownloadError("x"), RepositoryUnavailable),
        (PermissionError("read-only"), TrustStateError),
    ],
)
def test_translate_maps_each_python_tuf_error_once(error: Exception, ours: type) -> None:
    translated = translate(error, "checking")

    assert type(translated) is ours
    assert str(translated).startswith("checking: ")
    # The repository's faults are update refusals; the transport's and the device's are not.
    assert isinstance(translated, UpdateRejected) == (
        ours not in (RepositoryUnavailable, TrustStateError)
    )


def test_translate_refuses_to_hide_a_bug() -> None:
    with pytest.raises(TypeError, match="KeyError"):
        translate(KeyError("oops"), "checking")
