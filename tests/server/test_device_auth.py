"""Device calls are authenticated by the mTLS certificate and gated by the device's state."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable

import grpc
import pytest
from coordinator_support import (
    AdminClient,
    device_channel,
    enroll,
    fleet_as,
    make_csr,
    new_key,
    public_channel,
    rpc_error,
    snapshot,
)
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from fedota.protos.v1 import admin_pb2, device_pb2, fleet_pb2, fleet_pb2_grpc
from fedota.server import Coordinator
from fedota.server.auth import authenticate_device
from fedota.server.errors import Unauthenticated
from fedota.server.pki import create_ca, issue_device_certificate
from fedota.storage.db import Database
from fedota.storage.types import utcnow

TIMEOUT = 10.0
DEVICE_CALLS: dict[str, Callable[[fleet_pb2_grpc.FleetStub], object]] = {
    "Heartbeat": lambda s: s.Heartbeat(fleet_pb2.HeartbeatRequest(), timeout=TIMEOUT),
    "GetDevice": lambda s: s.GetDevice(fleet_pb2.GetDeviceRequest(), timeout=TIMEOUT),
    "RenewCertificate": lambda s: s.RenewCertificate(
        fleet_pb2.RenewCertificateRequest(csr_pem=make_csr(new_key())), timeout=TIMEOUT
    ),
}


@pytest.mark.parametrize("call", DEVICE_CALLS)
def test_device_calls_on_the_public_port_are_unauthenticated(
    coordinator: Coordinator, call: str
) -> None:
    with public_channel(coordinator) as channel:
        error = rpc_error(lambda: DEVICE_CALLS[call](fleet_pb2_grpc.FleetStub(channel)))

    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error.details() == "this call needs the device certificate: use the device port"


def test_the_device_port_refuses_a_handshake_without_client_certificate(
    coordinator: Coordinator,
) -> None:
    with device_channel(coordinator) as channel:
        error = rpc_error(lambda: DEVICE_CALLS["Heartbeat"](fleet_pb2_grpc.FleetStub(channel)))

    assert error.code() == grpc.StatusCode.UNAVAILABLE


def test_the_device_port_refuses_a_certificate_from_another_ca(
    coordinator: Coordinator, make_token: Callable[..., str], database: Database
) -> None:
    device = enroll(coordinator, make_token(auto_accept=True))
    now = utcnow()
    other_ca = create_ca("elsewhere", dt.timedelta(days=1), now)
    forged = issue_device_certificate(
        other_ca, device.key.public_key(), device.id, now, now + dt.timedelta(hours=1)
    )
    before = snapshot(database)

    with device_channel(
        coordinator, device.key, forged.public_bytes(serialization.Encoding.PEM)
    ) as channel:
        error = rpc_error(lambda: DEVICE_CALLS["Heartbeat"](fleet_pb2_grpc.FleetStub(channel)))

    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert snapshot(database) == before


def test_a_pending_device_may_heartbeat_but_not_read_its_record(
    coordinator: Coordinator, make_token: Callable[..., str]
) -> None:
    device = enroll(coordinator, make_token())

    with fleet_as(coordinator, device) as fleet:
        beat = fleet.Heartbeat(fleet_pb2.HeartbeatRequest(uptime_seconds=5), timeout=TIMEOUT)
        error = rpc_error(lambda: fleet.GetDevice(fleet_pb2.GetDeviceRequest(), timeout=TIMEOUT))

    assert beat.state == device_pb2.DEVICE_STATE_PENDING
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error.details() == f"device {device.id} is pending approval"


def test_an_accepted_device_reads_its_record_and_heartbeats_show_up(
    coordinator: Coordinator, admin: AdminClient, make_token: Callable[..., str]
) -> None:
    device = enroll(coordinator, make_token())
    admin.AcceptDevice(admin_pb2.DeviceStateChange(id=device.id))

    with fleet_as(coordinator, device) as fleet:
        beat = fleet.Heartbeat(
            fleet_pb2.HeartbeatRequest(model_version="mv_1", uptime_seconds=9), timeout=TIMEOUT
        )
        own = fleet.GetDevice(fleet_pb2.GetDeviceRequest(), timeout=TIMEOUT)

    assert beat.state == device_pb2.DEVICE_STATE_ACCEPTED
    assert beat.heartbeat_interval_seconds == 30
    assert not beat.renew_certificate
    assert own.id == device.id
    assert own.state == device_pb2.DEVICE_STATE_ACCEPTED
    assert own.model_version == "mv_1"
    assert own.HasField("last_seen")
    assert own.certificate_serial
    certificate = x509.load_pem_x509_certificate(device.certificate_pem)
    assert own.certificate_serial == f"{certificate.serial_number:x}"


@pytest.mark.parametrize(
    ("verb", "state"), [("RevokeDevice", "revoked"), ("RejectDevice", "rejected")]
)
@pytest.mark.parametrize("call", DEVICE_CALLS)
def test_a_cut_off_device_is_refused_on_every_call(
    coordinator: Coordinator,
    admin: AdminClient,
    make_token: Callable[..., str],
    database: Database,
    verb: str,
    state: str,
    call: str,
) -> None:
    device = enroll(coordinator, make_token())
    getattr(admin, verb)(admin_pb2.DeviceStateChange(id=device.id, reason="lost in transit"))
    before = snapshot(database)

    with fleet_as(coordinator, device) as fleet:
        error = rpc_error(lambda: DEVICE_CALLS[call](fleet))

    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error.details() == f"device {device.id} is {state}: lost in transit"
    assert snapshot(database) == before


def test_an_expired_certificate_is_refused(
    start_coordinator: Callable[..., Coordinator], database: Database
) -> None:
    coordinator = start_coordinator(
        certificate_lifetime=dt.timedelta(seconds=1),
        certificate_backdate=dt.timedelta(0),
    )
    with public_channel(coordinator) as channel:
        token = (
            AdminClient(channel, coordinator.admin_token)
            .CreateEnrollmentToken(
                admin_pb2.CreateEnrollmentTokenRequest(
                    ttl_seconds=600, max_uses=1, auto_accept=True
                )
            )
            .token
        )
    device = enroll(coordinator, token)
    expires = device.response.certificate_expires_at.ToDatetime(dt.UTC)
    deadline = time.monotonic() + 5
    while utcnow() <= expires + dt.timedelta(seconds=1) and time.monotonic() < deadline:
        time.sleep(0.1)
    before = snapshot(database)

    with fleet_as(coordinator, device) as fleet:
        error = rpc_error(lambda: DEVICE_CALLS["Heartbeat"](fleet))

    # The TLS handshake itself refuses it: the device learns from its own copy that it expired.
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert snapshot(database) == before


def test_the_service_also_refuses_a_certificate_past_its_expiry(
    coordinator: Coordinator, make_token: Callable[..., str], database: Database
) -> None:
    # Behind a TLS terminator the handshake would not check expiry; the lookup does too.
    device = enroll(coordinator, make_token(auto_accept=True))
    later = device.response.certificate_expires_at.ToDatetime(dt.UTC) + dt.timedelta(seconds=1)

    with database.session() as session, pytest.raises(Unauthenticated, match="expired at"):
        authenticate_device(session, device.certificate_pem, later, allow_pending=True)
