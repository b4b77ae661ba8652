"""Devices as operators see them: list (paged), show, and the accept / reject / revoke moves."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
from dataclasses import dataclass

from sqlalchemy import and_, or_, select, update

from fedota.protos.v1 import admin_pb2, device_pb2
from fedota.server import audit, validation
from fedota.server.cohorts import default_fleet, find_cohort
from fedota.server.convert import PROTO_TO_STATE, load_device_messages
from fedota.server.errors import InvalidArgument, NotFound, TransitionNotAllowed
from fedota.server.runtime import Runtime
from fedota.storage.models import Device, DeviceCredential, DeviceState

DEVICE_ID_PREFIX = "dev"


@dataclass(frozen=True)
class Move:
    """One operator move on a device: from which states, to which, and its words."""

    verb: str
    allowed_from: frozenset[DeviceState]
    to: DeviceState
    participle: str
    # Cutting a device off also revokes its certificates.
    revokes_credentials: bool


ACCEPT = Move("accept", frozenset({DeviceState.PENDING}), DeviceState.ACCEPTED, "accepted", False)
REJECT = Move("reject", frozenset({DeviceState.PENDING}), DeviceState.REJECTED, "rejected", True)
REVOKE = Move(
    "revoke",
    frozenset({DeviceState.PENDING, DeviceState.ACCEPTED}),
    DeviceState.REVOKED,
    "revoked",
    True,
)


def _filter_tag(state: DeviceState | None, cohort: str) -> str:
    return hashlib.sha256(f"{state}|{cohort}".encode()).hexdigest()[:12]


def _encode_page_token(device: Device, tag: str) -> str:
    payload = {"e": device.enrolled_at.isoformat(), "i": device.id, "f": tag}
    return base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode()


def _decode_page_token(text: str, tag: str, max_chars: int) -> tuple[dt.datetime, str]:
    """Raises:
    InvalidArgument: not a token this listing issued (or issued for other filters).
    """
    try:
        if len(text) > max_chars:
            raise ValueError("too long")
        payload = json.loads(base64.urlsafe_b64decode(text.encode("ascii")))
        enrolled_at = dt.datetime.fromisoformat(payload["e"])
        device_id = str(payload["i"])
        same_filters = payload["f"] == tag
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeError) as exc:
        raise InvalidArgument("page_token", "is not a page token this listing returned") from exc
    if not same_filters or enrolled_at.tzinfo is None:
        raise InvalidArgument("page_token", "belongs to a listing with other filters; start again")
    return enrolled_at, device_id


def list_devices(
    runtime: Runtime, request: admin_pb2.ListDevicesRequest
) -> admin_pb2.ListDevicesResponse:
    """One page of devices, oldest enrollment first.

    Raises:
        InvalidArgument: an unknown state, a bad cohort name, page size or page token.
        NotFound: the cohort does not exist.
    """
    limits = runtime.limits
    state: DeviceState | None = None
    if request.state != device_pb2.DEVICE_STATE_UNSPECIFIED:
        if request.state not in PROTO_TO_STATE:
            raise InvalidArgument("state", f"{request.state} is not a DeviceState value")
        state = PROTO_TO_STATE[request.state]
    if request.cohort:
        validation.cohort_name("cohort", request.cohort)
    if request.page_size > limits.max_page_size:
        raise InvalidArgument(
            "page_size", f"must be at most {limits.max_page_size} (got {request.page_size})"
        )
    size = request.page_size or limits.default_page_size
    tag = _filter_tag(state, request.cohort)
    after = (
        _decode_page_token(request.page_token, tag, limits.max_page_token_chars)
        if request.page_token
        else None
    )
    with runtime.database.session() as session:
        fleet = default_fleet(session)
        query = select(Device).where(Device.fleet_id == fleet.id)
        if state is not None:
            query = query.where(Device.state == state)
        if request.cohort:
            query = query.where(Device.cohort_id == find_cohort(session, fleet, request.cohort).id)
        if after is not None:
            enrolled_at, device_id = after
            query = query.where(
                or_(
                    Device.enrolled_at > enrolled_at,
                    and_(Device.enrolled_at == enrolled_at, Device.id > device_id),
                )
            )
        devices = list(
            session.scalars(query.order_by(Device.enrolled_at, Device.id).limit(size + 1))
        )
        page, more = devices[:size], len(devices) > size
        return admin_pb2.ListDevicesResponse(
            devices=load_device_messages(session, page),
            next_page_token=_encode_page_token(page[-1], tag) if more else "",
        )


def get_device(runtime: Runtime, request: admin_pb2.DeviceRef) -> device_pb2.Device:
    """Raises:
    InvalidArgument: the id is empty or malformed.
    NotFound: no such device.
    """
    device_id = validation.identifier("id", request.id, DEVICE_ID_PREFIX, runtime.limits)
    with runtime.database.session() as session:
        device = session.get(Device, device_id)
        if device is None:
            raise NotFound(f"device {device_id} does not exist")
        return load_device_messages(session, [device])[0]


def change_state(
    runtime: Runtime, actor: audit.Actor, move: Move, request: admin_pb2.DeviceStateChange
) -> device_pb2.Device:
    """Apply `move` in one transaction with one `device.<verb>` audit row.

    Raises:
        InvalidArgument: the id is empty or malformed, or the reason too long.
        NotFound: no such device.
        TransitionNotAllowed: the device's state does not allow the move.
    """
    device_id = validation.identifier("id", request.id, DEVICE_ID_PREFIX, runtime.limits)
    reason = validation.text(
        "reason", request.reason, runtime.limits.max_reason_chars, multiline=True
    )
    now = runtime.clock()
    with runtime.database.transaction() as session:
        device = session.get(Device, device_id)
        if device is None:
            raise NotFound(f"device {device_id} does not exist")
        previous = device.state
        # Conditional, so concurrent moves on one device (from any replica) cannot both apply.
        moved = session.execute(
            update(Device)
            .where(Device.id == device_id, Device.state.in_(move.allowed_from))
            .values(state=move.to, state_reason="" if move.to == DeviceState.ACCEPTED else reason)
            .execution_options(synchronize_session=False)
        ).rowcount
        if moved != 1:
            session.refresh(device)
            raise TransitionNotAllowed(device_id, device.state.value, move.participle)
        if move.revokes_credentials:
            session.execute(
                update(DeviceCredential)
                .where(
                    DeviceCredential.device_id == device_id, DeviceCredential.revoked_at.is_(None)
                )
                .values(revoked_at=now)
                .execution_options(synchronize_session=False)
            )
        audit.record(
            session,
            actor,
            f"device.{move.verb}",
            "device",
            device_id,
            {"from": previous.value, "to": move.to.value, "reason": reason},
        )
        session.flush()
        session.refresh(device)
        return load_device_messages(session, [device])[0]
