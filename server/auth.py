"""Who is calling: a device by its mTLS certificate, an operator by its API token."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import grpc
from cryptography import x509
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from fedota.server.audit import Actor
from fedota.server.config import Limits
from fedota.server.errors import PermissionDenied, Unauthenticated
from fedota.server.pki import certificate_der_sha256
from fedota.storage.db import Database
from fedota.storage.models import (
    ActorType,
    ApiToken,
    Device,
    DeviceCredential,
    DeviceState,
    Operator,
    Role,
)
from fedota.trust import API_KIND, TokenFormatError, parse_token

_RANK = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}
_REFUSED = (DeviceState.REJECTED, DeviceState.REVOKED)


def peer_certificate_pem(context: grpc.ServicerContext) -> bytes | None:
    """The verified client certificate of an mTLS call (None on the public port)."""
    values = context.auth_context().get("x509_pem_cert")
    return values[0] if values else None


def authorization_header(context: grpc.ServicerContext) -> str | None:
    """The call's `authorization` metadata value, if any."""
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            return value if isinstance(value, str) else value.decode("latin-1")
    return None


def refuse_if_cut_off(device: Device) -> None:
    """Raises:
    PermissionDenied: the device was rejected or revoked.
    """
    if device.state in _REFUSED:
        reason = f": {device.state_reason}" if device.state_reason else ""
        raise PermissionDenied(f"device {device.id} is {device.state.value}{reason}")


def authenticate_device(
    session: Session, certificate_pem: bytes | None, now: dt.datetime, *, allow_pending: bool
) -> tuple[Device, DeviceCredential]:
    """The device and credential behind a verified client certificate.

    Raises:
        Unauthenticated: no certificate (public port), not a credential we issued, superseded
            by a renewal, or expired.
        PermissionDenied: the device is rejected or revoked, or pending and `allow_pending` is off.
    """
    if certificate_pem is None:
        raise Unauthenticated("this call needs the device certificate: use the device port")
    try:
        fingerprint = certificate_der_sha256(x509.load_pem_x509_certificate(certificate_pem))
    except ValueError as exc:
        raise Unauthenticated("the client certificate cannot be read") from exc
    credential = session.scalars(
        select(DeviceCredential).where(DeviceCredential.certificate_sha256 == fingerprint)
    ).one_or_none()
    if credential is None:
        raise Unauthenticated("this certificate does not belong to an enrolled device")
    device = credential.device
    refuse_if_cut_off(device)
    if credential.revoked_at is not None:
        raise Unauthenticated(
            f"this certificate of device {device.id} was replaced at "
            f"{credential.revoked_at.isoformat(timespec='seconds')}; use the newest one"
        )
    if credential.not_after <= now:
        raise Unauthenticated(
            f"the certificate of device {device.id} expired at "
            f"{credential.not_after.isoformat(timespec='seconds')}; enroll again"
        )
    if device.state == DeviceState.PENDING and not allow_pending:
        raise PermissionDenied(f"device {device.id} is pending approval")
    return device, credential


@dataclass(frozen=True)
class OperatorIdentity:
    """The operator an API token belongs to."""

    operator_id: str
    name: str
    role: Role

    @property
    def actor(self) -> Actor:
        """This operator as the actor of audit rows."""
        return Actor(ActorType.OPERATOR, self.operator_id)

    def require(self, role: Role, what: str) -> None:
        """Raises:
        PermissionDenied: this operator's role ranks below `role`.
        """
        if _RANK[self.role] < _RANK[role]:
            raise PermissionDenied(
                f"operator {self.name!r} has role {self.role.value}; {what} needs role {role.value}"
            )


def authenticate_operator(
    database: Database, authorization: str | None, limits: Limits, now: dt.datetime
) -> OperatorIdentity:
    """The operator an `authorization: Bearer <api token>` header names.

    Marks the token used at most once per `limits.api_token_touch_interval`, so reads don't
    turn into writes on every call.

    Raises:
        Unauthenticated: the header is missing or malformed, or the token is unknown, revoked
            or expired, or its operator is disabled.
    """
    if not authorization:
        raise Unauthenticated("this call needs an API token: send `authorization: Bearer <token>`")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer" or not value or len(value) > limits.max_token_chars:
        raise Unauthenticated("the authorization metadata is not `Bearer <api token>`")
    try:
        token = parse_token(value, API_KIND)
    except TokenFormatError as exc:
        raise Unauthenticated(f"the API token is malformed: {exc}") from exc
    with database.session() as session:
        row = session.execute(
            select(ApiToken, Operator)
            .join(Operator, ApiToken.operator_id == Operator.id)
            .where(ApiToken.secret_sha256 == token.secret_sha256)
        ).one_or_none()
    if row is None:
        raise Unauthenticated("unknown API token")
    api_token, operator = row
    if api_token.revoked_at is not None:
        raise Unauthenticated(f"API token {api_token.id} was revoked")
    if api_token.expires_at is not None and api_token.expires_at <= now:
        expired = api_token.expires_at.isoformat(timespec="seconds")
        raise Unauthenticated(f"API token {api_token.id} expired at {expired}")
    if operator.disabled_at is not None:
        raise Unauthenticated(f"operator {operator.name!r} is disabled")
    if (
        api_token.last_used_at is None
        or now - api_token.last_used_at >= limits.api_token_touch_interval
    ):
        _touch(database, api_token.id, now - limits.api_token_touch_interval, now)
    return OperatorIdentity(operator.id, operator.name, operator.role)


def _touch(database: Database, token_id: str, stale_before: dt.datetime, now: dt.datetime) -> None:
    # Conditional, so replicas racing on the same token write once.
    with database.transaction() as session:
        session.execute(
            update(ApiToken)
            .where(ApiToken.id == token_id)
            .where(or_(ApiToken.last_used_at.is_(None), ApiToken.last_used_at < stale_before))
            .values(last_used_at=now)
        )
