"""The models on both backends: every table round-trips, times come back UTC, JSON stays JSON."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import StatementError

from fedota.storage import models as m
from fedota.storage.db import Database

IST = dt.timezone(dt.timedelta(hours=5, minutes=30))


def test_backend_is_really_the_one_named(
    database: Database, request: pytest.FixtureRequest
) -> None:
    backend = request.node.callspec.params["db_url"]
    assert database.backend == backend
    probe = "SELECT version()" if backend == "postgresql" else "SELECT sqlite_version()"
    with database.session() as session:
        answer = session.execute(text(probe)).scalar_one()
    assert answer.startswith("PostgreSQL") if backend == "postgresql" else answer[0].isdigit()


_SEEN_URLS: set[str] = set()


@pytest.mark.parametrize("turn", ["first", "second"])
def test_each_test_gets_a_database_of_its_own(database: Database, db_url: str, turn: str) -> None:
    # Whichever turn runs second would see the other's fleet if the database were shared.
    assert db_url not in _SEEN_URLS
    _SEEN_URLS.add(db_url)
    with database.transaction() as session:
        assert session.scalar(select(func.count()).select_from(m.Fleet)) == 0
        session.add(m.Fleet(id=f"flt_{turn}", name=turn))


def test_every_table_takes_a_row_and_gives_it_back(
    database: Database, seed: SimpleNamespace
) -> None:
    with database.transaction() as session:
        written = {table: obj.id for table, obj in seed.every_table(session).items()}
    assert set(written) == set(m.Base.metadata.tables)

    with database.session() as session:
        for mapper in m.Base.registry.mappers:
            cls = mapper.class_
            assert session.get(cls, written[cls.__tablename__]) is not None, cls.__tablename__
        campaign = session.get(m.TrainingCampaign, written["training_campaigns"])
        assert campaign is not None and campaign.result_version_id is not None
        result = session.get(m.ModelVersion, campaign.result_version_id)
        assert result is not None and result.campaign_id == campaign.id
        assert [a.variant for a in result.artifacts] == [m.Variant.FP32]


def test_datetimes_come_back_as_utc(database: Database, seed: SimpleNamespace) -> None:
    local = dt.datetime(2031, 3, 4, 5, 6, 7, 123456, tzinfo=IST)
    with database.transaction() as session:
        fleet, _ = seed.fleet(session)
        fleet.created_at = local
    with database.session() as session:
        stored = session.get(m.Fleet, fleet.id)
        assert stored is not None
        assert stored.created_at == local
        assert stored.created_at.tzinfo == dt.UTC
        assert stored.created_at.hour == 23 and stored.created_at.microsecond == 123456


def test_naive_datetime_is_refused_and_nothing_written(
    database: Database, seed: SimpleNamespace
) -> None:
    with pytest.raises(StatementError) as raised, database.transaction() as session:
        fleet, _ = seed.fleet(session)
        fleet.created_at = dt.datetime(2031, 1, 1)
    assert isinstance(raised.value.orig, ValueError)
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(m.Fleet)) == 0


def test_json_documents_round_trip(database: Database, seed: SimpleNamespace) -> None:
    profile = {
        "cpu": {"model": "Cortex-A72 ✓", "cores": 4, "ghz": 1.5},
        "accelerators": [],
        "swap": None,
        "flags": [True, False],
        "big": 2**53,
    }
    with database.transaction() as session:
        _, cohort = seed.fleet(session)
        device = seed.device(session, cohort)
        device.hardware_profile = profile
        device.labels = {"site": "lyon", "rack": "b7"}
    with database.session() as session:
        stored = session.get(m.Device, device.id)
        assert stored is not None
        assert stored.hardware_profile == profile
        assert stored.labels == {"site": "lyon", "rack": "b7"}
        assert stored.status == {}


def test_enums_are_stored_as_their_values(database: Database, seed: SimpleNamespace) -> None:
    with database.transaction() as session:
        _, cohort = seed.fleet(session)
        device = seed.device(session, cohort)
    with database.session() as session:
        raw = session.execute(text("SELECT state FROM devices WHERE id = :id"), {"id": device.id})
        assert raw.scalar_one() == "pending"
        assert session.get(m.Device, device.id).state is m.DeviceState.PENDING  # type: ignore[union-attr]
