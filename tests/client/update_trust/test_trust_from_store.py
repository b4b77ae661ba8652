"""End to end without a network: what the coordinator's MetadataStore publishes (SQLite and
PostgreSQL, blob store, sealed keys) is what a device verifies, through key rotations."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from tuf.api.exceptions import DownloadHTTPError
from tuf.ngclient import FetcherInterface, Updater

from fedota.client.update import (
    DEFAULT_REPOSITORY_URL,
    RemoteFileMissing,
    RepositoryFetcher,
    SignatureRejected,
    TrustedUpdates,
    repository_path,
)
from fedota.server.releases import (
    ConcurrentPublish,
    CoordinatorSecret,
    MetadataStore,
    artifact_target,
    generate_signer,
    parse_served_path,
)
from fedota.storage.db import Database
from fedota.storage.local_blobs import LocalBlobStore

NOW = dt.datetime.now(dt.UTC)


class StoreFetcher(RepositoryFetcher):
    """Serves TUF's layout straight from the store and the blob store."""

    def __init__(self, store: MetadataStore, blobs: LocalBlobStore) -> None:
        self.store = store
        self.blobs = blobs
        # When set, served as timestamp.json instead of the stored one (the attacker's move).
        self.timestamp: bytes | None = None

    def _fetch(self, url: str) -> Iterator[bytes]:
        path = repository_path(url)
        folder, _, name = path.partition("/")
        if folder == "metadata":
            data = self.store.read_file(name)
            if name == "timestamp.json" and self.timestamp is not None:
                data = self.timestamp
            if data is None:
                raise RemoteFileMissing(path)
            return iter([data])
        _target, sha256 = parse_served_path(name)
        if not self.blobs.exists(sha256):
            raise RemoteFileMissing(path)
        return self.blobs.open_range(sha256)


@pytest.fixture
def blobs(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs")


@pytest.fixture
def store(database: Database, blobs: LocalBlobStore, tmp_path: Path) -> MetadataStore:
    return MetadataStore(database, blobs, CoordinatorSecret.load_or_create(tmp_path))


def _release(store: MetadataStore, blobs: LocalBlobStore, version: int, data: bytes) -> str:
    stored = blobs.put_bytes(data)
    spec = artifact_target(
        "digits",
        version,
        "fp32",
        hashlib.sha256(b"content" + data).hexdigest(),
        length=stored.size,
        sha256=stored.key,
    )
    store.update(lambda repo: repo.update_targets(NOW, add=[spec]))
    return spec.path


def test_a_device_verifies_what_the_store_published_across_rotations(
    store: MetadataStore, blobs: LocalBlobStore, tmp_path: Path
) -> None:
    store.initialize(NOW)
    enrollment_root = store.read("root", 1)
    assert enrollment_root is not None
    device = TrustedUpdates(
        tmp_path / "update", StoreFetcher(store, blobs), trust_root=enrollment_root
    )
    first = _release(store, blobs, 1, b"v1 weights" * 300)
    device.download(first, tmp_path / "v1.safetensors")

    for role in ("root", "timestamp", "snapshot", "targets"):
        store.update(lambda repo, role=role: repo.rotate_key(role, generate_signer(), NOW))
    second = _release(store, blobs, 2, b"v2 weights" * 300)
    device.refresh()
    target = device.download(second, tmp_path / "v2.safetensors")

    assert (tmp_path / "v2.safetensors").read_bytes() == b"v2 weights" * 300
    assert target.info.version == 2  # type: ignore[union-attr]
    assert device.trusted_versions() == {
        role: store.latest_version(role) for role in ("root", "timestamp", "snapshot", "targets")
    }


def test_metadata_signed_by_a_retired_stored_key_is_refused(
    store: MetadataStore, blobs: LocalBlobStore, tmp_path: Path
) -> None:
    old = store.initialize(NOW)
    enrollment_root = store.read("root", 1)
    assert enrollment_root is not None
    store.update(lambda repo: repo.rotate_key("timestamp", generate_signer(), NOW))
    # A replica that missed the rotation signs with the old key: the constraint stops it...
    stale = old.bump_timestamp(NOW).repository.bump_timestamp(NOW)
    with pytest.raises(ConcurrentPublish, match="timestamp v2"):
        store.publish(old.bump_timestamp(NOW))
    # ...and a device served its timestamp (v3, newer than any stored) refuses it.
    fetcher = StoreFetcher(store, blobs)
    device = TrustedUpdates(tmp_path / "update", fetcher, trust_root=enrollment_root)
    device.refresh()
    fetcher.timestamp = stale.metadata[0].data

    with pytest.raises(SignatureRejected, match="timestamp"):
        device.refresh()

    assert device.trusted_versions()["timestamp"] == 2


class PlainFetcher(FetcherInterface):
    """A stock python-tuf fetcher over the same files: nothing of fedota's on the client side."""

    def __init__(self, files: StoreFetcher) -> None:
        self.files = files

    def _fetch(self, url: str) -> Iterator[bytes]:
        path = url.removeprefix("https://updates.example/")
        try:
            return self.files._fetch(DEFAULT_REPOSITORY_URL + path)
        except RemoteFileMissing as e:
            raise DownloadHTTPError(str(e), 404) from None


def test_a_stock_tuf_client_verifies_the_published_repository(
    store: MetadataStore, blobs: LocalBlobStore, tmp_path: Path
) -> None:
    store.initialize(NOW)
    store.update(lambda repo: repo.rotate_key("root", generate_signer(), NOW))
    path = _release(store, blobs, 1, b"weights" * 100)
    metadata_dir, targets_dir = tmp_path / "metadata", tmp_path / "targets"
    metadata_dir.mkdir()
    targets_dir.mkdir()
    updater = Updater(
        str(metadata_dir),
        "https://updates.example/metadata/",
        str(targets_dir),
        "https://updates.example/targets/",
        PlainFetcher(StoreFetcher(store, blobs)),
        bootstrap=store.read("root", 1),
    )

    updater.refresh()
    info = updater.get_targetinfo(path)
    assert info is not None
    downloaded = updater.download_target(info)

    assert Path(downloaded).read_bytes() == b"weights" * 100
    assert info.custom["fedota"]["version"] == 1
