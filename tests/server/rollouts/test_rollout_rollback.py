"""Rolling back: updated devices go back to what they ran, late finishers follow, and the
moves a rollback does not allow."""

from __future__ import annotations

import pytest
from rollout_world import NOW, World, assignment, content_of, report, start_rollout

from fedota.server import rollouts
from fedota.server.rollouts import RolloutSuperseded, RolloutTransitionNotAllowed, Thresholds
from fedota.storage.models import RolloutState, UpdateState


def test_rollback_sends_updated_devices_back_to_what_they_ran(world: World) -> None:
    world.add_devices(30)
    view = start_rollout(world, [100], Thresholds(1.0, 0.5))
    healthy, under_way, untouched = sorted(world.records(view.id))[:3]
    report(world, view.id, healthy, UpdateState.HEALTHY, runs=2)
    report(world, view.id, under_way, UpdateState.APPLYING, runs=1)

    rolled = rollouts.rollback(world.database, world.operator, view.id, "bad answers", NOW)
    assert rolled.state == RolloutState.ABORTED and rolled.rolled_back_at == NOW
    assert rolled.reason == (
        "rolled back by an operator: bad answers; 1 devices sent back, 0 without a recorded "
        "previous model stay"
    )
    back = assignment(world, healthy, runs=2)
    assert back is not None and back.rollback
    assert back.target.content_sha256 == content_of(1, "int8")
    assert back.current is not None and back.current.content_sha256 == content_of(2, "int8")
    assert assignment(world, untouched) is None

    # A retried healthy report of the forward install (new content) is not mistaken for "back".
    assert report(world, view.id, healthy, UpdateState.HEALTHY, runs=2) == UpdateState.ASSIGNED
    report(world, view.id, healthy, UpdateState.APPLYING, runs=2)
    assert report(world, view.id, healthy, UpdateState.HEALTHY, runs=1) == UpdateState.ROLLED_BACK
    assert assignment(world, healthy, runs=1) is None

    # A device that was under way and finishes afterwards is sent back too.
    report(world, view.id, under_way, UpdateState.HEALTHY, runs=2)
    record = world.records(view.id)[under_way]
    assert (record.state, record.rollback) == (UpdateState.ASSIGNED, True)
    assert world.audit_actions(view.id).count("rollout.rollback") == 1


def test_a_device_whose_rollback_fails_is_recorded_failed(world: World) -> None:
    world.add_devices(10)
    view = start_rollout(world, [100], Thresholds(0.1, 0.5))
    device = sorted(world.records(view.id))[0]
    report(world, view.id, device, UpdateState.HEALTHY, runs=2)
    rollouts.rollback(world.database, world.operator, view.id, "", NOW)
    report(world, view.id, device, UpdateState.HEALTH_CHECKING, runs=1)
    # The previous model failed its check, so the device went back to the release.
    assert report(world, view.id, device, UpdateState.ROLLED_BACK, "probe", runs=2) == (
        UpdateState.FAILED
    )
    assert world.records(view.id)[device].reason == "rollback failed: probe"


def test_healthy_devices_without_a_known_previous_model_stay(world: World) -> None:
    world.add_devices(10, runs=None)
    view = start_rollout(world, [100], Thresholds(1.0, 0.5))
    device = sorted(world.records(view.id))[0]
    report(world, view.id, device, UpdateState.HEALTHY, runs=2)
    rolled = rollouts.rollback(world.database, world.operator, view.id, "", NOW)
    assert rolled.reason.endswith("0 devices sent back, 1 without a recorded previous model stay")
    assert world.records(view.id)[device].state == UpdateState.HEALTHY


def test_a_completed_rollout_can_be_rolled_back_and_stops_serving_late_joiners(
    world: World,
) -> None:
    world.add_devices(4)
    view = start_rollout(world, [100])
    for device in world.records(view.id):
        report(world, view.id, device, UpdateState.HEALTHY, runs=2)
    assert rollouts.get(world.database, view.id).state == RolloutState.COMPLETED
    rolled = rollouts.rollback(world.database, world.operator, view.id, "", NOW)
    assert rolled.state == RolloutState.COMPLETED and rolled.rolled_back_at is not None
    (late,) = world.add_devices(1)
    assert assignment(world, late) is None


def test_moves_a_rollout_does_not_allow_are_refused(world: World) -> None:
    world.add_devices(10)
    first = start_rollout(world, [100])
    rollouts.rollback(world.database, world.operator, first.id, "", NOW)
    with pytest.raises(RolloutTransitionNotAllowed, match="it cannot be rolled back again"):
        rollouts.rollback(world.database, world.operator, first.id, "", NOW)
    for move, participle in (
        (rollouts.resume, "resumed"),
        (rollouts.pause, "paused"),
        (rollouts.abort, "aborted"),
    ):
        with pytest.raises(
            RolloutTransitionNotAllowed, match=f"is aborted; it cannot be {participle}"
        ):
            move(world.database, world.operator, first.id, "", NOW)
    second = start_rollout(world, [100], release=1)
    rollouts.abort(world.database, world.operator, second.id, "", NOW)
    second_done = start_rollout(world, [100])
    with pytest.raises(RolloutSuperseded, match=f"superseded by rollout {second_done.id}"):
        rollouts.rollback(world.database, world.operator, second.id, "", NOW)
    assert world.audit_actions(first.id) == ["rollout.create", "rollout.rollback"]
