"""The migrations build exactly the models' schema, and run down to nothing and back up."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from fedota.storage.migrate import current_revision, downgrade, head_revision, upgrade
from fedota.storage.models import Base

Snapshot = Callable[[str], dict[str, Any]]


def _autogenerate_diff(url: str) -> list[Any]:
    """What `alembic check` would find to generate: empty when migrations and models agree."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diff: list[Any] = compare_metadata(context, Base.metadata)
            return diff
    finally:
        engine.dispose()


def test_migrations_build_exactly_the_models_schema(
    make_empty_db: Callable[[], str], snapshot: Snapshot, create_all: Callable[[str], None]
) -> None:
    migrated, reference = make_empty_db(), make_empty_db()
    upgrade(migrated)
    create_all(reference)

    assert _autogenerate_diff(migrated) == []
    # Reflection also compares what autogenerate ignores: CHECK constraints, every name.
    schema = snapshot(migrated)
    assert schema == snapshot(reference)
    assert set(schema) == set(Base.metadata.tables)
    assert {c["name"] for c in schema["devices"]["checks"]} == {"ck_devices_devicestate"}
    campaign_fk = "fk_model_versions_campaign_id_training_campaigns"
    assert campaign_fk in {fk["name"] for fk in schema["model_versions"]["fks"]}


def test_downgrade_to_base_then_upgrade_again(empty_db_url: str, snapshot: Snapshot) -> None:
    upgrade(empty_db_url)
    full = snapshot(empty_db_url)

    downgrade(empty_db_url, "base")
    assert snapshot(empty_db_url) == {}
    assert current_revision(empty_db_url) is None

    upgrade(empty_db_url)
    assert snapshot(empty_db_url) == full
    assert current_revision(empty_db_url) == head_revision()


def test_upgrade_twice_changes_nothing(db_url: str, snapshot: Snapshot) -> None:
    before = snapshot(db_url)
    upgrade(db_url)
    assert snapshot(db_url) == before
    assert current_revision(db_url) == head_revision()
