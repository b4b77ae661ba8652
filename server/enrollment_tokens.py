"""Enrollment tokens as operators manage them: create (shown once), list, revoke."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from fedota.protos.v1 import admin_pb2
from fedota.server import audit, validation
from fedota.server.cohorts import default_fleet, find_cohort
from fedota.server.convert import token_message
from fedota.server.errors import FailedPrecondition, InvalidArgument, NotFound
from fedota.server.runtime import Runtime
from fedota.storage.models import EnrollmentToken, Operator
from fedota.storage.types import new_id
from fedota.trust import ENROLLMENT_KIND, new_token

TOKEN_ID_PREFIX = "tok"


def _check_range(field: str, value: int, low: int, high: int, unit: str = "") -> int:
    if not low <= value <= high:
        raise InvalidArgument(field, f"must be between {low} and {high}{unit} (got {value})")
    return value


def _creator_names(session: Session, tokens: list[EnrollmentToken]) -> dict[str, str]:
    ids = {t.created_by for t in tokens if t.created_by}
    if not ids:
        return {}
    return dict(
        session.execute(select(Operator.id, Operator.name).where(Operator.id.in_(ids))).all()
    )


def create_token(
    runtime: Runtime, actor: audit.Actor, request: admin_pb2.CreateEnrollmentTokenRequest
) -> admin_pb2.CreateEnrollmentTokenResponse:
    """A new enrollment token; the whole token string is returned here and never again.

    Raises:
        InvalidArgument: a bad cohort name, ttl, use count or label.
        NotFound: the cohort does not exist.
    """
    limits = runtime.limits
    cohort_name = validation.cohort_name("cohort", request.cohort or "default")
    ttl = _check_range(
        "ttl_seconds",
        request.ttl_seconds,
        int(limits.min_token_ttl.total_seconds()),
        int(limits.max_token_ttl.total_seconds()),
        " seconds",
    )
    max_uses = _check_range("max_uses", request.max_uses, 1, limits.max_token_uses)
    labels = validation.labels("labels", request.labels, limits)
    now = runtime.clock()
    with runtime.database.transaction() as session:
        fleet = default_fleet(session)
        cohort = find_cohort(session, fleet, cohort_name)
        token = new_token(ENROLLMENT_KIND, runtime.ca.certificate_pem)
        row = EnrollmentToken(
            id=new_id(TOKEN_ID_PREFIX),
            secret_sha256=token.secret_sha256,
            fleet_id=fleet.id,
            cohort_id=cohort.id,
            cohort=cohort,
            labels=labels,
            auto_accept=request.auto_accept,
            max_uses=max_uses,
            uses=0,
            expires_at=now + dt.timedelta(seconds=ttl),
            created_by=actor.id,
            created_at=now,
        )
        session.add(row)
        audit.record(
            session,
            actor,
            "enrollment_token.create",
            "enrollment_token",
            row.id,
            {
                "cohort": cohort.name,
                "max_uses": max_uses,
                "ttl_seconds": ttl,
                "auto_accept": request.auto_accept,
            },
        )
        session.flush()
        names = _creator_names(session, [row])
        return admin_pb2.CreateEnrollmentTokenResponse(
            token=str(token), info=token_message(row, fleet.name, names.get(actor.id, ""))
        )


def list_tokens(
    runtime: Runtime, request: admin_pb2.ListEnrollmentTokensRequest
) -> admin_pb2.ListEnrollmentTokensResponse:
    """Usable tokens (not revoked, not expired, uses left), or every token with include_inactive."""
    now = runtime.clock()
    with runtime.database.session() as session:
        fleet = default_fleet(session)
        query = select(EnrollmentToken).where(EnrollmentToken.fleet_id == fleet.id)
        if not request.include_inactive:
            query = query.where(
                EnrollmentToken.revoked_at.is_(None),
                EnrollmentToken.expires_at > now,
                EnrollmentToken.uses < EnrollmentToken.max_uses,
            )
        tokens = list(
            session.scalars(query.order_by(EnrollmentToken.created_at, EnrollmentToken.id))
        )
        names = _creator_names(session, tokens)
        return admin_pb2.ListEnrollmentTokensResponse(
            tokens=[token_message(t, fleet.name, names.get(t.created_by or "", "")) for t in tokens]
        )


def revoke_token(
    runtime: Runtime, actor: audit.Actor, request: admin_pb2.RevokeEnrollmentTokenRequest
) -> admin_pb2.EnrollmentToken:
    """Raises:
    InvalidArgument: the id is empty or malformed.
    NotFound: no such token.
    FailedPrecondition: it is already revoked.
    """
    token_id = validation.identifier("id", request.id, TOKEN_ID_PREFIX, runtime.limits)
    now = runtime.clock()
    with runtime.database.transaction() as session:
        fleet = default_fleet(session)
        row = session.get(EnrollmentToken, token_id)
        if row is None or row.fleet_id != fleet.id:
            raise NotFound(f"enrollment token {token_id} does not exist")
        # Conditional, so two revocations racing (on either backend) record one change.
        revoked = session.execute(
            update(EnrollmentToken)
            .where(EnrollmentToken.id == token_id, EnrollmentToken.revoked_at.is_(None))
            .values(revoked_at=now)
            .execution_options(synchronize_session=False)
        ).rowcount
        if revoked != 1:
            raise FailedPrecondition(f"enrollment token {token_id} is already revoked")
        session.refresh(row)
        audit.record(session, actor, "enrollment_token.revoke", "enrollment_token", row.id)
        session.flush()
        names = _creator_names(session, [row])
        return token_message(row, fleet.name, names.get(row.created_by or "", ""))
