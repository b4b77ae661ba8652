"""The database itself refuses bad rows (both backends), and a refused write changes nothing."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from fedota.storage import models as m
from fedota.storage.db import Database


def _count(database: Database, model: type[m.Base]) -> int:
    with database.session() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


@pytest.mark.parametrize(
    ("table", "column", "bad"),
    [
        ("devices", "state", "lost"),
        ("devices", "state", "PENDING"),  # the member's name is not its stored value
        ("audit_events", "actor_type", "robot"),
    ],
)
def test_enum_check_rejects_unknown_values_at_the_database(
    database: Database, seed: SimpleNamespace, table: str, column: str, bad: str
) -> None:
    with database.transaction() as session:
        _, cohort = seed.fleet(session)
        seed.device(session, cohort)
        session.add(
            m.AuditEvent(
                actor_type=m.ActorType.SYSTEM, action="t.t", target_type="x", target_id="y"
            )
        )
    # Raw SQL, so only the database's CHECK stands in the way (not the ORM's enum type).
    with pytest.raises(IntegrityError), database.transaction() as session:
        session.execute(text(f"UPDATE {table} SET {column} = :bad"), {"bad": bad})
    with database.session() as session:
        values = session.execute(text(f"SELECT {column} FROM {table}")).scalars().all()
    assert bad not in values and len(values) == 1


def test_one_device_per_public_key(database: Database, seed: SimpleNamespace) -> None:
    with database.transaction() as session:
        _, cohort = seed.fleet(session)
        seed.device(session, cohort, key="same key")
    with pytest.raises(IntegrityError), database.transaction() as session:
        seed.device(session, session.merge(cohort), key="same key")
    assert _count(database, m.Device) == 1


def test_cohort_names_are_unique_within_a_fleet(database: Database, seed: SimpleNamespace) -> None:
    with database.transaction() as session:
        fleet, _ = seed.fleet(session)
    with pytest.raises(IntegrityError), database.transaction() as session:
        session.add(m.Cohort(id="coh_dup", fleet_id=fleet.id, name="default"))
    assert _count(database, m.Cohort) == 1


def test_foreign_keys_are_enforced(database: Database) -> None:
    with pytest.raises(IntegrityError), database.transaction() as session:
        session.add(m.Cohort(id="coh_orphan", fleet_id="flt_missing", name="orphans"))
    assert _count(database, m.Cohort) == 0


def test_a_failed_transaction_leaves_no_partial_rows(
    database: Database, seed: SimpleNamespace
) -> None:
    with database.transaction() as session:
        _, cohort = seed.fleet(session)
        seed.device(session, cohort, key="taken")
    with pytest.raises(IntegrityError), database.transaction() as session:
        _, cohort2 = seed.fleet(session)
        seed.device(session, cohort2, key="fresh")
        seed.device(session, cohort2, key="taken")
    assert _count(database, m.Fleet) == 1
    assert _count(database, m.Device) == 1
