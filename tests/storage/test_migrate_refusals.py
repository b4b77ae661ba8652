"""Databases this code must not migrate are refused with a typed error, and left as they were."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.pool import NullPool

from fedota.storage.errors import SchemaOutOfDate, UnknownSchemaRevision, UnmanagedSchema
from fedota.storage.migrate import (
    current_revision,
    downgrade,
    head_revision,
    is_up_to_date,
    require_up_to_date,
    upgrade,
)

Snapshot = Callable[[str], dict[str, Any]]


def _execute(url: str, sql: str) -> None:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(text(sql))
    finally:
        engine.dispose()


def _tables(url: str) -> set[str]:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return set(inspect(conn).get_table_names())
    finally:
        engine.dispose()


def test_fresh_database_is_up_to_date(db_url: str) -> None:
    assert is_up_to_date(db_url)
    require_up_to_date(db_url)
    assert current_revision(db_url) == head_revision()


def test_database_from_a_newer_fedota_is_refused_and_untouched(
    db_url: str, snapshot: Snapshot
) -> None:
    _execute(db_url, "UPDATE alembic_version SET version_num = 'f00dfeed9999'")
    before = snapshot(db_url)

    with pytest.raises(UnknownSchemaRevision) as raised:
        upgrade(db_url)
    assert raised.value.current == "f00dfeed9999"
    assert raised.value.head == head_revision()
    assert "f00dfeed9999" in str(raised.value) and head_revision() in str(raised.value)
    with pytest.raises(UnknownSchemaRevision):
        downgrade(db_url, "base")
    with pytest.raises(UnknownSchemaRevision):
        require_up_to_date(db_url)
    assert not is_up_to_date(db_url)

    assert snapshot(db_url) == before
    assert current_revision(db_url) == "f00dfeed9999"


def test_tables_without_migration_history_are_refused(
    empty_db_url: str, snapshot: Snapshot, create_all: Callable[[str], None]
) -> None:
    create_all(empty_db_url)
    before = snapshot(empty_db_url)

    with pytest.raises(UnmanagedSchema) as raised:
        upgrade(empty_db_url)
    assert raised.value.current is None
    with pytest.raises(UnmanagedSchema):
        require_up_to_date(empty_db_url)

    assert snapshot(empty_db_url) == before
    assert "alembic_version" not in _tables(empty_db_url)


def test_empty_database_is_out_of_date_until_upgraded(empty_db_url: str) -> None:
    with pytest.raises(SchemaOutOfDate) as raised:
        require_up_to_date(empty_db_url)
    assert type(raised.value) is SchemaOutOfDate
    assert (raised.value.current, raised.value.head) == (None, head_revision())
    assert not is_up_to_date(empty_db_url)

    upgrade(empty_db_url)
    require_up_to_date(empty_db_url)


@pytest.mark.parametrize("revision", ["nope", "0001+7", "000", "base"])
def test_unknown_target_revision_is_a_value_error_and_changes_nothing(
    empty_db_url: str, revision: str
) -> None:
    with pytest.raises(ValueError, match="revision must be"):
        upgrade(empty_db_url, revision)
    assert _tables(empty_db_url) == set()
