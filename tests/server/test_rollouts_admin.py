"""The rollout RPCs of the Admin service over a real coordinator: roles, thresholds as sent, the
Rollout message a view becomes, and one audit row per operator move."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from coordinator_support import (
    AdminClient,
    add_operator,
    audit_actions,
    public_channel,
    rpc_error,
    snapshot,
)
from ota_support import accepted_device, release, rollout, write_versions

from fedota.protos.v1 import releases_pb2 as pb
from fedota.server import Coordinator
from fedota.storage.db import Database
from fedota.storage.models import Role

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def v1_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_versions(tmp_path_factory.mktemp("versions"))[0]


@pytest.fixture
def released(admin: AdminClient, v1_file: Path) -> pb.Release:
    return release(admin, v1_file, "digits@v1")


def test_a_viewer_lists_and_shows_but_may_not_create_or_move(
    coordinator: Coordinator, admin: AdminClient, released: pb.Release, database: Database
) -> None:
    accepted_device(coordinator, admin)
    created = rollout(admin, "digits@v1", [100])
    token = add_operator(database, coordinator.ca_certificate_pem, Role.VIEWER)
    before = snapshot(database)

    with public_channel(coordinator) as channel:
        viewer = AdminClient(channel, token)
        listed = viewer.ListRollouts(pb.ListRolloutsRequest())
        shown = viewer.GetRollout(pb.RolloutRef(id=created.id))
        refused = [
            rpc_error(lambda: viewer.CreateRollout(pb.CreateRolloutRequest(release="digits@v1"))),
            *(
                rpc_error(lambda m=m: getattr(viewer, m)(pb.RolloutRef(id=created.id)))  # type: ignore[misc]
                for m in ("PauseRollout", "ResumeRollout", "AbortRollout", "RollbackRollout")
            ),
        ]

    assert [r.id for r in listed.rollouts] == [created.id] and shown == created
    assert {e.code() for e in refused} == {grpc.StatusCode.PERMISSION_DENIED}
    assert snapshot(database) == before


@pytest.mark.parametrize(
    ("fields", "success", "max_failure"),
    [
        ({}, 0.95, 0.05),
        ({"success_threshold_percent": 80, "max_failure_percent": 10}, 0.80, 0.10),
        ({"zero_failure_tolerance": True}, 0.95, 0.0),
        ({"success_threshold_percent": 100, "zero_failure_tolerance": True}, 1.0, 0.0),
    ],
)
def test_thresholds_zero_means_the_default_and_zero_tolerance_means_none(
    admin: AdminClient,
    released: pb.Release,
    fields: dict[str, object],
    success: float,
    max_failure: float,
) -> None:
    created = rollout(admin, released.id, [10, 100], **fields)

    assert created.success_threshold == pytest.approx(success)
    assert created.max_failure == pytest.approx(max_failure)


def test_the_rollout_message_carries_stages_counts_and_times(
    coordinator: Coordinator, admin: AdminClient, released: pb.Release, database: Database
) -> None:
    accepted_device(coordinator, admin)

    created = rollout(admin, "digits@v1", [100])

    assert created.id.startswith("rol_") and created.release_id == released.id
    assert (created.version, created.cohort, created.state) == ("digits@v1", "default", "running")
    assert created.current_stage == 0 and created.created_by.startswith("op_")
    (stage,) = created.stages
    assert (stage.index, stage.fraction, stage.state) == (0, 1.0, "active")
    assert (stage.devices, stage.in_progress, stage.healthy, stage.failed) == (1, 1, 0, 0)
    assert created.HasField("created_at") and not created.HasField("finished_at")
    assert created.bytes_sent == created.full_bytes == 0

    aborted = admin.AbortRollout(pb.RolloutRef(id=created.id, reason="wrong model"))

    assert aborted.state == "aborted" and aborted.reason == "wrong model"
    assert aborted.HasField("finished_at") and aborted.stages[0].state == "failed"


def test_every_operator_move_is_one_audit_row(
    coordinator: Coordinator, admin: AdminClient, released: pb.Release, database: Database
) -> None:
    accepted_device(coordinator, admin)
    created = rollout(admin, "digits@v1", [100])
    for method in ("PauseRollout", "ResumeRollout", "AbortRollout", "RollbackRollout"):
        getattr(admin, method)(pb.RolloutRef(id=created.id, reason=f"by {method}"))

    actions = [a for a, actor, target in audit_actions(database) if target == created.id]

    assert actions == [
        "rollout.create",
        "rollout.pause",
        "rollout.resume",
        "rollout.abort",
        "rollout.rollback",
    ]
    assert all(actor == "operator" for a, actor, t in audit_actions(database) if t == created.id)


def test_a_second_rollout_for_a_busy_cohort_is_refused_and_changes_nothing(
    coordinator: Coordinator, admin: AdminClient, released: pb.Release, database: Database
) -> None:
    accepted_device(coordinator, admin)
    first = rollout(admin, "digits@v1", [100])
    before = snapshot(database)

    error = rpc_error(lambda: rollout(admin, "digits@v1", [50, 100]))

    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error.details() == (
        f"cohort default already has rollout {first.id} running; abort it or let it complete first"
    )
    assert snapshot(database) == before
