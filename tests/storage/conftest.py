"""Storage test helpers, as fixtures: seed rows (one in every table), and a database's schema."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import MetaData, create_engine, inspect
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from fedota.storage import models as m
from fedota.storage.types import new_id


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def add_fleet(session: Session) -> tuple[m.Fleet, m.Cohort]:
    fleet = m.Fleet(id=new_id("flt"), name=f"fleet-{new_id('n')}")
    cohort = m.Cohort(id=new_id("coh"), fleet=fleet, name="default")
    session.add_all([fleet, cohort])
    # Rows that name the fleet only by id (no relationship) must not be inserted before it.
    session.flush()
    return fleet, cohort


def add_device(session: Session, cohort: m.Cohort, key: str = "device-key") -> m.Device:
    device = m.Device(
        id=new_id("dev"),
        fleet_id=cohort.fleet_id,
        cohort=cohort,
        hardware_class="cpu-small",
        public_key_sha256=sha(key),
        public_key_pem=f"-----BEGIN PUBLIC KEY-----\n{key}\n-----END PUBLIC KEY-----\n",
    )
    session.add(device)
    return device


def add_every_table(session: Session) -> dict[str, Any]:
    """One linked row in every table of the schema; returns the objects by table name."""
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
    fleet, cohort = add_fleet(session)
    operator = m.Operator(id=new_id("op"), name="alice", role=m.Role.ADMIN)
    token = m.ApiToken(id=new_id("tok"), operator=operator, secret_sha256=sha("api"))
    enrollment = m.EnrollmentToken(
        id=new_id("enr"),
        secret_sha256=sha("enroll"),
        fleet_id=fleet.id,
        cohort=cohort,
        max_uses=2,
        expires_at=later,
        created_by=operator.id,
    )
    ca = m.CertificateAuthority(
        id=new_id("ca"),
        fleet_id=fleet.id,
        certificate_pem="ca",
        certificate_sha256=sha("ca"),
        not_after=later,
    )
    family = m.ModelFamily(id=new_id("fam"), name="digits", architecture="mlp")
    base = m.ModelVersion(
        id=new_id("ver"),
        family=family,
        number=1,
        content_sha256=sha("v1"),
        source=m.VersionSource.IMPORT,
        created_by=operator.id,
    )
    session.add_all([operator, token, enrollment, ca, family, base])
    session.flush()
    campaign = m.TrainingCampaign(
        id=new_id("cmp"),
        name="c1",
        family_id=family.id,
        base_version_id=base.id,
        num_rounds=3,
        strategy="fedavg",
    )
    session.add(campaign)
    session.flush()
    # The cycle: a version produced by a campaign that started from another version.
    result = m.ModelVersion(
        id=new_id("ver"),
        family=family,
        number=2,
        content_sha256=sha("v2"),
        parent_id=base.id,
        source=m.VersionSource.CAMPAIGN,
        campaign_id=campaign.id,
    )
    session.add(result)
    session.flush()
    campaign.result_version_id = result.id
    device = add_device(session, cohort)
    device.enrollment_token_id = enrollment.id
    device.current_model_version_id = base.id
    credential = m.DeviceCredential(
        id=new_id("crt"),
        device=device,
        serial="01",
        certificate_sha256=sha("crt"),
        certificate_pem="crt",
        public_key_sha256=device.public_key_sha256,
        not_before=dt.datetime.now(dt.UTC),
        not_after=later,
    )
    round_ = m.TrainingRound(id=new_id("rnd"), campaign=campaign, number=1)
    participation = m.RoundParticipation(round=round_, device_id=device.id, num_examples=10)
    fp32 = [
        m.ModelArtifact(
            id=new_id("art"),
            version=version,
            variant=m.Variant.FP32,
            blob_sha256=sha(version.id),
            size_bytes=100,
            content_sha256=version.content_sha256,
        )
        for version in (base, result)
    ]
    session.add_all([credential, round_, participation, *fp32])
    session.flush()
    patch = m.Patch(
        id=new_id("pat"),
        base_artifact_id=fp32[0].id,
        target_artifact_id=fp32[1].id,
        blob_sha256=sha("patch"),
        size_bytes=10,
    )
    release = m.Release(id=new_id("rel"), version=result)
    signing_key = m.SigningKey(
        id=new_id("key"),
        role="targets",
        keyid=sha("key"),
        public_key={"keytype": "ed25519"},
        encrypted_private_key="...",
    )
    metadata = m.TufMetadata(role="targets", version=1, blob_sha256=sha("md"), expires_at=later)
    session.add_all([patch, release, signing_key, metadata])
    session.flush()
    rollout = m.Rollout(id=new_id("rol"), release_id=release.id, cohort_id=cohort.id)
    stage = m.RolloutStage(id=new_id("stg"), rollout=rollout, index=0, fraction=0.1)
    session.add_all([rollout, stage])
    session.flush()
    update = m.DeviceUpdate(
        id=new_id("upd"),
        rollout_id=rollout.id,
        device_id=device.id,
        stage_index=0,
        from_artifact_id=fp32[0].id,
        to_artifact_id=fp32[1].id,
        patch_id=patch.id,
    )
    event = m.AuditEvent(
        actor_type=m.ActorType.SYSTEM, action="test.seed", target_type="fleet", target_id=fleet.id
    )
    session.add_all([update, event])
    session.flush()
    objects = [fleet, cohort, operator, token, enrollment, ca, family, base, result, campaign]
    objects += [device, credential, round_, participation, *fp32, patch, release, signing_key]
    objects += [metadata, rollout, stage, update, event]
    return {type(o).__tablename__: o for o in objects}


def schema_snapshot(url: str) -> dict[str, Any]:
    """Tables, columns, keys, constraints and indexes as plain data (alembic_version left out)."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            insp = inspect(conn)
            by_name = sorted  # every reflected item below is sorted by its name for a stable diff
            return {
                table: {
                    "columns": [_plain(c) for c in insp.get_columns(table)],
                    "pk": _plain(insp.get_pk_constraint(table)),
                    "fks": by_name(map(_plain, insp.get_foreign_keys(table)), key=_name),
                    "uniques": by_name(map(_plain, insp.get_unique_constraints(table)), key=_name),
                    "indexes": by_name(map(_plain, insp.get_indexes(table)), key=_name),
                    "checks": by_name(map(_plain, insp.get_check_constraints(table)), key=_name),
                }
                for table in sorted(set(insp.get_table_names()) - {"alembic_version"})
            }
    finally:
        engine.dispose()


