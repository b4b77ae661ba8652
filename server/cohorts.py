"""Cohorts of the fleet: created by operators, named by tokens, campaigns and rollouts."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fedota.protos.v1 import admin_pb2
from fedota.server import audit, validation
from fedota.server.bootstrap import DEFAULT_FLEET
from fedota.server.convert import timestamp
from fedota.server.errors import AlreadyExists, NotFound
from fedota.server.runtime import Runtime
from fedota.storage.models import Cohort, Device, Fleet
from fedota.storage.types import new_id


def default_fleet(session: Session) -> Fleet:
    """The fleet this coordinator serves (created at bootstrap)."""
    return session.scalars(select(Fleet).where(Fleet.name == DEFAULT_FLEET)).one()


def find_cohort(session: Session, fleet: Fleet, name: str) -> Cohort:
    """Raises:
    NotFound: no cohort of that name, with the command that creates it.
    """
    cohort = session.scalars(
        select(Cohort).where(Cohort.fleet_id == fleet.id, Cohort.name == name)
    ).one_or_none()
    if cohort is None:
        raise NotFound(
            f"cohort {name} does not exist; create it with `fedota admin cohorts create {name}`"
        )
    return cohort


def _message(cohort: Cohort, fleet_name: str, device_count: int) -> admin_pb2.Cohort:
    return admin_pb2.Cohort(
        name=cohort.name,
        fleet=fleet_name,
        description=cohort.description,
        device_count=device_count,
        created_at=timestamp(cohort.created_at),
    )


def create_cohort(
    runtime: Runtime, actor: audit.Actor, request: admin_pb2.CreateCohortRequest
) -> admin_pb2.Cohort:
    """Raises:
    InvalidArgument: a bad name or description.
    AlreadyExists: the fleet has a cohort of that name.
    """
    name = validation.cohort_name("name", request.name)
    description = validation.text(
        "description", request.description, runtime.limits.max_description_chars, multiline=True
    )
    now: dt.datetime = runtime.clock()
    try:
        with runtime.database.transaction() as session:
            fleet = default_fleet(session)
            exists = session.scalars(
                select(Cohort.id).where(Cohort.fleet_id == fleet.id, Cohort.name == name)
            ).first()
            if exists is not None:
                raise AlreadyExists(f"cohort {name} already exists")
            cohort = Cohort(
                id=new_id("coh"),
                fleet_id=fleet.id,
                name=name,
                description=description,
                created_at=now,
            )
            session.add(cohort)
            audit.record(session, actor, "cohort.create", "cohort", cohort.id, {"name": name})
            session.flush()
            return _message(cohort, fleet.name, 0)
    except IntegrityError as exc:
        raise AlreadyExists(f"cohort {name} already exists") from exc


def list_cohorts(runtime: Runtime) -> admin_pb2.ListCohortsResponse:
    """Every cohort of the fleet by name, with its device count."""
    with runtime.database.session() as session:
        fleet = default_fleet(session)
        counts = dict(
            session.execute(
                select(Device.cohort_id, func.count())
                .where(Device.fleet_id == fleet.id)
                .group_by(Device.cohort_id)
            ).all()
        )
        cohorts = session.scalars(
            select(Cohort).where(Cohort.fleet_id == fleet.id).order_by(Cohort.name)
        ).all()
        return admin_pb2.ListCohortsResponse(
            cohorts=[_message(c, fleet.name, counts.get(c.id, 0)) for c in cohorts]
        )
