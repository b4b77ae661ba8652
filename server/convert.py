"""Rows to protobuf messages (and the few enums back)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import select
from sqlalchemy.orm import Session

from fedota.protos.v1 import admin_pb2, device_pb2
from fedota.storage.models import (
    Cohort,
    Device,
    DeviceCredential,
    DeviceState,
    EnrollmentToken,
    Fleet,
)

STATE_TO_PROTO: dict[DeviceState, int] = {
    DeviceState.PENDING: device_pb2.DEVICE_STATE_PENDING,
    DeviceState.ACCEPTED: device_pb2.DEVICE_STATE_ACCEPTED,
    DeviceState.REJECTED: device_pb2.DEVICE_STATE_REJECTED,
    DeviceState.REVOKED: device_pb2.DEVICE_STATE_REVOKED,
}
PROTO_TO_STATE: dict[int, DeviceState] = {value: key for key, value in STATE_TO_PROTO.items()}


def timestamp(value: dt.datetime) -> Timestamp:
    """A protobuf Timestamp of an aware datetime."""
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def current_credentials(session: Session, device_ids: Sequence[str]) -> dict[str, DeviceCredential]:
    """Each device's newest unrevoked credential (devices without one are absent)."""
    if not device_ids:
        return {}
    rows = session.scalars(
        select(DeviceCredential)
        .where(DeviceCredential.device_id.in_(device_ids), DeviceCredential.revoked_at.is_(None))
        .order_by(DeviceCredential.not_after)
    )
    # Ascending order: the newest credential of each device is written last and wins.
    return {credential.device_id: credential for credential in rows}


def device_message(
    device: Device, fleet_name: str, cohort_name: str, credential: DeviceCredential | None
) -> device_pb2.Device:
    """The Device message; certificate fields come from `credential` (None: left unset)."""
    profile = device.hardware_profile or {}
    message = device_pb2.Device(
        id=device.id,
        state=STATE_TO_PROTO[device.state],  # type: ignore[arg-type]
        fleet=fleet_name,
        cohort=cohort_name,
        hardware_class=device.hardware_class,
        hardware=device_pb2.HardwareProfile(
            **{
                k: v
                for k, v in profile.items()
                if k in device_pb2.HardwareProfile.DESCRIPTOR.fields_by_name
            }
        ),
        labels=device.labels or {},
        enrolled_at=timestamp(device.enrolled_at),
        model_version=str((device.status or {}).get("model_version", "")),
        public_key_sha256=device.public_key_sha256,
        state_reason=device.state_reason,
    )
    if device.last_seen_at is not None:
        message.last_seen.CopyFrom(timestamp(device.last_seen_at))
    if credential is not None:
        message.certificate_serial = credential.serial
        message.certificate_expires_at.CopyFrom(timestamp(credential.not_after))
    return message


def load_device_messages(session: Session, devices: Sequence[Device]) -> list[device_pb2.Device]:
    """Messages for `devices` with their fleet, cohort and current certificate, in three queries."""
    credentials = current_credentials(session, [d.id for d in devices])
    cohort_ids = {d.cohort_id for d in devices}
    names = {
        cohort_id: (fleet_name, cohort_name)
        for cohort_id, fleet_name, cohort_name in session.execute(
            select(Cohort.id, Fleet.name, Cohort.name)
            .join(Fleet, Cohort.fleet_id == Fleet.id)
            .where(Cohort.id.in_(cohort_ids))
        )
    }
    return [device_message(d, *names[d.cohort_id], credentials.get(d.id)) for d in devices]


def token_message(
    token: EnrollmentToken, fleet_name: str, created_by: str
) -> admin_pb2.EnrollmentToken:
    """The EnrollmentToken message (never the secret: only its hash is stored)."""
    return admin_pb2.EnrollmentToken(
        id=token.id,
        fleet=fleet_name,
        cohort=token.cohort.name,
        created_at=timestamp(token.created_at),
        expires_at=timestamp(token.expires_at),
        max_uses=token.max_uses,
        uses=token.uses,
        auto_accept=token.auto_accept,
        revoked=token.revoked_at is not None,
        created_by=created_by,
        labels=token.labels or {},
    )