def _plain(item: Any) -> Any:
    if isinstance(item, dict):
        return {key: _plain(value) for key, value in item.items()}
    if isinstance(item, list | tuple):
        return [_plain(value) for value in item]
    if item is None or isinstance(item, str | int | float | bool):
        return item
    return repr(item)


def _name(item: dict[str, Any]) -> str:
    return str(item.get("name"))


@pytest.fixture
def seed() -> SimpleNamespace:
    """Row builders: `seed.fleet(s)`, `seed.device(s, cohort, key)`, `seed.every_table(s)`."""
    return SimpleNamespace(fleet=add_fleet, device=add_device, every_table=add_every_table, sha=sha)


@pytest.fixture
def snapshot() -> Callable[[str], dict[str, Any]]:
    """`snapshot(url)`: the database's schema as plain, comparable data."""
    return schema_snapshot


def create_all_from_models(url: str) -> None:
    """`create_all` of the models on a private copy of their metadata.

    SQLAlchemy's create_all on PostgreSQL marks use_alter FKs as never inline on the metadata it
    was given (AddConstraint's isolate_from_table), so a later SQLite create_all in the same
    process would silently leave out the model_versions -> training_campaigns FK.
    """
    copy = MetaData(naming_convention=m.Base.metadata.naming_convention)
    for table in m.Base.metadata.sorted_tables:
        table.to_metadata(copy)
    engine = create_engine(url, poolclass=NullPool)
    try:
        copy.create_all(engine)
    finally:
        engine.dispose()


@pytest.fixture
def create_all() -> Callable[[str], None]:
    """`create_all(url)`: the models' tables made directly, without migrations."""
    return create_all_from_models
