"""What a device is told to run: stage membership, late joiners, pause, and what it ran before."""

from __future__ import annotations

from rollout_world import NOW, World, assignment, content_of, report, start_rollout

from fedota.server import rollouts
from fedota.server.rollouts.policy import within
from fedota.storage.models import DeviceState, UpdateState


def test_members_get_the_target_with_the_model_they_run_as_base(world: World) -> None:
    devices = world.add_devices(30)
    view = start_rollout(world, [50, 100])
    members = set(world.records(view.id))
    for device in devices:
        got = assignment(world, device)
        if device not in members:
            assert got is None
            continue
        assert got is not None and not got.rollback
        assert (got.target.family, got.target.version, got.target.variant) == ("digits", 2, "int8")
        assert got.target.content_sha256 == content_of(2, "int8")
        assert got.current is not None and got.current.content_sha256 == content_of(1, "int8")


def test_an_unknown_current_model_is_learnt_from_the_first_poll(world: World) -> None:
    world.add_devices(30, runs=None)
    view = start_rollout(world, [100])
    device = sorted(world.records(view.id))[0]
    assert world.records(view.id)[device].from_artifact_id is None
    assert assignment(world, device, runs=None).current is None  # type: ignore[union-attr]
    got = assignment(world, device, runs=1)
    assert got is not None and got.current is not None
    assert got.current.content_sha256 == content_of(1, "int8")
    assert world.records(view.id)[device].from_artifact_id == got.current.id


def test_late_joiners_within_the_current_stage_are_assigned_to_it(world: World) -> None:
    originals = world.add_devices(30)
    view = start_rollout(world, [50, 100], rollouts.Thresholds(1.0, 0.5))
    before = set(world.records(view.id))
    late = world.add_devices(40)
    for device in late:
        got = assignment(world, device)
        assert (got is not None) == within(view.id, device, 0.5)
    records = world.records(view.id)
    joined = {d for d in late if within(view.id, d, 0.5)}
    assert set(records) == before | joined
    assert all(records[d].stage_index == 0 for d in joined)
    assert world.audit_actions().count("device_update.assign") == len(joined)
    # The late joiners count in the stage's gate: it passes once they are healthy too.
    for device in sorted(records):
        report(world, view.id, device, UpdateState.HEALTHY, runs=2)
    advanced = rollouts.get(world.database, view.id)
    assert advanced.current_stage == 1
    assert advanced.stages[0].counts.assigned == len(before | joined)
    # Entering stage 2 assigns everyone else, including late joiners beyond 50%.
    after = world.records(view.id)
    assert set(after) == set(originals) | set(late)
    assert {d for d, r in after.items() if r.stage_index == 1} == set(after) - before - joined


def test_pause_stops_new_assignments_but_lets_started_ones_finish(world: World) -> None:
    world.add_devices(40)
    view = start_rollout(world, [50, 100])
    started, waiting = sorted(world.records(view.id))[:2]
    report(world, view.id, started, UpdateState.DOWNLOADING, runs=1)
    rollouts.pause(world.database, world.operator, view.id, "investigating", NOW)

    assert assignment(world, waiting) is None
    resumed_download = assignment(world, started)
    assert resumed_download is not None and resumed_download.state == UpdateState.DOWNLOADING
    late = [d for d in world.add_devices(20) if within(view.id, d, 0.5)]
    assert late and all(assignment(world, d) is None for d in late)
    assert not set(late) & set(world.records(view.id))

    rollouts.resume(world.database, world.operator, view.id, "", NOW)
    assert assignment(world, waiting) is not None
    assert all(assignment(world, d) is not None for d in late)


def test_a_device_that_already_runs_the_target_counts_healthy(world: World) -> None:
    world.add_devices(8, runs=2)
    view = start_rollout(world, [100])
    for device in world.records(view.id):
        got = assignment(world, device, runs=2)
        assert got is not None and got.target.content_sha256 == content_of(2, "int8")
    records = world.records(view.id)
    assert {r.state for r in records.values()} == {UpdateState.HEALTHY}
    assert {r.reason for r in records.values()} == {"already runs the target"}
    assert rollouts.get(world.database, view.id).state.value == "completed"


def test_devices_not_accepted_or_in_no_rollout_get_nothing(world: World) -> None:
    (pending,) = world.add_devices(1, state=DeviceState.PENDING)
    world.add_cohort("field")
    (elsewhere,) = world.add_devices(1, cohort="field")
    start_rollout(world, [100])
    assert assignment(world, pending) is None
    assert assignment(world, elsewhere) is None


def test_bytes_fetched_are_summed_against_full_downloads(world: World) -> None:
    world.add_devices(6)
    view = start_rollout(world, [100])
    devices = sorted(world.records(view.id))
    for sent in (100, 400, 250):  # a lower count (a retried report) never lowers the total
        rollouts.report_status(
            world.database,
            devices[0],
            view.id,
            UpdateState.DOWNLOADING,
            "",
            NOW,
            bytes_received=sent,
        )
    shown = rollouts.get(world.database, view.id)
    assert (shown.bytes_received, shown.full_bytes) == (400, 2000)
