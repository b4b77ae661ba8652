"""Admin device operations: list (filters, pages), show, and the accept / reject / revoke moves."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest
from coordinator_support import AdminClient, enroll, rpc_error, snapshot
from sqlalchemy import select

from fedota.protos.v1 import admin_pb2, device_pb2
from fedota.server import Coordinator
from fedota.storage.db import Database
from fedota.storage.models import DeviceCredential

PENDING = device_pb2.DEVICE_STATE_PENDING
ACCEPTED = device_pb2.DEVICE_STATE_ACCEPTED
REJECTED = device_pb2.DEVICE_STATE_REJECTED
REVOKED = device_pb2.DEVICE_STATE_REVOKED
MOVES = {"AcceptDevice": ACCEPTED, "RejectDevice": REJECTED, "RevokeDevice": REVOKED}


def _move(admin: AdminClient, verb: str, device_id: str, reason: str = "") -> device_pb2.Device:
    return getattr(admin, verb)(admin_pb2.DeviceStateChange(id=device_id, reason=reason))


@pytest.mark.parametrize("verb", MOVES)
def test_moves_from_pending(
    coordinator: Coordinator, admin: AdminClient, make_token: Callable[..., str], verb: str
) -> None:
    device = enroll(coordinator, make_token())

    moved = _move(admin, verb, device.id, "checked by hand")

    assert moved.state == MOVES[verb]
    assert admin.GetDevice(admin_pb2.DeviceRef(id=device.id)).state == MOVES[verb]
    assert moved.state_reason == ("" if verb == "AcceptDevice" else "checked by hand")


@pytest.mark.parametrize(
    ("setup", "verb", "message"),
    [
        ("AcceptDevice", "AcceptDevice", "is accepted; it cannot be accepted"),
        ("AcceptDevice", "RejectDevice", "is accepted; it cannot be rejected"),
        ("RevokeDevice", "AcceptDevice", "is revoked; it cannot be accepted"),
        ("RevokeDevice", "RevokeDevice", "is revoked; it cannot be revoked"),
        ("RejectDevice", "AcceptDevice", "is rejected; it cannot be accepted"),
        ("RejectDevice", "RevokeDevice", "is rejected; it cannot be revoked"),
    ],
)
def test_moves_not_allowed_from_the_current_state(
    coordinator: Coordinator,
    admin: AdminClient,
    make_token: Callable[..., str],
    database: Database,
    setup: str,
    verb: str,
    message: str,
) -> None:
    device = enroll(coordinator, make_token())
    _move(admin, setup, device.id)
    before = snapshot(database)

    error = rpc_error(lambda: _move(admin, verb, device.id))

    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error.details() == f"device {device.id} {message}"
    assert snapshot(database) == before


def test_revoking_an_accepted_device_revokes_its_certificates(
    coordinator: Coordinator, admin: AdminClient, make_token: Callable[..., str], database: Database
) -> None:
    device = enroll(coordinator, make_token(auto_accept=True))
    assert admin.GetDevice(admin_pb2.DeviceRef(id=device.id)).certificate_serial

    revoked = _move(admin, "RevokeDevice", device.id, "stolen")

    assert revoked.state == REVOKED
    assert revoked.certificate_serial == ""
    assert not revoked.HasField("certificate_expires_at")
    with database.session() as session:
        assert all(c.revoked_at is not None for c in session.scalars(select(DeviceCredential)))


def test_unknown_devices_are_not_found(coordinator: Coordinator, admin: AdminClient) -> None:
    for call in (
        lambda: admin.GetDevice(admin_pb2.DeviceRef(id="dev_0000000000000000")),
        lambda: _move(admin, "AcceptDevice", "dev_0000000000000000"),
    ):
        error = rpc_error(call)
        assert error.code() == grpc.StatusCode.NOT_FOUND
        assert error.details() == "device dev_0000000000000000 does not exist"


def test_list_filters_by_state_and_cohort(
    coordinator: Coordinator, admin: AdminClient, make_token: Callable[..., str]
) -> None:
    admin.CreateCohort(admin_pb2.CreateCohortRequest(name="lab"))
    pending = enroll(coordinator, make_token())
    accepted = enroll(coordinator, make_token(auto_accept=True))
    in_lab = enroll(coordinator, make_token(cohort="lab"))

    def ids(**filters: object) -> list[str]:
        request = admin_pb2.ListDevicesRequest(**filters)  # type: ignore[arg-type]
        return [d.id for d in admin.ListDevices(request).devices]

    assert ids() == [pending.id, accepted.id, in_lab.id]
    assert ids(state=PENDING) == [pending.id, in_lab.id]
    assert ids(state=ACCEPTED) == [accepted.id]
    assert ids(cohort="lab") == [in_lab.id]
    assert ids(cohort="default", state=PENDING) == [pending.id]
    cohorts = admin.ListCohorts(admin_pb2.ListCohortsRequest()).cohorts
    assert {c.name: c.device_count for c in cohorts} == {"default": 2, "lab": 1}


def test_list_pages_through_every_device_once(
    coordinator: Coordinator, admin: AdminClient, make_token: Callable[..., str]
) -> None:
    token = make_token(uses=5)
    enrolled = [enroll(coordinator, token).id for _ in range(5)]

    seen: list[str] = []
    page_token = ""
    for _ in range(10):
        page = admin.ListDevices(admin_pb2.ListDevicesRequest(page_size=2, page_token=page_token))
        assert len(page.devices) <= 2
        seen += [d.id for d in page.devices]
        page_token = page.next_page_token
        if not page_token:
            break

    assert seen == enrolled


def test_a_page_token_is_bound_to_its_filters(
    coordinator: Coordinator, admin: AdminClient, make_token: Callable[..., str]
) -> None:
    token = make_token(uses=2)
    enroll(coordinator, token)
    enroll(coordinator, token)
    page = admin.ListDevices(admin_pb2.ListDevicesRequest(page_size=1))

    error = rpc_error(
        lambda: admin.ListDevices(
            admin_pb2.ListDevicesRequest(
                page_size=1, page_token=page.next_page_token, state=PENDING
            )
        )
    )

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("page_token:")
