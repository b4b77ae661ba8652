"""audit.record joins the caller's transaction: it commits and rolls back with the change."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import func, select

from fedota.storage import models as m
from fedota.storage.audit import record
from fedota.storage.db import Database


def _events(database: Database) -> list[m.AuditEvent]:
    with database.session() as session:
        return list(session.scalars(select(m.AuditEvent).order_by(m.AuditEvent.id)))


def _record(session: Any, **overrides: Any) -> m.AuditEvent:
    fields: dict[str, Any] = {
        "actor_type": m.ActorType.OPERATOR,
        "actor_id": "op_1",
        "action": "device.accept",
        "target_type": "device",
        "target_id": "dev_1",
    }
    return record(session, **(fields | overrides))


def test_row_commits_with_the_transaction(database: Database) -> None:
    details: dict[str, Any] = {"reason": "looks fine", "labels": {"site": "lyon"}}
    before = dt.datetime.now(dt.UTC)
    with database.transaction() as session:
        _record(session, details=details)
    details["labels"]["site"] = "changed afterwards"

    [event] = _events(database)
    assert (event.actor_type, event.actor_id, event.action) == (
        m.ActorType.OPERATOR,
        "op_1",
        "device.accept",
    )
    assert (event.target_type, event.target_id) == ("device", "dev_1")
    assert event.details == {"reason": "looks fine", "labels": {"site": "lyon"}}
    assert event.at.tzinfo == dt.UTC and event.at >= before - dt.timedelta(seconds=1)


def test_row_rolls_back_with_the_transaction(database: Database) -> None:
    with pytest.raises(RuntimeError, match="change failed"), database.transaction() as session:
        _record(session)
        raise RuntimeError("change failed")
    assert _events(database) == []


def test_record_does_not_commit_on_its_own(database: Database) -> None:
    with database.session() as session:
        _record(session, actor_type="device")
        session.rollback()
    assert _events(database) == []


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"actor_type": "robot"}, ValueError),
        ({"action": "Device Accept"}, ValueError),
        ({"action": "accept"}, ValueError),
        ({"action": "device."}, ValueError),
        ({"action": "device." + "x" * 60}, ValueError),
        ({"actor_id": "x" * 41}, ValueError),
        ({"target_id": "x" * 41}, ValueError),
        ({"target_type": ""}, ValueError),
        ({"details": {"ratio": float("nan")}}, ValueError),
        ({"details": {"when": dt.datetime.now(dt.UTC)}}, TypeError),
    ],
)
def test_bad_entries_are_refused_before_reaching_the_session(
    database: Database, overrides: dict[str, Any], error: type[Exception]
) -> None:
    with database.transaction() as session:
        with pytest.raises(error):
            _record(session, **overrides)
        assert not session.new
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(m.AuditEvent)) == 0
