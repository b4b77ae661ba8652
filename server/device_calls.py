"""The Fleet calls a device makes over mTLS: Heartbeat, GetDevice, RenewCertificate."""

from __future__ import annotations

import datetime as dt

from cryptography.hazmat.primitives import serialization
from sqlalchemy.orm import Session

from fedota.protos.v1 import device_pb2, fleet_pb2
from fedota.server import audit, validation
from fedota.server.auth import authenticate_device
from fedota.server.convert import STATE_TO_PROTO, load_device_messages, timestamp
from fedota.server.credentials import key_owner, new_credential, retire_credentials
from fedota.server.csr import parse_device_csr
from fedota.server.errors import KeyAlreadyEnrolled
from fedota.server.runtime import Runtime
from fedota.storage.models import ActorType, DeviceCredential
from fedota.storage.models.fleet import DeviceState


def heartbeat(
    runtime: Runtime, certificate_pem: bytes | None, request: fleet_pb2.HeartbeatRequest
) -> fleet_pb2.HeartbeatResponse:
    """Record liveness and status. Not a state change, so no audit row.

    Raises:
        Unauthenticated, PermissionDenied: see `authenticate_device` (pending devices may call).
        InvalidArgument: model_version too long or with control characters.
    """
    now = runtime.clock()
    with runtime.database.transaction() as session:
        device, credential = authenticate_device(session, certificate_pem, now, allow_pending=True)
        _retire_predecessors(session, device.id, credential, now)
        model_version = validation.text(
            "model_version", request.model_version, runtime.limits.max_profile_string_chars
        )
        device.last_seen_at = now
        device.status = {
            "model_version": model_version,
            "uptime_seconds": request.uptime_seconds,
            "available_memory_bytes": request.available_memory_bytes,
        }
        response = fleet_pb2.HeartbeatResponse(
            state=STATE_TO_PROTO[device.state],  # type: ignore[arg-type]
            server_time=timestamp(now),
            heartbeat_interval_seconds=int(runtime.limits.heartbeat_interval.total_seconds()),
            certificate_expires_at=timestamp(credential.not_after),
            renew_certificate=runtime.renewal_due(credential.not_before, credential.not_after, now),
        )
        if device.state == DeviceState.ACCEPTED:
            # Only accepted devices are told where the federation is (their key is registered).
            response.federation_port = runtime.federation_port
    return response


def own_device(runtime: Runtime, certificate_pem: bytes | None) -> device_pb2.Device:
    """The calling device's record.

    Raises:
        Unauthenticated, PermissionDenied: see `authenticate_device` (accepted devices only).
    """
    now = runtime.clock()
    with runtime.database.session() as session:
        device, _ = authenticate_device(session, certificate_pem, now, allow_pending=False)
        return load_device_messages(session, [device])[0]


def renew_certificate(
    runtime: Runtime, certificate_pem: bytes | None, request: fleet_pb2.RenewCertificateRequest
) -> fleet_pb2.RenewCertificateResponse:
    """A new certificate for the same or a new key, with a `device.renew_certificate` audit row.

    The presented certificate stays valid until the new one is first used (see
    `retire_credentials`); certificates that earlier renewals issued but the device never used
    are revoked here.

    Raises:
        InvalidArgument: the CSR is malformed, oversized, badly signed or not an allowed EC key.
        Unauthenticated, PermissionDenied: see `authenticate_device` (pending devices may call).
        KeyAlreadyEnrolled: the new key belongs to another device.
    """
    key = parse_device_csr(request.csr_pem, runtime.limits.max_csr_bytes)
    now = runtime.clock()
    with runtime.database.transaction() as session:
        device, old = authenticate_device(session, certificate_pem, now, allow_pending=True)
        owner = key_owner(session, key.sha256)
        if owner is not None and owner != device.id:
            raise KeyAlreadyEnrolled(owner)
        unused = retire_credentials(session, device.id, now, keep=old.id, older_only=False)
        certificate = runtime.issue_certificate(key.public_key, device.id, now)
        credential = new_credential(device.id, certificate, key.sha256)
        session.add(credential)
        new_key = key.sha256 != device.public_key_sha256
        device.public_key_sha256 = key.sha256
        device.public_key_pem = key.pem
        audit.record(
            session,
            audit.Actor(ActorType.DEVICE, device.id),
            "device.renew_certificate",
            "device",
            device.id,
            {
                "previous_serial": old.serial,
                "serial": credential.serial,
                "new_key": new_key,
                "revoked_unused_serials": unused,
            },
        )
    return fleet_pb2.RenewCertificateResponse(
        certificate_pem=certificate.public_bytes(serialization.Encoding.PEM),
        certificate_expires_at=timestamp(credential.not_after),
    )


def _retire_predecessors(
    session: Session, device_id: str, credential: DeviceCredential, now: dt.datetime
) -> None:
    """The first call with a renewed certificate retires the ones before it (one audit row)."""
    retired = retire_credentials(session, device_id, now, keep=credential.id, older_only=True)
    if retired:
        audit.record(
            session,
            audit.Actor(ActorType.DEVICE, device_id),
            "device.retire_certificates",
            "device",
            device_id,
            {"serials": retired, "in_use_serial": credential.serial},
        )
