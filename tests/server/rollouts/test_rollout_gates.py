"""Health gates on the database: a failing canary aborts before any later stage is assigned,
a stage advances exactly at its threshold, pausing holds advancement but not aborts."""

from __future__ import annotations

import math

import pytest
from rollout_world import NOW, World, assignment, report, start_rollout

from fedota.server import rollouts
from fedota.server.errors import InvalidArgument
from fedota.server.rollouts import RolloutTransitionNotAllowed, Thresholds
from fedota.storage.models import RolloutState, StageState, UpdateState


def test_a_failing_canary_aborts_and_no_later_stage_device_is_ever_assigned(
    world: World,
) -> None:
    # 10% of 150: about 15 canaries (none at all has a chance of 1 in 7 million).
    devices = world.add_devices(150)
    # At most 1% may fail: one failed canary of fewer than 100 aborts.
    view = start_rollout(world, [10, 50, 100], Thresholds(0.95, 0.01))
    canaries = sorted(world.records(view.id))
    assert 0 < len(canaries) < 40

    report(world, view.id, canaries[0], UpdateState.DOWNLOADING, runs=1)
    report(world, view.id, canaries[0], UpdateState.ROLLED_BACK, "probe answers off", runs=1)

    aborted = rollouts.get(world.database, view.id)
    assert aborted.state == RolloutState.ABORTED
    assert aborted.reason == (
        f"stage 1 (10%): 1 of {len(canaries)} devices failed "
        f"({rollouts.policy.format_percent(1 / len(canaries))} > max 1%)"
    )
    assert [s.state for s in aborted.stages] == [
        StageState.FAILED,
        StageState.WAITING,
        StageState.WAITING,
    ]
    # Every device asks; none outside the canary gets anything, nor does a canary that had
    # not started yet, and no record is ever made for a later stage.
    for device in devices:
        assert assignment(world, device) is None
    # The other canaries still report (they may have been under way); it stays aborted.
    for device in canaries[1:]:
        report(world, view.id, device, UpdateState.FAILED, "health check failed")
    assert sorted(world.records(view.id)) == canaries
    assert {r.stage_index for r in world.records(view.id).values()} == {0}
    assert rollouts.get(world.database, view.id).state == RolloutState.ABORTED
    assert world.audit_actions(view.id) == ["rollout.create", "rollout.abort"]


def test_a_stage_advances_exactly_when_healthy_reaches_the_threshold(world: World) -> None:
    devices = world.add_devices(60)
    view = start_rollout(world, [50, 100], Thresholds(0.75, 0.25))
    first = sorted(world.records(view.id))
    needed = math.ceil(0.75 * len(first))

    for count, device in enumerate(first[:needed], start=1):
        assert rollouts.get(world.database, view.id).current_stage == 0
        assert len(world.records(view.id)) == len(first), "stage 2 is not assigned early"
        report(world, view.id, device, UpdateState.HEALTHY, runs=2)
        assert rollouts.get(world.database, view.id).current_stage == (count >= needed)

    advanced = rollouts.get(world.database, view.id)
    assert [s.state for s in advanced.stages] == [StageState.PASSED, StageState.ACTIVE]
    # Stage 2 (100%) holds every device now, the canary stage's included.
    records = world.records(view.id)
    assert set(records) == set(devices)
    assert {d for d, r in records.items() if r.stage_index == 1} == set(devices) - set(first)


def test_failures_up_to_the_limit_do_not_abort_one_more_does(world: World) -> None:
    world.add_devices(60)
    view = start_rollout(world, [50, 100], Thresholds(1.0, 0.25))
    first = sorted(world.records(view.id))
    allowed = math.floor(0.25 * len(first))

    for device in first[:allowed]:
        report(world, view.id, device, UpdateState.FAILED, "out of memory")
    assert rollouts.get(world.database, view.id).state == RolloutState.RUNNING
    report(world, view.id, first[allowed], UpdateState.FAILED, "out of memory")
    assert rollouts.get(world.database, view.id).state == RolloutState.ABORTED


def test_pause_holds_advancement_resume_applies_it_and_failures_abort_while_paused(
    world: World,
) -> None:
    world.add_devices(40)
    view = start_rollout(world, [50, 100], Thresholds(0.5, 0.5))
    first = sorted(world.records(view.id))
    rollouts.pause(world.database, world.operator, view.id, "weekend", NOW)
    for device in first:
        report(world, view.id, device, UpdateState.HEALTHY, runs=2)
    paused = rollouts.get(world.database, view.id)
    assert (paused.state, paused.current_stage) == (RolloutState.PAUSED, 0)
    assert paused.outlook.startswith("advance (paused): stage 1 (50%)")

    resumed = rollouts.resume(world.database, world.operator, view.id, "", NOW)
    assert (resumed.state, resumed.current_stage) == (RolloutState.RUNNING, 1)
    assert world.audit_actions(view.id)[-2:] == ["rollout.resume", "rollout.advance"]

    rollouts.pause(world.database, world.operator, view.id, "", NOW)
    second = [d for d, r in world.records(view.id).items() if r.stage_index == 1]
    for device in second:
        report(world, view.id, device, UpdateState.FAILED, "crash")
    assert rollouts.get(world.database, view.id).state == RolloutState.ABORTED


def test_a_rollout_completes_and_frees_its_cohort(world: World) -> None:
    devices = world.add_devices(12)
    view = start_rollout(world, [50, 100])
    for _ in range(2):
        for device, record in world.records(view.id).items():
            if record.state == UpdateState.ASSIGNED:
                report(world, view.id, device, UpdateState.HEALTHY, runs=2)
    done = rollouts.get(world.database, view.id)
    assert done.state == RolloutState.COMPLETED and done.finished_at is not None
    assert sum(s.counts.healthy for s in done.stages) == len(devices)
    assert done.outlook == ""
    # A device that joins the cohort after completion is given the release.
    (late,) = world.add_devices(1)
    got = assignment(world, late)
    assert got is not None and got.target.version == 2
    for move, participle in ((rollouts.resume, "resumed"), (rollouts.pause, "paused")):
        with pytest.raises(
            RolloutTransitionNotAllowed, match=f"is completed; it cannot be {participle}"
        ):
            move(world.database, world.operator, view.id, "", NOW)
    start_rollout(world, [100], release=1)


def test_operator_moves_are_audited_with_who_and_why(world: World) -> None:
    world.add_devices(20)
    view = start_rollout(world, [50, 100])
    rollouts.pause(world.database, world.operator, view.id, "checking dashboards", NOW)
    rollouts.resume(world.database, world.operator, view.id, "", NOW)
    aborted = rollouts.abort(world.database, world.operator, view.id, "wrong cohort", NOW)
    assert (aborted.state, aborted.reason) == (RolloutState.ABORTED, "wrong cohort")
    assert [(a, t, d.get("reason")) for a, t, d in world.audit_rows(view.id)] == [
        ("rollout.create", "operator", None),
        ("rollout.pause", "operator", "checking dashboards"),
        ("rollout.resume", "operator", ""),
        ("rollout.abort", "operator", "wrong cohort"),
    ]
    with pytest.raises(InvalidArgument, match="reason: must be at most 500 characters"):
        rollouts.pause(world.database, world.operator, view.id, "x" * 501, NOW)
