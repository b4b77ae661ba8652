"""Hostile input: bad keys never touch the filesystem; changed bytes are caught on read."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fedota.storage.blobs import BlobLimits
from fedota.storage.errors import BlobCorrupted, InvalidBlobKey
from fedota.storage.local_blobs import LocalBlobStore

DATA = random.Random(5000).randbytes(5000)  # fixed: test ids name keys made from it
KEY = hashlib.sha256(DATA).hexdigest()

BAD_KEYS = [
    "",
    "../../../../etc/passwd",
    "../" + KEY[3:],
    KEY.upper(),
    KEY[:-1],
    KEY + "0",
    KEY + "\n",
    "g" * 64,
    KEY[:32] + "/" + KEY[33:],
    "/" + KEY[1:],
    None,
    KEY.encode(),
    123,
]


@pytest.fixture
def store(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs", limits=BlobLimits(chunk_size=1024))


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("key", BAD_KEYS, ids=repr)
def test_bad_keys_are_refused_everywhere(store: LocalBlobStore, key: object) -> None:
    store.put_bytes(DATA)
    before = _tree(store.root)
    calls: list[Callable[[Any], object]] = [
        store.read_bytes,
        store.open_range,
        store.verify,
        store.exists,
        store.size,
        store.delete,
        store.path_of,
    ]
    for call in calls:
        with pytest.raises(InvalidBlobKey):
            call(key)
    if key is not None:  # None there means "no expected digest"
        with pytest.raises(InvalidBlobKey):
            store.put_bytes(b"x", expected_sha256=key)  # type: ignore[arg-type]
    assert _tree(store.root) == before


def _tamper(path: Path, change: bytes | None) -> None:
    """Flip the first byte (or truncate when `change` is None) of a read-only blob."""
    path.chmod(0o644)
    data = path.read_bytes()
    path.write_bytes(data[:-10] if change is None else change + data[1:])


@pytest.mark.parametrize("truncate", [False, True], ids=["flipped-byte", "truncated"])
def test_changed_bytes_are_detected(store: LocalBlobStore, truncate: bool) -> None:
    store.put_bytes(DATA)
    _tamper(store.path_of(KEY), None if truncate else bytes([DATA[0] ^ 0xFF]))
    stored = store.path_of(KEY).read_bytes()

    with pytest.raises(BlobCorrupted) as raised:
        store.read_bytes(KEY)
    assert raised.value.key == KEY
    assert raised.value.actual_sha256 == hashlib.sha256(stored).hexdigest()
    with pytest.raises(BlobCorrupted):
        store.verify(KEY)

    # A streaming reader gets an error before the last chunk: never the whole corrupted blob.
    received = bytearray()
    with pytest.raises(BlobCorrupted):
        for chunk in store.open_range(KEY):
            received += chunk
    assert len(received) < len(stored)
    # Reading never "repairs" or deletes: the evidence stays for the operator.
    assert store.path_of(KEY).read_bytes() == stored


def test_putting_the_content_again_heals_a_corrupted_blob(store: LocalBlobStore) -> None:
    store.put_bytes(DATA)
    _tamper(store.path_of(KEY), b"\x00")
    store.put_bytes(DATA)
    assert store.read_bytes(KEY) == DATA


def test_misplaced_and_foreign_files_are_not_keys(store: LocalBlobStore) -> None:
    store.put_bytes(DATA)
    other = hashlib.sha256(b"other").hexdigest()
    wrong_shard = store.root / KEY[:2] / KEY[2:4] / other
    wrong_shard.write_bytes(b"other")
    (store.root / KEY[:2] / KEY[2:4] / "notes.txt").write_text("hello")
    (store.root / "zz").mkdir()
    assert list(store.keys()) == [KEY]
