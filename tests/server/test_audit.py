"""Every state change writes exactly one audit row naming who did it; reads and heartbeats none."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from coordinator_support import (
    TIMEOUT,
    AdminClient,
    EnrolledDevice,
    audit_actions,
    enroll,
    fleet_as,
    make_csr,
    new_key,
)
from sqlalchemy import select

from fedota.protos.v1 import admin_pb2, fleet_pb2
from fedota.server import Coordinator
from fedota.storage.db import Database
from fedota.storage.models import AuditEvent, Operator


@dataclass
class Scene:
    coordinator: Coordinator
    admin: AdminClient
    make_token: Callable[..., str]
    device: EnrolledDevice
    spare_token: str

    def device_call(self, call: Callable[[Any], Any]) -> Any:
        with fleet_as(self.coordinator, self.device) as fleet:
            return call(fleet)


@pytest.fixture
def scene(coordinator: Coordinator, admin: AdminClient, make_token: Callable[..., str]) -> Scene:
    return Scene(coordinator, admin, make_token, enroll(coordinator, make_token()), make_token())


def _first_token_id(s: Scene) -> str:
    return s.admin.ListEnrollmentTokens(admin_pb2.ListEnrollmentTokensRequest()).tokens[0].id


CHANGES: dict[str, tuple[Callable[[Scene], Any], str, str]] = {
    "create-cohort": (
        lambda s: s.admin.CreateCohort(admin_pb2.CreateCohortRequest(name="lab")),
        "cohort.create",
        "operator",
    ),
    "create-token": (lambda s: s.make_token(), "enrollment_token.create", "operator"),
    "revoke-token": (
        lambda s: s.admin.RevokeEnrollmentToken(
            admin_pb2.RevokeEnrollmentTokenRequest(id=_first_token_id(s))
        ),
        "enrollment_token.revoke",
        "operator",
    ),
    "enroll": (lambda s: enroll(s.coordinator, s.spare_token), "device.enroll", "device"),
    "accept": (
        lambda s: s.admin.AcceptDevice(admin_pb2.DeviceStateChange(id=s.device.id)),
        "device.accept",
        "operator",
    ),
    "reject": (
        lambda s: s.admin.RejectDevice(admin_pb2.DeviceStateChange(id=s.device.id)),
        "device.reject",
        "operator",
    ),
    "revoke": (
        lambda s: s.admin.RevokeDevice(admin_pb2.DeviceStateChange(id=s.device.id, reason="x")),
        "device.revoke",
        "operator",
    ),
    "renew": (
        lambda s: s.device_call(
            lambda f: f.RenewCertificate(
                fleet_pb2.RenewCertificateRequest(csr_pem=make_csr(new_key())), timeout=TIMEOUT
            )
        ),
        "device.renew_certificate",
        "device",
    ),
}
READS: dict[str, Callable[[Scene], Any]] = {
    "heartbeat": lambda s: s.device_call(
        lambda f: f.Heartbeat(fleet_pb2.HeartbeatRequest(uptime_seconds=1), timeout=TIMEOUT)
    ),
    "list-devices": lambda s: s.admin.ListDevices(admin_pb2.ListDevicesRequest()),
    "get-device": lambda s: s.admin.GetDevice(admin_pb2.DeviceRef(id=s.device.id)),
    "list-tokens": lambda s: s.admin.ListEnrollmentTokens(admin_pb2.ListEnrollmentTokensRequest()),
    "list-cohorts": lambda s: s.admin.ListCohorts(admin_pb2.ListCohortsRequest()),
}


@pytest.mark.parametrize("change", CHANGES)
def test_a_state_change_writes_one_audit_row(scene: Scene, database: Database, change: str) -> None:
    act, action, actor_type = CHANGES[change]
    before = audit_actions(database)

    act(scene)

    after = audit_actions(database)
    assert len(after) == len(before) + 1
    assert after[-1][:2] == (action, actor_type)
    with database.session() as session:
        event = session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc())).first()
        assert event is not None
        if actor_type == "operator":
            admin_id = session.scalars(select(Operator.id).where(Operator.name == "admin")).one()
            assert event.actor_id == admin_id
        else:
            assert event.actor_id == event.target_id


@pytest.mark.parametrize("read", READS)
def test_reads_and_heartbeats_write_no_audit_row(
    scene: Scene, database: Database, read: str
) -> None:
    before = audit_actions(database)

    READS[read](scene)

    assert audit_actions(database) == before


def test_bootstrap_is_audited_once_per_change(coordinator: Coordinator, database: Database) -> None:
    # Two changes on the first start: the fleet and its admin, and the update-signing keys.
    actions = sorted(action[:2] for action in audit_actions(database))
    assert actions == [("coordinator.bootstrap", "system"), ("tuf.initialize", "system")]
