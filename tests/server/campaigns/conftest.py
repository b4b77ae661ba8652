"""Campaign tests: a seeded coordinator world on each database backend, devices' state dirs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from campaign_world import World

from fedota.storage.db import Database
from fedota.storage.local_blobs import LocalBlobStore

# The real-Flower harness of tests/server/federation (flower_support) is shared.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "federation"))


@pytest.fixture
def world(database: Database, tmp_path: Path) -> World:
    """Family `digits` with the base as v1 (its fp32 blob stored), cohort `a`."""
    world = World.make(database, LocalBlobStore(tmp_path / "blobs"), tmp_path / "work")
    world.add_cohort("a")
    return world
