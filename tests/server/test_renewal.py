"""Fleet.RenewCertificate: same key or a new one; the old certificate stops working once the new
one is used, and a renewal reply lost on the way never locks a device out."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import grpc
import pytest
from coordinator_support import (
    AdminClient,
    EnrolledDevice,
    audit_actions,
    enroll,
    fleet_as,
    make_csr,
    new_key,
    public_channel,
    rpc_error,
    snapshot,
)
from cryptography import x509
from sqlalchemy import select

from fedota.protos.v1 import admin_pb2, fleet_pb2
from fedota.server import Coordinator
from fedota.server.pki import public_key_sha256
from fedota.storage.db import Database
from fedota.storage.models import Device, DeviceCredential

TIMEOUT = 10.0


def _renew(coordinator: Coordinator, device: EnrolledDevice, key: object) -> bytes:
    with fleet_as(coordinator, device) as fleet:
        response = fleet.RenewCertificate(
            fleet_pb2.RenewCertificateRequest(csr_pem=make_csr(key)), timeout=TIMEOUT
        )
    return bytes(response.certificate_pem)


@pytest.mark.parametrize("new_identity", [False, True], ids=["same-key", "new-key"])
def test_renewal_replaces_the_certificate(
    coordinator: Coordinator,
    admin: AdminClient,
    make_token: Callable[..., str],
    database: Database,
    new_identity: bool,
) -> None:
    device = enroll(coordinator, make_token(auto_accept=True))
    key = new_key() if new_identity else device.key
    old = EnrolledDevice(device.key, device.response)

    device.certificate_pem = _renew(coordinator, device, key)
    device.key = key

    certificate = x509.load_pem_x509_certificate(device.certificate_pem)
    assert certificate.subject.rfc4514_string() == f"CN={device.id}"
    assert public_key_sha256(certificate.public_key()) == public_key_sha256(key.public_key())  # type: ignore[arg-type]
    # Until the new certificate is used, the old one still works (the reply may have been lost).
    with fleet_as(coordinator, old) as fleet:
        fleet.Heartbeat(fleet_pb2.HeartbeatRequest(), timeout=TIMEOUT)
    with fleet_as(coordinator, device) as fleet:
        fleet.Heartbeat(fleet_pb2.HeartbeatRequest(), timeout=TIMEOUT)
        assert fleet.GetDevice(fleet_pb2.GetDeviceRequest(), timeout=TIMEOUT).id == device.id
    before = snapshot(database)
    with fleet_as(coordinator, old) as fleet:
        error = rpc_error(lambda: fleet.Heartbeat(fleet_pb2.HeartbeatRequest(), timeout=TIMEOUT))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "was replaced" in error.details()
    assert snapshot(database) == before

    shown = admin.GetDevice(admin_pb2.DeviceRef(id=device.id))
    assert shown.certificate_serial == f"{certificate.serial_number:x}"
    assert shown.public_key_sha256 == public_key_sha256(key.public_key())  # type: ignore[arg-type]
    with database.session() as session:
        credentials = session.scalars(select(DeviceCredential)).all()
        assert sorted(c.revoked_at is None for c in credentials) == [False, True]
    assert audit_actions(database)[-2:] == [
        ("device.renew_certificate", "device", device.id),
        ("device.retire_certificates", "device", device.id),
    ]


def test_a_lost_renewal_reply_does_not_lock_the_device_out(
    coordinator: Coordinator, make_token: Callable[..., str], database: Database
) -> None:
    device = enroll(coordinator, make_token(auto_accept=True))
    lost = EnrolledDevice(device.key, device.response)
    lost.certificate_pem = _renew(coordinator, device, device.key)  # the reply never arrives

    # The device still holds only its old certificate: it keeps working and may renew again.
    with fleet_as(coordinator, device) as fleet:
        fleet.Heartbeat(fleet_pb2.HeartbeatRequest(), timeout=TIMEOUT)
    device.certificate_pem = _renew(coordinator, device, device.key)
    with fleet_as(coordinator, device) as fleet:
        fleet.Heartbeat(fleet_pb2.HeartbeatRequest(), timeout=TIMEOUT)

    # The certificate whose reply was lost was never used, and the second renewal revoked it.
    with fleet_as(coordinator, lost) as fleet:
        error = rpc_error(lambda: fleet.Heartbeat(fleet_pb2.HeartbeatRequest(), timeout=TIMEOUT))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    with database.session() as session:
        live = session.scalars(
            select(DeviceCredential).where(DeviceCredential.revoked_at.is_(None))
        ).all()
    assert [c.certificate_pem.encode() for c in live] == [device.certificate_pem]


def test_a_pending_device_may_renew(
    coordinator: Coordinator, make_token: Callable[..., str]
) -> None:
    device = enroll(coordinator, make_token())

    assert b"BEGIN CERTIFICATE" in _renew(coordinator, device, device.key)


def test_renewing_to_another_devices_key_is_refused(
    coordinator: Coordinator, make_token: Callable[..., str], database: Database
) -> None:
    token = make_token(auto_accept=True)
    first, second = enroll(coordinator, token), enroll(coordinator, token)
    before = snapshot(database)

    error = rpc_error(lambda: _renew(coordinator, second, first.key))

    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error.details() == f"this key is already enrolled as device {first.id}"
    assert snapshot(database) == before


def test_a_new_key_frees_nothing_for_replay(
    coordinator: Coordinator, make_token: Callable[..., str], database: Database
) -> None:
    # The key a device renewed away from still names it: enrolling it again is a replay.
    token = make_token(auto_accept=True, uses=3)
    device = enroll(coordinator, token)
    _renew(coordinator, device, new_key())

    error = rpc_error(lambda: enroll(coordinator, token, key=device.key))

    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    with database.session() as session:
        assert len(session.scalars(select(Device)).all()) == 1


@pytest.mark.parametrize(
    ("lifetime", "due"), [(dt.timedelta(days=30), False), (dt.timedelta(seconds=30), True)]
)
def test_heartbeat_says_when_renewal_is_due(
    start_coordinator: Callable[..., Coordinator], lifetime: dt.timedelta, due: bool
) -> None:
    # With 60 s of backdating, a 30 s certificate is past two thirds of its life at once.
    coordinator = start_coordinator(certificate_lifetime=lifetime)
    with public_channel(coordinator) as channel:
        token = (
            AdminClient(channel, coordinator.admin_token)
            .CreateEnrollmentToken(
                admin_pb2.CreateEnrollmentTokenRequest(ttl_seconds=600, max_uses=1)
            )
            .token
        )
    device = enroll(coordinator, token)

    with fleet_as(coordinator, device) as fleet:
        beat = fleet.Heartbeat(fleet_pb2.HeartbeatRequest(), timeout=TIMEOUT)

    assert beat.renew_certificate is due
    assert beat.certificate_expires_at == device.response.certificate_expires_at
