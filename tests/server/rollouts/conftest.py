"""A seeded world per test, on a fresh migrated database of each backend (see tests/conftest.py)."""

from __future__ import annotations

import pytest
from rollout_world import World

from fedota.storage.db import Database


@pytest.fixture
def world(database: Database) -> World:
    """A fleet with cohort `canary`, an operator, family `digits` with v1 and a ready v2."""
    world = World.make(database)
    world.add_version(1)
    world.add_version(2)
    return world
