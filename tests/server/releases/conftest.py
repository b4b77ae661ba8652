"""A metadata store on a fresh database of each backend, with a local blob store and secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedota.server.releases import CoordinatorSecret, MetadataStore
from fedota.storage.db import Database
from fedota.storage.local_blobs import LocalBlobStore


@pytest.fixture
def blobs(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs")


@pytest.fixture
def secret(tmp_path: Path) -> CoordinatorSecret:
    return CoordinatorSecret.load_or_create(tmp_path)


@pytest.fixture
def store(database: Database, blobs: LocalBlobStore, secret: CoordinatorSecret) -> MetadataStore:
    return MetadataStore(database, blobs, secret)
