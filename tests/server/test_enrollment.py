"""Fleet.Enroll against a real coordinator: accepted, pending, and every refused token."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import grpc
import pytest
from coordinator_support import (
    AdminClient,
    audit_actions,
    enroll,
    new_key,
    rpc_error,
    snapshot,
)
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from sqlalchemy import select, update

from fedota.protos.v1 import admin_pb2, device_pb2
from fedota.server import Coordinator
from fedota.storage.db import Database
from fedota.storage.models import Device, EnrollmentToken
from fedota.storage.types import utcnow
from fedota.trust import ENROLLMENT_KIND, new_token, parse_token


@pytest.mark.parametrize(
    ("auto_accept", "state"),
    [(True, device_pb2.DEVICE_STATE_ACCEPTED), (False, device_pb2.DEVICE_STATE_PENDING)],
)
def test_enroll_issues_a_certificate_naming_the_device(
    coordinator: Coordinator,
    make_token: Callable[..., str],
    database: Database,
    auto_accept: bool,
    state: int,
) -> None:
    device = enroll(coordinator, make_token(auto_accept=auto_accept))

    response = device.response
    assert response.device_id.startswith("dev_")
    assert response.state == state
    assert response.device_host == ""
    assert response.device_port == coordinator.device.port
    assert response.heartbeat_interval_seconds == 30
    assert response.ca_certificate_pem == coordinator.ca_certificate_pem
    certificate = x509.load_pem_x509_certificate(response.certificate_pem)
    ca = x509.load_pem_x509_certificate(response.ca_certificate_pem)
    certificate.verify_directly_issued_by(ca)
    assert certificate.subject.rfc4514_string() == f"CN={response.device_id}"
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        f"urn:fedota:device:{response.device_id}"
    ]
    eku = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    lifetime = certificate.not_valid_after_utc - utcnow()
    assert dt.timedelta(days=29, hours=23) < lifetime <= dt.timedelta(days=30)
    assert response.certificate_expires_at.ToDatetime(dt.UTC) == certificate.not_valid_after_utc
    assert audit_actions(database)[-1] == ("device.enroll", "device", response.device_id)


def test_enroll_takes_cohort_and_labels_from_the_token(
    coordinator: Coordinator, admin: AdminClient, make_token: Callable[..., str], database: Database
) -> None:
    admin.CreateCohort(admin_pb2.CreateCohortRequest(name="lab"))
    token = make_token(cohort="lab", labels={"site": "berlin", "rack": "7"})

    device = enroll(coordinator, token, labels={"site": "paris", "owner": "qa"})

    shown = admin.GetDevice(admin_pb2.DeviceRef(id=device.id))
    assert shown.cohort == "lab"
    assert dict(shown.labels) == {"site": "berlin", "rack": "7", "owner": "qa"}
    assert shown.hardware.cpu_model == "test cpu"
    with database.session() as session:
        row = session.scalars(select(EnrollmentToken)).one()
        assert row.uses == 1


def test_the_bare_secret_is_accepted_too(
    coordinator: Coordinator, make_token: Callable[..., str]
) -> None:
    secret = parse_token(make_token(), ENROLLMENT_KIND).secret

    assert enroll(coordinator, secret).id.startswith("dev_")


def test_uses_are_exhausted_on_the_third_enrollment_of_a_two_use_token(
    coordinator: Coordinator, make_token: Callable[..., str], database: Database
) -> None:
    token = make_token(uses=2)
    enroll(coordinator, token)
    enroll(coordinator, token)
    before = snapshot(database)

    error = rpc_error(lambda: enroll(coordinator, token))

    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error.details() == "enrollment token has been used 2 of 2 times"
    assert snapshot(database) == before


def test_an_expired_token_is_refused_with_its_expiry(
    coordinator: Coordinator, make_token: Callable[..., str], database: Database
) -> None:
    token = make_token()
    expired_at = utcnow().replace(microsecond=0) - dt.timedelta(minutes=1)
    with database.transaction() as session:
        session.execute(update(EnrollmentToken).values(expires_at=expired_at))
    before = snapshot(database)

    error = rpc_error(lambda: enroll(coordinator, token))

    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error.details() == (
        f"enrollment token fdte1.{parse_token(token, ENROLLMENT_KIND).secret[:4]}… "
        f"expired at {expired_at.isoformat()}"
    )
    assert snapshot(database) == before


def test_an_unknown_token_is_refused(coordinator: Coordinator, database: Database) -> None:
    before = snapshot(database)
    unknown = str(new_token(ENROLLMENT_KIND, coordinator.ca_certificate_pem))

    error = rpc_error(lambda: enroll(coordinator, unknown))

    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error.details() == "unknown enrollment token"
    assert snapshot(database) == before


def test_a_token_for_another_coordinator_is_refused(
    coordinator: Coordinator, make_token: Callable[..., str], database: Database
) -> None:
    token = parse_token(make_token(), ENROLLMENT_KIND)
    elsewhere = f"{token.kind}.{token.secret}.{'0' * 64}"
    before = snapshot(database)

    error = rpc_error(lambda: enroll(coordinator, elsewhere))

    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "another coordinator" in error.details()
    assert snapshot(database) == before


def test_a_revoked_token_is_refused(
    coordinator: Coordinator, admin: AdminClient, make_token: Callable[..., str], database: Database
) -> None:
    token = make_token()
    info = admin.ListEnrollmentTokens(admin_pb2.ListEnrollmentTokensRequest()).tokens[0]
    admin.RevokeEnrollmentToken(admin_pb2.RevokeEnrollmentTokenRequest(id=info.id))
    before = snapshot(database)

    error = rpc_error(lambda: enroll(coordinator, token))

    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error.details().endswith("was revoked")
    assert snapshot(database) == before


def test_a_replayed_key_is_already_enrolled_and_takes_no_use(
    coordinator: Coordinator, make_token: Callable[..., str], database: Database
) -> None:
    token = make_token(uses=5)
    key = new_key()
    first = enroll(coordinator, token, key=key)
    before = snapshot(database)

    error = rpc_error(lambda: enroll(coordinator, token, key=key))

    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error.details() == f"this key is already enrolled as device {first.id}"
    assert snapshot(database) == before
    with database.session() as session:
        assert session.scalars(select(EnrollmentToken.uses)).one() == 1
        assert len(session.scalars(select(Device)).all()) == 1
