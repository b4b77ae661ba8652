"""Concurrent enrollments racing for a token's last uses: exactly max_uses of them win."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import grpc
from coordinator_support import EnrolledDevice, audit_actions, enroll, new_key
from sqlalchemy import func, select

from fedota.server import Coordinator
from fedota.storage.db import Database
from fedota.storage.models import Device, DeviceCredential, EnrollmentToken

MAX_USES = 3
CONTENDERS = 8


def test_only_max_uses_enrollments_succeed_when_they_race(
    coordinator: Coordinator, make_token: Callable[..., str], database: Database
) -> None:
    token = make_token(uses=MAX_USES)
    keys = [new_key() for _ in range(CONTENDERS)]
    start = threading.Barrier(CONTENDERS, timeout=30)

    def attempt(index: int) -> EnrolledDevice | grpc.RpcError:
        start.wait()
        try:
            return enroll(coordinator, token, key=keys[index])
        except grpc.RpcError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=CONTENDERS) as pool:
        outcomes = list(pool.map(attempt, range(CONTENDERS)))

    won = [o for o in outcomes if isinstance(o, EnrolledDevice)]
    lost = [o for o in outcomes if isinstance(o, grpc.RpcError)]
    assert len(won) == MAX_USES
    assert {(e.code(), e.details()) for e in lost} == {
        (
            grpc.StatusCode.UNAUTHENTICATED,
            f"enrollment token has been used {MAX_USES} of {MAX_USES} times",
        )
    }
    with database.session() as session:
        assert session.scalars(select(EnrollmentToken.uses)).one() == MAX_USES
        assert session.scalar(select(func.count()).select_from(Device)) == MAX_USES
        assert session.scalar(select(func.count()).select_from(DeviceCredential)) == MAX_USES
    enrolls = [a for a in audit_actions(database) if a[0] == "device.enroll"]
    assert sorted(a[2] for a in enrolls) == sorted(d.id for d in won)


def test_the_same_key_racing_itself_enrolls_once(
    coordinator: Coordinator, make_token: Callable[..., str], database: Database
) -> None:
    token = make_token(uses=CONTENDERS)
    key = new_key()
    start = threading.Barrier(4, timeout=30)

    def attempt(_: int) -> EnrolledDevice | grpc.RpcError:
        start.wait()
        try:
            return enroll(coordinator, token, key=key)
        except grpc.RpcError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = list(pool.map(attempt, range(4)))

    won = [o for o in outcomes if isinstance(o, EnrolledDevice)]
    assert len(won) == 1
    assert {o.code() for o in outcomes if isinstance(o, grpc.RpcError)} == {
        grpc.StatusCode.ALREADY_EXISTS
    }
    with database.session() as session:
        assert session.scalars(select(EnrollmentToken.uses)).one() == 1
