"""LocalBlobStore: what goes in comes out under its SHA-256, in whole or by range."""

from __future__ import annotations

import hashlib
import io
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from fedota.storage.blobs import BlobLimits
from fedota.storage.errors import (
    BlobHashMismatch,
    BlobNotFound,
    BlobTooLarge,
    InvalidBlobRange,
)
from fedota.storage.local_blobs import LocalBlobStore

DATA = bytes(range(256)) * 41  # 10_496 bytes: several chunks at the small chunk size below
KEY = hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs", limits=BlobLimits(chunk_size=1000))


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_put_and_read_back(store: LocalBlobStore) -> None:
    info = store.put_bytes(DATA)

    assert (info.key, info.size) == (KEY, len(DATA))
    assert store.read_bytes(KEY) == DATA
    assert store.exists(KEY) and store.size(KEY) == len(DATA)
    assert list(store.keys()) == [KEY]
    path = store.root / KEY[:2] / KEY[2:4] / KEY
    assert store.path_of(KEY) == path and path.read_bytes() == DATA
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert list((store.root / "tmp").iterdir()) == []


def test_file_and_stream_puts_match_bytes(store: LocalBlobStore) -> None:
    assert store.put_file(io.BytesIO(DATA)).key == KEY
    chunks = [DATA[i : i + 777] for i in range(0, len(DATA), 777)]
    assert store.put_stream(iter(chunks), expected_sha256=KEY).key == KEY
    assert list(store.keys()) == [KEY]


def test_empty_blob(store: LocalBlobStore) -> None:
    empty = hashlib.sha256(b"").hexdigest()
    assert store.put_bytes(b"").key == empty
    assert store.read_bytes(empty) == b"" and store.size(empty) == 0


def test_keys_are_listed_in_order_and_delete_is_idempotent(store: LocalBlobStore) -> None:
    keys = sorted(store.put_bytes(f"blob {i}".encode()).key for i in range(20))
    assert list(store.keys()) == keys

    assert store.delete(keys[0]) is True
    assert store.delete(keys[0]) is False
    assert not store.exists(keys[0])
    assert list(store.keys()) == keys[1:]


def test_missing_blob(store: LocalBlobStore) -> None:
    for call in (store.read_bytes, store.size, store.open_range, store.verify):
        with pytest.raises(BlobNotFound) as raised:
            call(KEY)
        assert raised.value.key == KEY
    assert not store.exists(KEY)


@pytest.mark.parametrize(
    ("offset", "length", "expected"),
    [
        (0, None, DATA),
        (0, 10, DATA[:10]),
        (4321, None, DATA[4321:]),
        (4321, 2500, DATA[4321:6821]),
        (len(DATA) - 1, 99, DATA[-1:]),
        (len(DATA), None, b""),
        (10, 0, b""),
    ],
)
def test_range_reads(
    store: LocalBlobStore, offset: int, length: int | None, expected: bytes
) -> None:
    store.put_bytes(DATA)
    chunks = list(store.open_range(KEY, offset, length))
    assert b"".join(chunks) == expected
    assert all(len(chunk) <= 1000 for chunk in chunks)


@pytest.mark.parametrize(("offset", "length"), [(len(DATA) + 1, None), (-1, None), (0, -5)])
def test_bad_ranges_are_refused_before_any_read(
    store: LocalBlobStore, offset: int, length: int | None
) -> None:
    store.put_bytes(DATA)
    with pytest.raises(InvalidBlobRange) as raised:
        store.open_range(KEY, offset, length)
    assert (raised.value.key, raised.value.size) == (KEY, len(DATA))


def test_expected_digest_mismatch_stores_nothing(store: LocalBlobStore) -> None:
    other = hashlib.sha256(b"something else").hexdigest()
    with pytest.raises(BlobHashMismatch) as raised:
        store.put_bytes(DATA, expected_sha256=other)
    assert (raised.value.expected, raised.value.actual) == (other, KEY)
    assert _files(store.root) == []


def test_size_cap_stops_the_stream_at_the_cap(store: LocalBlobStore) -> None:
    pulled: list[int] = []

    def endless() -> Iterator[bytes]:
        while True:
            pulled.append(1)
            yield b"x" * 1000

    with pytest.raises(BlobTooLarge) as raised:
        store.put_stream(endless(), max_size=5500)
    assert raised.value.limit == 5500
    assert len(pulled) == 6  # the sixth chunk crossed the cap; nothing after it was read
    assert _files(store.root) == []


def test_default_cap_comes_from_the_limits(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path, limits=BlobLimits(max_blob_size=100))
    store.put_bytes(b"x" * 100)
    with pytest.raises(BlobTooLarge):
        store.put_bytes(b"x" * 101)
    assert len(list(store.keys())) == 1


def test_non_bytes_chunk_is_refused_and_nothing_stored(store: LocalBlobStore) -> None:
    with pytest.raises(TypeError):
        store.put_stream([b"ok", "not bytes"])  # type: ignore[list-item]
    assert _files(store.root) == []


def test_misuse_of_limits_is_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        BlobLimits(chunk_size=0)
    with pytest.raises(ValueError):
        LocalBlobStore(tmp_path, stale_temp_after=-1)
    with pytest.raises(ValueError):
        LocalBlobStore(tmp_path).put_stream([b"x"], max_size=-1)


def test_store_reopens_on_existing_root(store: LocalBlobStore) -> None:
    store.put_bytes(DATA)
    again = LocalBlobStore(store.root)
    assert again.read_bytes(KEY) == DATA
    assert os.listdir(again.temp_dir) == []
