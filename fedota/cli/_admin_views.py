"""Admin API messages as JSON objects (for `--json`) and as table cells (for people)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from google.protobuf.message import Message

from fedota.cli.output import format_labels, human_bytes, iso, relative_time
from fedota.protos.v1 import admin_pb2, device_pb2

DEVICE_STATES = ("pending", "accepted", "rejected", "revoked")
DEVICE_COLUMNS = ("ID", "STATE", "COHORT", "CLASS", "LAST SEEN", "MODEL", "CERT EXPIRES")
TOKEN_COLUMNS = ("ID", "COHORT", "USES", "EXPIRES", "AUTO-ACCEPT", "STATUS", "LABELS")
COHORT_COLUMNS = ("NAME", "DEVICES", "DESCRIPTION", "CREATED")


def state_name(state: int) -> str:
    """DEVICE_STATE_PENDING -> `pending`."""
    return str(device_pb2.DeviceState.Name(state)).removeprefix("DEVICE_STATE_").lower()


def state_value(name: str) -> int:
    """`pending` -> DEVICE_STATE_PENDING (names from DEVICE_STATES)."""
    return int(device_pb2.DeviceState.Value(f"DEVICE_STATE_{name.upper()}"))


def timestamp(message: Message, field: str) -> dt.datetime | None:
    """A Timestamp field as an aware UTC datetime, None when unset."""
    if not message.HasField(field):
        return None
    value: dt.datetime = getattr(message, field).ToDatetime(tzinfo=dt.UTC)
    return value


def device_json(device: device_pb2.Device, *, hardware: bool = False) -> dict[str, Any]:
    """A device as a JSON object; `hardware` adds the profile it reported at enrollment."""
    document: dict[str, Any] = {
        "id": device.id,
        "state": state_name(device.state),
        "state_reason": device.state_reason or None,
        "fleet": device.fleet,
        "cohort": device.cohort,
        "hardware_class": device.hardware_class,
        "labels": dict(sorted(device.labels.items())),
        "enrolled_at": iso(timestamp(device, "enrolled_at")),
        "last_seen": iso(timestamp(device, "last_seen")),
        "model_version": device.model_version or None,
        "certificate_serial": device.certificate_serial or None,
        "certificate_expires_at": iso(timestamp(device, "certificate_expires_at")),
        "public_key_sha256": device.public_key_sha256 or None,
    }
    if hardware:
        profile = device.hardware
        document["hardware"] = {f.name: getattr(profile, f.name) for f in profile.DESCRIPTOR.fields}
    return document


def device_row(device: device_pb2.Device, now: dt.datetime) -> list[str]:
    """One row under DEVICE_COLUMNS."""
    return [
        device.id,
        state_name(device.state),
        device.cohort or "-",
        device.hardware_class or "-",
        relative_time(timestamp(device, "last_seen"), now),
        device.model_version or "-",
        _expiry(timestamp(device, "certificate_expires_at"), now),
    ]


def device_fields(device: device_pb2.Device, now: dt.datetime) -> dict[str, str]:
    """Everything `devices show` prints, name -> value."""
    profile = device.hardware
    return {
        "ID": device.id,
        "State": state_name(device.state),
        "Reason": device.state_reason or "-",
        "Fleet": device.fleet or "-",
        "Cohort": device.cohort or "-",
        "Labels": format_labels(device.labels),
        "Enrolled": when(timestamp(device, "enrolled_at"), now),
        "Last seen": when(timestamp(device, "last_seen"), now, missing="never"),
        "Model": device.model_version or "-",
        "Certificate": device.certificate_serial or "-",
        "Cert expires": when(timestamp(device, "certificate_expires_at"), now),
        "Public key SHA-256": device.public_key_sha256 or "-",
        "Hardware class": device.hardware_class or "-",
        "CPU": profile.cpu_model or "-",
        "CPU cores": str(profile.cpu_count) if profile.cpu_count else "-",
        "Memory": human_bytes(profile.memory_bytes) if profile.memory_bytes else "-",
        "OS": profile.os or "-",
        "Python": profile.python_version or "-",
        "Torch": profile.torch_version or "-",
        "Daemon": profile.daemon_version or "-",
    }


def token_json(token: admin_pb2.EnrollmentToken) -> dict[str, Any]:
    """An enrollment token's record (never its secret) as a JSON object."""
    return {
        "id": token.id,
        "fleet": token.fleet,
        "cohort": token.cohort,
        "created_at": iso(timestamp(token, "created_at")),
        "created_by": token.created_by or None,
        "expires_at": iso(timestamp(token, "expires_at")),
        "max_uses": token.max_uses,
        "uses": token.uses,
        "auto_accept": token.auto_accept,
        "revoked": token.revoked,
        "labels": dict(sorted(token.labels.items())),
    }


def token_status(token: admin_pb2.EnrollmentToken, now: dt.datetime) -> str:
    """`active`, or why the token no longer enrolls anything."""
    expires = timestamp(token, "expires_at")
    if token.revoked:
        return "revoked"
    if expires is not None and expires <= now:
        return "expired"
    if token.max_uses and token.uses >= token.max_uses:
        return "used up"
    return "active"


def token_row(token: admin_pb2.EnrollmentToken, now: dt.datetime) -> list[str]:
    """One row under TOKEN_COLUMNS."""
    return [
        token.id,
        token.cohort or "-",
        f"{token.uses}/{token.max_uses}",
        relative_time(timestamp(token, "expires_at"), now, missing="-"),
        "yes" if token.auto_accept else "no",
        token_status(token, now),
        format_labels(token.labels),
    ]


def cohort_json(cohort: admin_pb2.Cohort) -> dict[str, Any]:
    """A cohort as a JSON object."""
    return {
        "name": cohort.name,
        "fleet": cohort.fleet,
        "description": cohort.description,
        "device_count": cohort.device_count,
        "created_at": iso(timestamp(cohort, "created_at")),
    }


def cohort_row(cohort: admin_pb2.Cohort, now: dt.datetime) -> list[str]:
    """One row under COHORT_COLUMNS."""
    return [
        cohort.name,
        str(cohort.device_count),
        cohort.description or "-",
        relative_time(timestamp(cohort, "created_at"), now, missing="-"),
    ]


def _expiry(when: dt.datetime | None, now: dt.datetime) -> str:
    if when is None:
        return "-"
    text = relative_time(when, now)
    return f"expired {text}" if when <= now else text


def when(when: dt.datetime | None, now: dt.datetime, *, missing: str = "-") -> str:
    """`2026-11-25 03:48:00 UTC (3h ago)`, or `missing` for None."""
    if when is None:
        return missing
    return f"{when:%Y-%m-%d %H:%M:%S} UTC ({relative_time(when, now)})"
