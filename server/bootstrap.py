"""First start: the default fleet and cohort, the CA's record, and the first admin's API token."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fedota.server import audit
from fedota.server.errors import StartupError
from fedota.server.files import write_atomic
from fedota.server.pki import FleetCA
from fedota.storage.db import Database
from fedota.storage.models import (
    ApiToken,
    CertificateAuthority,
    Cohort,
    Fleet,
    Operator,
    Role,
)
from fedota.storage.types import new_id
from fedota.trust import API_KIND, new_token

DEFAULT_FLEET = "default"
DEFAULT_COHORT = "default"
ADMIN_OPERATOR = "admin"
ADMIN_TOKEN_FILE = "admin-token"


def recorded_ca_sha256(database: Database) -> str | None:
    """The fingerprint of the default fleet's active CA as the database knows it."""
    with database.session() as session:
        return session.scalars(
            select(CertificateAuthority.certificate_sha256)
            .join(Fleet, CertificateAuthority.fleet_id == Fleet.id)
            .where(Fleet.name == DEFAULT_FLEET, CertificateAuthority.retired_at.is_(None))
        ).first()


def check_ca_matches(
    database: Database, data_dir: Path, has_ca_files: bool, ca: FleetCA | None
) -> None:
    """Refuse to run a CA the database does not know, or to mint a second one for its fleet.

    Raises:
        StartupError: the database names another CA than the one in `data_dir`.
    """
    recorded = recorded_ca_sha256(database)
    if recorded is None:
        return
    if not has_ca_files:
        raise StartupError(
            f"the database belongs to fleet CA {recorded[:16]}… but {data_dir} holds no CA: copy "
            "ca.key and ca.crt from the data directory of the coordinator that created it"
        )
    if ca is not None and ca.sha256 != recorded:
        raise StartupError(
            f"{data_dir}/ca.crt ({ca.sha256[:16]}…) is not the fleet CA the database knows "
            f"({recorded[:16]}…)"
        )


def create_operator_token(
    session: Session, operator: Operator, ca_certificate_pem: bytes, name: str = ""
) -> str:
    """A new API token for `operator` in the caller's transaction; returns the whole token once."""
    token = new_token(API_KIND, ca_certificate_pem)
    session.add(
        ApiToken(
            id=new_id("api"),
            operator_id=operator.id,
            secret_sha256=token.secret_sha256,
            name=name,
        )
    )
    return str(token)


def _ensure(session: Session, ca: FleetCA, now: dt.datetime, created: list[str]) -> Fleet:
    fleet = session.scalars(select(Fleet).where(Fleet.name == DEFAULT_FLEET)).one_or_none()
    if fleet is None:
        fleet = Fleet(id=new_id("flt"), name=DEFAULT_FLEET, created_at=now)
        session.add(fleet)
        created.append("fleet")
    has_cohort = session.scalar(
        select(exists().where(Cohort.fleet_id == fleet.id, Cohort.name == DEFAULT_COHORT))
    )
    if not has_cohort:
        session.add(
            Cohort(id=new_id("coh"), fleet_id=fleet.id, name=DEFAULT_COHORT, created_at=now)
        )
        created.append("cohort")
    has_ca = session.scalar(
        select(exists().where(CertificateAuthority.certificate_sha256 == ca.sha256))
    )
    if not has_ca:
        session.add(
            CertificateAuthority(
                id=new_id("ca"),
                fleet_id=fleet.id,
                certificate_pem=ca.certificate_pem.decode(),
                certificate_sha256=ca.sha256,
                not_after=ca.certificate.not_valid_after_utc,
                created_at=now,
            )
        )
        created.append("certificate_authority")
    return fleet


def bootstrap(
    database: Database,
    data_dir: Path,
    ca: FleetCA,
    now: dt.datetime,
) -> str | None:
    """Create what a fresh database lacks, in one transaction with one audit row.

    When no operator exists, creates operator "admin" (role admin) and writes its API token to
    `data_dir/admin-token` (0600) before the transaction commits, so a failed write leaves no
    operator without a token. Returns that token, or None when nothing was minted.

    Raises:
        OSError: the token file cannot be written.
    """
    for attempt in range(2):
        try:
            return _bootstrap_once(database, data_dir, ca, now)
        except IntegrityError:
            # Another replica bootstrapped the same database at the same moment: its rows stand.
            if attempt:
                raise
    return None


def _bootstrap_once(
    database: Database,
    data_dir: Path,
    ca: FleetCA,
    now: dt.datetime,
) -> str | None:
    created: list[str] = []
    token: str | None = None
    with database.transaction() as session:
        fleet = _ensure(session, ca, now, created)
        if not session.scalar(select(exists().where(Operator.id.is_not(None)))):
            operator = Operator(
                id=new_id("op"), name=ADMIN_OPERATOR, role=Role.ADMIN, created_at=now
            )
            session.add(operator)
            session.flush()
            token = create_operator_token(session, operator, ca.certificate_pem, "bootstrap")
            created.append("operator")
        if created:
            audit.record(
                session,
                audit.Actor.system(),
                "coordinator.bootstrap",
                "fleet",
                fleet.id,
                {"created": created},
            )
            session.flush()
        if token is not None:
            write_atomic(data_dir / ADMIN_TOKEN_FILE, (token + "\n").encode())
    return token
