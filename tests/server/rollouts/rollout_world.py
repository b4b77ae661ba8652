"""Rows a rollout needs, made directly in the database: fleet, cohorts, devices, versions,
artifacts and releases. (The services under test are the real ones; these only seed.)"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import select

from fedota.server import audit, rollouts
from fedota.server.bootstrap import DEFAULT_FLEET
from fedota.server.rollouts import DeviceAssignment, RolloutView, Thresholds
from fedota.storage.db import Database
from fedota.storage.models import (
    ActorType,
    AuditEvent,
    Cohort,
    Device,
    DeviceState,
    DeviceUpdate,
    Fleet,
    ModelArtifact,
    ModelFamily,
    ModelVersion,
    Operator,
    Release,
    ReleaseState,
    Role,
    UpdateState,
    Variant,
    VersionSource,
)
from fedota.storage.types import new_id

NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)
FAMILY = "digits"
VARIANTS = ("fp32", "int8", "int4")


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def content_of(number: int, variant: str) -> str:
    """The canonical content hash the world gives version `number`'s `variant` artifact."""
    return sha(f"{FAMILY}@v{number}/{variant}")


@dataclass
class World:
    """One fleet with cohorts, a model family and its versions; helpers add rows."""

    database: Database
    fleet_id: str = ""
    operator: audit.Actor = field(default_factory=audit.Actor.system)
    family_id: str = ""
    cohorts: dict[str, str] = field(default_factory=dict)
    # version number -> (version id, release id)
    versions: dict[int, tuple[str, str]] = field(default_factory=dict)

    @classmethod
    def make(cls, database: Database) -> World:
        world = cls(database)
        with database.transaction() as session:
            fleet = Fleet(id=new_id("flt"), name=DEFAULT_FLEET)
            operator = Operator(id=new_id("op"), name="alice", role=Role.ADMIN)
            family = ModelFamily(id=new_id("fam"), name=FAMILY, architecture="digits-mlp")
            session.add_all([fleet, operator, family])
            world.fleet_id, world.family_id = fleet.id, family.id
            world.operator = audit.Actor(ActorType.OPERATOR, operator.id)
        world.add_cohort("canary")
        return world

    def add_cohort(self, name: str) -> str:
        with self.database.transaction() as session:
            cohort = Cohort(id=new_id("coh"), fleet_id=self.fleet_id, name=name)
            session.add(cohort)
        self.cohorts[name] = cohort.id
        return cohort.id

    def add_version(
        self,
        number: int,
        *,
        variants: Sequence[str] = VARIANTS,
        state: ReleaseState = ReleaseState.READY,
    ) -> str:
        """Version `number` with one artifact per variant and a release in `state`; its id."""
        with self.database.transaction() as session:
            version = ModelVersion(
                id=new_id("mv"),
                family_id=self.family_id,
                number=number,
                content_sha256=content_of(number, "fp32"),
                source=VersionSource.IMPORT,
                created_at=NOW,
            )
            session.add(version)
            session.flush()
            for variant in variants:
                session.add(
                    ModelArtifact(
                        id=new_id("art"),
                        version_id=version.id,
                        variant=Variant(variant),
                        blob_sha256=sha(f"blob {number} {variant}"),
                        size_bytes=1000 * number,
                        content_sha256=content_of(number, variant),
                    )
                )
            release = Release(id=new_id("rel"), version_id=version.id, state=state, created_at=NOW)
            session.add(release)
        self.versions[number] = (version.id, release.id)
        return release.id

    def release(self, number: int) -> str:
        return self.versions[number][1]

    def add_devices(
        self,
        count: int,
        *,
        cohort: str = "canary",
        hardware_class: str = "int8",
        state: DeviceState = DeviceState.ACCEPTED,
        runs: int | None = 1,
    ) -> list[str]:
        """`count` devices; `runs` is the version they last reported running (None: unknown)."""
        ids = []
        with self.database.transaction() as session:
            for _ in range(count):
                device_id = new_id("dev")
                session.add(
                    Device(
                        id=device_id,
                        fleet_id=self.fleet_id,
                        cohort_id=self.cohorts[cohort],
                        state=state,
                        hardware_class=hardware_class,
                        public_key_sha256=sha(device_id),
                        public_key_pem="-",
                        enrolled_at=NOW,
                        current_model_version_id=self.versions[runs][0] if runs else None,
                        current_variant=hardware_class if runs else None,
                    )
                )
                ids.append(device_id)
        return ids

    def records(self, rollout_id: str) -> dict[str, DeviceUpdate]:
        """The rollout's device records by device id."""
        with self.database.session() as session:
            rows = session.scalars(
                select(DeviceUpdate).where(DeviceUpdate.rollout_id == rollout_id)
            ).all()
            return {row.device_id: row for row in rows}

    def audit_rows(self, target_id: str) -> list[tuple[str, str, dict[str, object]]]:
        """(action, actor type, details) of the audit rows about `target_id`, oldest first."""
        with self.database.session() as session:
            return [
                (row.action, row.actor_type.value, dict(row.details))
                for row in session.scalars(
                    select(AuditEvent)
                    .where(AuditEvent.target_id == target_id)
                    .order_by(AuditEvent.id)
                )
            ]

    def audit_actions(self, target_id: str | None = None) -> list[str]:
        """Actions of the audit rows (about `target_id` only, when given), oldest first."""
        with self.database.session() as session:
            query = select(AuditEvent.action).order_by(AuditEvent.id)
            if target_id is not None:
                query = query.where(AuditEvent.target_id == target_id)
            return list(session.scalars(query))


def start_rollout(
    world: World,
    percents: Sequence[float],
    thresholds: Thresholds | None = None,
    *,
    release: int = 2,
    cohort: str = "canary",
    now: dt.datetime = NOW,
) -> RolloutView:
    """Roll version `release` out to `cohort` as the world's operator."""
    return rollouts.create(
        world.database,
        world.operator,
        release=world.release(release),
        cohort=cohort,
        stage_percents=percents,
        thresholds=thresholds or Thresholds(),
        now=now,
    )


def report(
    world: World,
    rollout_id: str,
    device_id: str,
    status: UpdateState,
    reason: str = "",
    *,
    runs: int | None = None,
    variant: str = "int8",
) -> UpdateState:
    """A device's status report; `runs` is the version whose content it says it now runs."""
    return rollouts.report_status(
        world.database,
        device_id,
        rollout_id,
        status,
        reason,
        NOW,
        content_sha256=content_of(runs, variant) if runs else "",
    )


def assignment(
    world: World, device_id: str, runs: int | None = 1, variant: str = "int8"
) -> DeviceAssignment | None:
    """What the device is told to run, when it says it runs version `runs`."""
    return rollouts.assignment_for(
        world.database, device_id, content_of(runs, variant) if runs else "", NOW
    )
