"""Status reports: what is recorded, what is a retry, and what is refused (changing nothing)."""

from __future__ import annotations

import pytest
from rollout_world import NOW, World, content_of, report, start_rollout

from fedota.server import rollouts
from fedota.server.errors import InvalidArgument
from fedota.server.rollouts import (
    NoAssignment,
    ReportContradicts,
    RolloutNotFound,
    RolloutView,
    UpdateTransitionNotAllowed,
)
from fedota.storage.models import Device, UpdateState

Running = tuple[RolloutView, list[str], list[str]]


@pytest.fixture
def running(world: World) -> Running:
    """A rollout with stages 50%/100% over 40 devices: (view, stage-1 devices, the others)."""
    devices = world.add_devices(40)
    view = start_rollout(world, [50, 100])
    first = sorted(world.records(view.id))
    return view, first, sorted(set(devices) - set(first))


def test_reports_are_recorded_with_one_audit_row_each(world: World, running: Running) -> None:
    view, first, _ = running
    device = first[0]
    for status in (UpdateState.DOWNLOADING, UpdateState.VERIFYING, UpdateState.APPLYING):
        assert report(world, view.id, device, status, runs=1) == status
    assert report(world, view.id, device, UpdateState.HEALTHY, runs=2) == UpdateState.HEALTHY
    assert world.audit_actions().count("device_update.report") == 4
    with world.database.session() as session:
        shown = session.get(Device, device)
        assert shown is not None and shown.current_model_version_id == world.versions[2][0]


def test_a_retried_outcome_changes_nothing(world: World, running: Running) -> None:
    view, first, _ = running
    report(world, view.id, first[0], UpdateState.FAILED, "disk full")
    before = world.audit_actions()
    assert report(world, view.id, first[0], UpdateState.FAILED, "disk full") == UpdateState.FAILED
    assert world.audit_actions() == before


@pytest.mark.parametrize(
    ("first_status", "then", "runs"),
    [
        (UpdateState.HEALTHY, UpdateState.FAILED, None),
        (UpdateState.FAILED, UpdateState.HEALTHY, 2),
        (UpdateState.ROLLED_BACK, UpdateState.DOWNLOADING, None),
    ],
)
def test_a_report_after_another_outcome_is_refused(
    world: World, running: Running, first_status: UpdateState, then: UpdateState, runs: int | None
) -> None:
    view, first, _ = running
    healthy = first_status == UpdateState.HEALTHY
    report(world, view.id, first[0], first_status, runs=2 if healthy else None)
    before = world.audit_actions()
    with pytest.raises(UpdateTransitionNotAllowed, match=f"is {first_status.value} in rollout"):
        report(world, view.id, first[0], then, runs=runs)
    assert world.audit_actions() == before
    assert world.records(view.id)[first[0]].state == first_status


def test_healthy_on_another_model_is_refused(world: World, running: Running) -> None:
    view, first, _ = running
    with pytest.raises(ReportContradicts, match="reports healthy on content"):
        report(world, view.id, first[0], UpdateState.HEALTHY, runs=1)
    assert world.records(view.id)[first[0]].state == UpdateState.ASSIGNED


def test_reports_outside_an_assignment_are_refused(world: World, running: Running) -> None:
    view, _, others = running
    with pytest.raises(NoAssignment, match=f"device {others[0]} has no assignment"):
        report(world, view.id, others[0], UpdateState.DOWNLOADING)
    with pytest.raises(RolloutNotFound):
        report(world, "rol_00000000000000ff", others[0], UpdateState.DOWNLOADING)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"status": UpdateState.ASSIGNED}, "status"),
        ({"content_sha256": "ABC"}, "content_sha256"),
        ({"reason": "x" * 1001}, "reason"),
        ({"reason": "nul\x00"}, "reason"),
        ({"bytes_received": -1}, "bytes_received"),
        ({"rollout": "rollout-1"}, "rollout_id"),
        ({"device_id": "../dev"}, "device_id"),
    ],
)
def test_malformed_reports_are_refused(
    world: World, running: Running, kwargs: dict[str, object], field: str
) -> None:
    view, first, _ = running
    call: dict[str, object] = {
        "device_id": first[0],
        "rollout": view.id,
        "status": UpdateState.DOWNLOADING,
        "reason": "",
        "now": NOW,
        **kwargs,
    }
    with pytest.raises(InvalidArgument) as raised:
        rollouts.report_status(world.database, **call)  # type: ignore[arg-type]
    assert raised.value.field == field
    assert world.records(view.id)[first[0]].state == UpdateState.ASSIGNED


def test_assignment_refuses_a_malformed_hash(world: World, running: Running) -> None:
    _, first, _ = running
    with pytest.raises(InvalidArgument, match="content_sha256"):
        rollouts.assignment_for(world.database, first[0], content_of(1, "int8").upper(), NOW)
