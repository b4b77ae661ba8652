"""Fleet.Enroll: an enrollment token and a CSR become a device and its first certificate."""

from __future__ import annotations

import datetime as dt
import re

from cryptography.hazmat.primitives import serialization
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fedota.protos.v1 import fleet_pb2
from fedota.server import audit, validation
from fedota.server.convert import STATE_TO_PROTO, timestamp
from fedota.server.credentials import key_owner, new_credential
from fedota.server.csr import DeviceKey, parse_device_csr
from fedota.server.errors import InvalidArgument, KeyAlreadyEnrolled, Unauthenticated
from fedota.server.releases import ROOT
from fedota.server.runtime import Runtime
from fedota.storage.models import ActorType, Device, DeviceState, EnrollmentToken
from fedota.storage.types import new_id
from fedota.trust import ENROLLMENT_KIND, Token, TokenFormatError, parse_token

_BARE_SECRET = re.compile(r"^[A-Za-z0-9_-]{32,64}$")


def parse_enrollment_token(text: str, runtime: Runtime) -> Token:
    """The whole `fdte1.<secret>.<ca>` string, or only its secret.

    Raises:
        InvalidArgument: empty, too long, or not an enrollment token.
        Unauthenticated: the token pins another coordinator's CA.
    """
    validation.text("token", text, runtime.limits.max_token_chars, required=True)
    if _BARE_SECRET.match(text):
        return Token(ENROLLMENT_KIND, text, runtime.ca.sha256)
    try:
        token = parse_token(text, ENROLLMENT_KIND)
    except TokenFormatError as exc:
        raise InvalidArgument("token", str(exc)) from exc
    if token.ca_sha256 != runtime.ca.sha256:
        raise Unauthenticated(
            "this enrollment token was made for another coordinator (its CA pin differs)"
        )
    return token


def check_token_usable(row: EnrollmentToken, token: Token, now: dt.datetime) -> None:
    """Raises:
    Unauthenticated: the token is revoked, expired or used up, saying which.
    """
    shown = f"{token.kind}.{token.secret[:4]}…"
    if row.revoked_at is not None:
        raise Unauthenticated(f"enrollment token {shown} was revoked")
    if row.expires_at <= now:
        raise Unauthenticated(
            f"enrollment token {shown} expired at {row.expires_at.isoformat(timespec='seconds')}"
        )
    if row.uses >= row.max_uses:
        raise Unauthenticated(f"enrollment token has been used {row.uses} of {row.max_uses} times")


def _take_one_use(session: Session, row: EnrollmentToken, token: Token, now: dt.datetime) -> None:
    # One conditional UPDATE: on both backends two enrollments cannot both take the last use.
    taken = session.execute(
        update(EnrollmentToken)
        .where(
            EnrollmentToken.id == row.id,
            EnrollmentToken.uses < EnrollmentToken.max_uses,
            EnrollmentToken.revoked_at.is_(None),
            EnrollmentToken.expires_at > now,
        )
        .values(uses=EnrollmentToken.uses + 1)
        .execution_options(synchronize_session=False)
    ).rowcount
    if taken != 1:
        session.refresh(row)
        check_token_usable(row, token, now)
        raise Unauthenticated(f"enrollment token has been used {row.uses} of {row.max_uses} times")


def enroll(runtime: Runtime, request: fleet_pb2.EnrollRequest) -> fleet_pb2.EnrollResponse:
    """Validate everything, then in one transaction take a token use, create the device and its
    credential, and write the `device.enroll` audit row.

    Raises:
        InvalidArgument: a malformed token, CSR, hardware profile or label.
        Unauthenticated: unknown, revoked, expired or exhausted token.
        KeyAlreadyEnrolled: the CSR's key belongs to a device (no token use is taken).
    """
    limits = runtime.limits
    token = parse_enrollment_token(request.token, runtime)
    key = parse_device_csr(request.csr_pem, limits.max_csr_bytes)
    profile = validation.hardware_profile(request.hardware, limits)
    request_labels = validation.labels("labels", request.labels, limits)
    # Read before anything is written: an unreadable repository refuses the call, not half of it.
    # A root rotated meanwhile is harmless, the device walks to newer roots from any older one.
    update_root = runtime.tuf.read(ROOT) or b""
    now = runtime.clock()
    try:
        with runtime.database.transaction() as session:
            response = _enroll(session, runtime, token, key, profile, request_labels, now)
    except IntegrityError as exc:
        # A concurrent enrollment of the same key won the unique constraint; ours rolled back.
        with runtime.database.session() as session:
            owner = key_owner(session, key.sha256)
        if owner is None:
            raise
        raise KeyAlreadyEnrolled(owner) from exc
    response.update_root_json = update_root
    return response


def _enroll(
    session: Session,
    runtime: Runtime,
    token: Token,
    key: DeviceKey,
    profile: dict[str, object],
    request_labels: dict[str, str],
    now: dt.datetime,
) -> fleet_pb2.EnrollResponse:
    row = session.scalars(
        select(EnrollmentToken).where(EnrollmentToken.secret_sha256 == token.secret_sha256)
    ).one_or_none()
    if row is None:
        raise Unauthenticated("unknown enrollment token")
    check_token_usable(row, token, now)
    owner = key_owner(session, key.sha256)
    if owner is not None:
        raise KeyAlreadyEnrolled(owner)
    labels = {**request_labels, **(row.labels or {})}
    if len(labels) > runtime.limits.max_labels:
        raise InvalidArgument(
            "labels", f"at most {runtime.limits.max_labels} labels together with the token's"
        )
    _take_one_use(session, row, token, now)

    device_id = new_id("dev")
    state = DeviceState.ACCEPTED if row.auto_accept else DeviceState.PENDING
    certificate = runtime.issue_certificate(key.public_key, device_id, now)
    session.add(
        Device(
            id=device_id,
            fleet_id=row.fleet_id,
            cohort_id=row.cohort_id,
            state=state,
            hardware_class=str(profile["hardware_class"]),
            hardware_profile=profile,
            labels=labels,
            public_key_sha256=key.sha256,
            public_key_pem=key.pem,
            enrollment_token_id=row.id,
            enrolled_at=now,
        )
    )
    credential = new_credential(device_id, certificate, key.sha256)
    session.add(credential)
    audit.record(
        session,
        audit.Actor(ActorType.DEVICE, device_id),
        "device.enroll",
        "device",
        device_id,
        {"enrollment_token": row.id, "state": state.value, "certificate_serial": credential.serial},
    )
    session.flush()
    return fleet_pb2.EnrollResponse(
        device_id=device_id,
        state=STATE_TO_PROTO[state],  # type: ignore[arg-type]
        certificate_pem=certificate.public_bytes(serialization.Encoding.PEM),
        ca_certificate_pem=runtime.ca.certificate_pem,
        certificate_expires_at=timestamp(credential.not_after),
        device_host="",
        device_port=runtime.device_port,
        heartbeat_interval_seconds=int(runtime.limits.heartbeat_interval.total_seconds()),
    )
