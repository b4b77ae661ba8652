"""Admin calls need a valid operator API token, and a role high enough for the call."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import grpc
import pytest
from coordinator_support import AdminClient, add_operator, public_channel, rpc_error, snapshot
from sqlalchemy import select, update

from fedota.protos.v1 import admin_pb2
from fedota.server import Coordinator
from fedota.storage.db import Database
from fedota.storage.models import ApiToken, Operator, Role
from fedota.storage.types import utcnow
from fedota.trust import API_KIND, ENROLLMENT_KIND, new_token


def _list(client: AdminClient) -> object:
    return client.ListDevices(admin_pb2.ListDevicesRequest())


def test_a_call_without_a_token_is_unauthenticated(coordinator: Coordinator) -> None:
    with public_channel(coordinator) as channel:
        error = rpc_error(lambda: _list(AdminClient(channel, None)))

    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "needs an API token" in error.details()


@pytest.mark.parametrize(
    "token",
    [
        "",
        "not-a-token",
        "x" * 5000,
        "enrollment",
        "unknown",
    ],
)
def test_a_bad_token_is_unauthenticated(coordinator: Coordinator, token: str) -> None:
    if token == "enrollment":
        token = str(new_token(ENROLLMENT_KIND, coordinator.ca_certificate_pem))
    elif token == "unknown":
        token = str(new_token(API_KIND, coordinator.ca_certificate_pem))

    with public_channel(coordinator) as channel:
        error = rpc_error(lambda: _list(AdminClient(channel, token)))

    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error.details()


@pytest.mark.parametrize("why", ["revoked", "expired", "disabled"])
def test_a_revoked_or_expired_token_or_disabled_operator_is_unauthenticated(
    coordinator: Coordinator, database: Database, why: str
) -> None:
    token = add_operator(database, coordinator.ca_certificate_pem, Role.ADMIN)
    past = utcnow() - dt.timedelta(seconds=1)
    with database.transaction() as session:
        row = session.scalars(select(ApiToken).order_by(ApiToken.created_at.desc())).first()
        assert row is not None
        if why == "revoked":
            row.revoked_at = past
        elif why == "expired":
            row.expires_at = past
        else:
            session.execute(
                update(Operator).where(Operator.id == row.operator_id).values(disabled_at=past)
            )

    with public_channel(coordinator) as channel:
        error = rpc_error(lambda: _list(AdminClient(channel, token)))

    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert why in error.details()


@pytest.mark.parametrize(
    ("call", "request_message"),
    [
        ("AcceptDevice", admin_pb2.DeviceStateChange(id="dev_0123456789abcdef")),
        ("RevokeDevice", admin_pb2.DeviceStateChange(id="dev_0123456789abcdef")),
        (
            "CreateEnrollmentToken",
            admin_pb2.CreateEnrollmentTokenRequest(ttl_seconds=60, max_uses=1),
        ),
        ("RevokeEnrollmentToken", admin_pb2.RevokeEnrollmentTokenRequest(id="tok_0123")),
        ("CreateCohort", admin_pb2.CreateCohortRequest(name="lab")),
    ],
)
def test_a_viewer_cannot_change_anything(
    coordinator: Coordinator, database: Database, call: str, request_message: object
) -> None:
    token = add_operator(database, coordinator.ca_certificate_pem, Role.VIEWER, "vera")
    before = snapshot(database)

    with public_channel(coordinator) as channel:
        error = rpc_error(lambda: getattr(AdminClient(channel, token), call)(request_message))

    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error.details().startswith("operator 'vera' has role viewer;")
    assert error.details().endswith("needs role operator")
    assert snapshot(database) == before


@pytest.mark.parametrize("role", [Role.VIEWER, Role.OPERATOR])
def test_lower_roles_can_read(coordinator: Coordinator, database: Database, role: Role) -> None:
    token = add_operator(database, coordinator.ca_certificate_pem, role)

    with public_channel(coordinator) as channel:
        client = AdminClient(channel, token)
        assert list(client.ListDevices(admin_pb2.ListDevicesRequest()).devices) == []
        assert [c.name for c in client.ListCohorts(admin_pb2.ListCohortsRequest()).cohorts] == [
            "default"
        ]


def test_an_operator_can_mint_tokens(coordinator: Coordinator, database: Database) -> None:
    token = add_operator(database, coordinator.ca_certificate_pem, Role.OPERATOR, "otto")

    with public_channel(coordinator) as channel:
        created = AdminClient(channel, token).CreateEnrollmentToken(
            admin_pb2.CreateEnrollmentTokenRequest(ttl_seconds=60, max_uses=1)
        )

    assert created.info.created_by == "otto"


def test_last_used_is_written_at_most_once_a_minute(
    coordinator: Coordinator, admin: AdminClient, database: Database
) -> None:
    def last_used() -> dt.datetime | None:
        with database.session() as session:
            return session.scalars(select(ApiToken.last_used_at)).one()

    assert last_used() is None
    _list(admin)
    first = last_used()
    _list(admin)
    _list(admin)

    assert first is not None
    assert last_used() == first


def test_every_token_secret_is_stored_hashed_only(
    coordinator: Coordinator, make_token: Callable[..., str], database: Database
) -> None:
    enrollment = make_token()
    dump = repr(snapshot(database))

    assert coordinator.admin_token is not None
    for token in (coordinator.admin_token, enrollment):
        assert token.split(".")[1] not in dump
