"""Bad input on every RPC of updates.proto, from an accepted device: a fitting status, a readable
one-line message naming the field, and a database exactly as it was."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from coordinator_support import (
    TIMEOUT,
    AdminClient,
    EnrolledDevice,
    coordinator_settings,
    device_channel,
    public_channel,
    snapshot,
)
from ota_support import accepted_device, release, rollout, write_versions

from fedota.protos.v1 import admin_pb2, updates_pb2
from fedota.server import Coordinator
from fedota.storage.db import Database

pytestmark = pytest.mark.timeout(120)

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
TRUNCATED = b"\x0a\x05ab"
BAD_UTF8 = b"\x0a\x02\xff\xfe"
SHA = "ab" * 32


@dataclass
class World:
    """An accepted device in the default cohort, and a running rollout of another cohort."""

    coordinator: Coordinator
    device: EnrolledDevice
    other_rollout: str


@pytest.fixture(scope="module")
def world(module_db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    data_dir = tmp_path_factory.mktemp("updates-bad-input")
    v1, _ = write_versions(tmp_path_factory.mktemp("versions"))
    coordinator = Coordinator.start(coordinator_settings(data_dir, module_db_url))
    try:
        with public_channel(coordinator) as channel:
            admin = AdminClient(channel, coordinator.admin_token)
            release(admin, v1, "digits@v1")
            admin.CreateCohort(admin_pb2.CreateCohortRequest(name="lab"))
            accepted_device(coordinator, admin, cohort="lab")  # keeps the lab rollout running
            device = accepted_device(coordinator, admin)
            other = rollout(admin, "digits@v1", [100], cohort="lab")
        yield World(coordinator, device, other.id)
    finally:
        coordinator.stop(grace=0)


@pytest.fixture(scope="module")
def database(module_db_url: str) -> Iterator[Database]:
    db = Database(module_db_url)
    try:
        yield db
    finally:
        db.dispose()


def _report(**fields: Any) -> Callable[[World], updates_pb2.ReportStatusRequest]:
    def build(w: World) -> updates_pb2.ReportStatusRequest:
        base: dict[str, Any] = {
            "rollout_id": w.other_rollout,
            "status": updates_pb2.UPDATE_STATUS_DOWNLOADING,
        }
        return updates_pb2.ReportStatusRequest(**{**base, **fields})

    return build


Case = tuple[str, Callable[[World], Any], grpc.StatusCode, str]

CASES: list[Case] = [
    (
        "GetAssignment",
        lambda w: updates_pb2.GetAssignmentRequest(content_sha256="xyz"),
        INVALID,
        "content_sha256: must be 64 lower-case hex digits",
    ),
    (
        "GetAssignment",
        lambda w: updates_pb2.GetAssignmentRequest(content_sha256=SHA.upper()),
        INVALID,
        "content_sha256: must be 64 lower-case hex digits",
    ),
    ("GetAssignment", lambda w: BAD_UTF8, INVALID, "GetAssignmentRequest"),
    ("ReportStatus", _report(status=0), INVALID, "status: must be one of downloading"),
    ("ReportStatus", _report(status=42), INVALID, "status: must be one of"),
    ("ReportStatus", _report(rollout_id=""), INVALID, "rollout_id: is required"),
    ("ReportStatus", _report(rollout_id="r-1"), INVALID, "'r-1' is not a rollout id"),
    ("ReportStatus", _report(rollout_id="rol_00ff"), NOT_FOUND, "rollout rol_00ff does not"),
    ("ReportStatus", _report(), NOT_FOUND, "has no assignment in rollout"),
    ("ReportStatus", _report(reason="r" * 1001), INVALID, "reason: must be at most 1000"),
    ("ReportStatus", _report(reason="a\x07b"), INVALID, "reason: must not contain control"),
    ("ReportStatus", _report(content_sha256="12"), INVALID, "content_sha256: must be 64"),
    (
        "ReportStatus",
        _report(bytes_received=2**63),
        INVALID,
        "bytes_received: must be at most",
    ),
    ("ReportStatus", lambda w: TRUNCATED, INVALID, "ReportStatusRequest"),
    ("Fetch", lambda w: updates_pb2.FetchRequest(), NOT_FOUND, "is not a file of the update"),
    (
        "Fetch",
        lambda w: updates_pb2.FetchRequest(path="metadata/../../secret"),
        NOT_FOUND,
        "is not a path of the update repository",
    ),
    (
        "Fetch",
        lambda w: updates_pb2.FetchRequest(path="metadata/99.root.json"),
        NOT_FOUND,
        "metadata/99.root.json is not published",
    ),
    (
        "Fetch",
        lambda w: updates_pb2.FetchRequest(path=f"targets/artifacts/{SHA}.x.safetensors"),
        NOT_FOUND,
        "is not a file of the update repository",
    ),
    (
        "Fetch",
        lambda w: updates_pb2.FetchRequest(path="m" * 2000),
        NOT_FOUND,
        "is not a path of the update repository",
    ),
    (
        "Fetch",
        lambda w: updates_pb2.FetchRequest(path="metadata/1.root.json", offset=2**40),
        grpc.StatusCode.OUT_OF_RANGE,
        "offset 1099511627776 is past the end of",
    ),
    ("Fetch", lambda w: TRUNCATED, INVALID, "FetchRequest"),
]


def _invoke(w: World, method: str, payload: Any) -> None:
    data = payload if isinstance(payload, bytes) else payload.SerializeToString()
    path = f"/fedota.v1.Updates/{method}"
    with device_channel(w.coordinator, w.device.key, w.device.certificate_pem) as channel:
        if method == "Fetch":
            list(channel.unary_stream(path)(data, timeout=TIMEOUT))
        else:
            channel.unary_unary(path)(data, timeout=TIMEOUT)


@pytest.mark.parametrize(
    ("method", "build", "code", "message"), CASES, ids=[f"{c[0]}-{c[3][:40]}" for c in CASES]
)
def test_bad_input_is_refused_and_changes_nothing(
    world: World,
    database: Database,
    method: str,
    build: Callable[[World], Any],
    code: grpc.StatusCode,
    message: str,
) -> None:
    payload = build(world)
    before = snapshot(database)

    with pytest.raises(grpc.RpcError) as raised:
        _invoke(world, method, payload)

    error = raised.value
    assert error.code() == code, error.details()
    assert message in error.details()
    assert "Traceback" not in error.details() and "\n" not in error.details()
    assert snapshot(database) == before


def test_every_rpc_of_updates_has_a_bad_input_case() -> None:
    service = updates_pb2.DESCRIPTOR.services_by_name["Updates"]

    assert {m.name for m in service.methods} - {method for method, *_ in CASES} == set()
