"""Two coordinator replicas (two Database handles, one database) at once: no report, advance,
abort or assignment is lost or made twice."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import pytest
from rollout_world import NOW, World, assignment, content_of, start_rollout

from fedota.server import rollouts
from fedota.server.rollouts import CohortBusy, Thresholds
from fedota.server.rollouts.policy import within
from fedota.storage.db import Database
from fedota.storage.models import RolloutState, UpdateState

T = TypeVar("T")
THREADS = 8


@pytest.fixture
def replicas(db_url: str) -> Iterator[tuple[Database, Database]]:
    first, second = Database(db_url), Database(db_url)
    try:
        yield first, second
    finally:
        first.dispose()
        second.dispose()


def race(calls: Sequence[Callable[[], T]]) -> list[T | Exception]:
    """Run the calls on THREADS threads, released together; each result or its exception."""
    start = threading.Barrier(min(THREADS, len(calls)), timeout=60)

    def run(call: Callable[[], T]) -> T | Exception:
        if len(calls) <= THREADS:
            start.wait()
        try:
            return call()
        except Exception as exc:  # collected: the test asserts on every outcome
            return exc

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        return list(pool.map(run, calls, timeout=120))


def reporter(
    database: Database, rollout_id: str, device: str, status: UpdateState, runs: int | None
) -> Callable[[], UpdateState]:
    content = content_of(runs, "int8") if runs else ""
    return lambda: rollouts.report_status(
        database, device, rollout_id, status, "", NOW, content_sha256=content
    )


def test_healthy_reports_racing_on_two_replicas_advance_the_stage_once(
    world: World, replicas: tuple[Database, Database]
) -> None:
    world.add_devices(40)
    view = start_rollout(world, [50, 100], Thresholds(1.0, 0.5))
    first = sorted(world.records(view.id))[:THREADS]
    # Everyone but the racers is healthy already; the stage passes on the last racing report.
    for device in sorted(world.records(view.id))[THREADS:]:
        rollouts.report_status(
            world.database,
            device,
            view.id,
            UpdateState.HEALTHY,
            "",
            NOW,
            content_sha256=content_of(2, "int8"),
        )
    outcomes = race(
        [
            reporter(replicas[i % 2], view.id, device, UpdateState.HEALTHY, 2)
            for i, device in enumerate(first)
        ]
    )
    assert outcomes == [UpdateState.HEALTHY] * len(first)
    shown = rollouts.get(world.database, view.id)
    assert shown.current_stage == 1, "no report was lost: the stage saw all of them"
    assert shown.stages[0].counts.healthy == shown.stages[0].counts.assigned
    assert world.audit_actions(view.id).count("rollout.advance") == 1


def test_canary_failures_racing_abort_once_and_every_report_is_kept(
    world: World, replicas: tuple[Database, Database]
) -> None:
    world.add_devices(80)
    view = start_rollout(world, [30, 100], Thresholds(0.9, 0.05))
    canaries = sorted(world.records(view.id))[:THREADS]
    outcomes = race(
        [
            reporter(replicas[i % 2], view.id, device, UpdateState.FAILED, None)
            for i, device in enumerate(canaries)
        ]
    )
    assert outcomes == [UpdateState.FAILED] * len(canaries)
    assert rollouts.get(world.database, view.id).state == RolloutState.ABORTED
    assert world.audit_actions(view.id).count("rollout.abort") == 1
    records = world.records(view.id)
    assert sum(r.state == UpdateState.FAILED for r in records.values()) == len(canaries)
    assert {r.stage_index for r in records.values()} == {0}


def test_creates_racing_for_one_cohort_make_one_rollout(
    world: World, replicas: tuple[Database, Database]
) -> None:
    world.add_devices(10)

    def create(database: Database) -> Callable[[], str]:
        return lambda: (
            rollouts.create(
                database,
                world.operator,
                release=world.release(2),
                cohort="canary",
                stage_percents=[50, 100],
                thresholds=Thresholds(),
                now=NOW,
            ).id
        )

    outcomes = race([create(replicas[i % 2]) for i in range(THREADS)])
    made = [o for o in outcomes if isinstance(o, str)]
    refused = [o for o in outcomes if isinstance(o, CohortBusy)]
    assert len(made) == 1 and len(refused) == THREADS - 1, outcomes
    assert {e.rollout_id for e in refused} == set(made)
    assert [v.id for v in rollouts.list_rollouts(world.database)] == made


def test_a_late_joiner_polling_on_both_replicas_is_assigned_once(
    world: World, replicas: tuple[Database, Database]
) -> None:
    world.add_devices(20)
    view = start_rollout(world, [50, 100], Thresholds(1.0, 0.5))
    late = next(d for d in world.add_devices(40) if within(view.id, d, 0.5))

    def poll(database: Database) -> Callable[[], str | None]:
        def call() -> str | None:
            got = rollouts.assignment_for(database, late, content_of(1, "int8"), NOW)
            return got and got.target.id

        return call

    outcomes = race([poll(replicas[i % 2]) for i in range(THREADS)])
    assert len(set(outcomes)) == 1 and isinstance(outcomes[0], str), outcomes
    assert world.audit_actions().count("device_update.assign") == 1
    assert world.records(view.id)[late].state == UpdateState.ASSIGNED
    assert assignment(world, late) is not None
