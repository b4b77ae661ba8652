"""Creating, listing and showing rollouts, and what creation refuses (writing nothing)."""

from __future__ import annotations

import datetime as dt

import pytest
from rollout_world import NOW, World

from fedota.server import rollouts
from fedota.server.errors import InvalidArgument, NotFound
from fedota.server.rollouts import (
    CohortBusy,
    InvalidRolloutPolicy,
    ReleaseNotFound,
    ReleaseNotReady,
    RolloutNotFound,
    Thresholds,
)
from fedota.server.rollouts.policy import within
from fedota.storage.models import (
    DeviceState,
    ReleaseState,
    RolloutState,
    StageState,
    UpdateState,
)


def start(
    world: World, release: str | None = None, cohort: str = "canary", **kwargs: object
) -> rollouts.RolloutView:
    options = {"stage_percents": [10, 50, 100], "thresholds": Thresholds(), "now": NOW, **kwargs}
    return rollouts.create(
        world.database,
        world.operator,
        release=release or world.release(2),
        cohort=cohort,
        **options,  # type: ignore[arg-type]
    )


def test_create_assigns_the_first_stage_and_records_who(world: World) -> None:
    devices = world.add_devices(150)
    view = start(world, thresholds=Thresholds(0.9, 0.1))

    members = {d for d in devices if within(view.id, d, 0.1)}
    records = world.records(view.id)
    assert set(records) == members
    assert {r.stage_index for r in records.values()} <= {0}
    assert {r.state for r in records.values()} <= {UpdateState.ASSIGNED}
    assert (view.state, view.current_stage, view.ref, view.cohort) == (
        RolloutState.RUNNING,
        0,
        "digits@v2",
        "canary",
    )
    assert [s.state for s in view.stages] == [
        StageState.ACTIVE,
        StageState.WAITING,
        StageState.WAITING,
    ]
    assert view.stages[0].counts.assigned == len(members)
    assert view.thresholds == Thresholds(0.9, 0.1)
    assert view.created_by == world.operator.id
    assert world.audit_actions(view.id) == ["rollout.create"]


def test_a_version_ref_names_its_newest_ready_release(world: World) -> None:
    world.add_devices(5)
    view = start(world, release="digits@v2")
    assert view.release_id == world.release(2)


def test_devices_without_a_variant_or_not_accepted_are_left_out(world: World) -> None:
    world.add_devices(20, hardware_class="mcu-int8")
    world.add_devices(20, state=DeviceState.PENDING)
    view = start(world, stage_percents=[100])
    assert world.records(view.id) == {}
    # Nothing to wait for: the only stage holds no devices, so the rollout completes.
    assert view.state == RolloutState.COMPLETED
    assert view.reason == "stage 1 (100%) holds no devices"


def test_an_empty_cohort_walks_every_stage_and_says_why(world: World) -> None:
    view = start(world)
    assert view.state == RolloutState.COMPLETED
    assert [s.state for s in view.stages] == [StageState.PASSED] * 3
    assert world.audit_actions(view.id) == [
        "rollout.create",
        "rollout.advance",
        "rollout.advance",
        "rollout.complete",
    ]


@pytest.mark.parametrize(
    ("release_state", "error"),
    [(ReleaseState.BUILDING, ReleaseNotReady), (ReleaseState.WITHDRAWN, ReleaseNotReady)],
)
def test_only_a_ready_release_rolls_out(
    world: World, release_state: ReleaseState, error: type[Exception]
) -> None:
    release = world.add_version(3, state=release_state)
    with pytest.raises(error, match=f"release {release} is {release_state.value}"):
        start(world, release=release)
    with pytest.raises(error):
        start(world, release="digits@v3")
    assert rollouts.list_rollouts(world.database) == []


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"release": "rel_0000000000000000"}, ReleaseNotFound, "release rel_0000000000000000"),
        ({"release": "digits@v9"}, NotFound, "model version digits@v9 does not exist"),
        ({"release": "digits@vx"}, InvalidArgument, "is not a model version"),
        ({"cohort": "nobody"}, NotFound, "cohort nobody does not exist"),
        ({"cohort": "Bad Name"}, InvalidArgument, "is not a cohort name"),
        ({"stage_percents": [10, 5, 100]}, InvalidRolloutPolicy, "stage 2 (5%) must be above"),
        ({"stage_percents": [10, 50]}, InvalidRolloutPolicy, "the last stage must be 100%"),
    ],
)
def test_bad_requests_are_refused_and_write_nothing(
    world: World, kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    world.add_devices(5)
    with pytest.raises(error) as raised:
        start(world, **kwargs)  # type: ignore[arg-type]
    assert message in str(raised.value)
    assert rollouts.list_rollouts(world.database) == []
    assert world.audit_actions() == []


@pytest.mark.parametrize("hold", ["running", "paused"])
def test_one_active_rollout_per_cohort(world: World, hold: str) -> None:
    world.add_devices(10)
    first = start(world)
    if hold == "paused":
        rollouts.pause(world.database, world.operator, first.id, "", NOW)
    with pytest.raises(CohortBusy, match=f"cohort canary already has rollout {first.id} {hold}"):
        start(world)
    # Another cohort is free, and so is this one once the first rollout is aborted.
    world.add_cohort("field")
    start(world, cohort="field")
    rollouts.abort(world.database, world.operator, first.id, "wrong release", NOW)
    second = start(world)
    assert [v.id for v in rollouts.list_rollouts(world.database, cohort="canary")] == [
        second.id,
        first.id,
    ]


def test_list_is_newest_first_and_get_refuses_unknown_ids(world: World) -> None:
    world.add_cohort("field")
    first = start(world)
    second = start(world, cohort="field", now=NOW + dt.timedelta(seconds=1))
    assert [v.id for v in rollouts.list_rollouts(world.database)] == [second.id, first.id]
    assert rollouts.get(world.database, first.id) == first
    with pytest.raises(RolloutNotFound, match="rollout rol_00000000000000ff does not exist"):
        rollouts.get(world.database, "rol_00000000000000ff")
    with pytest.raises(InvalidArgument, match="is not a rollout id"):
        rollouts.get(world.database, "dev_00000000000000ff")
