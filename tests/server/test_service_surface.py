"""What every client sees of the server: health, reflection, and how failures reach the wire."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from coordinator_support import TIMEOUT, enroll, public_channel, rpc_error, snapshot
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from sqlalchemy import text

from fedota.protos.v1 import fleet_pb2, fleet_pb2_grpc
from fedota.server import Coordinator
from fedota.server.errors import NotFound
from fedota.server.rpc import add_service
from fedota.storage.db import Database

FLEET = fleet_pb2.DESCRIPTOR.services_by_name["Fleet"]
INTERNAL_MESSAGE = re.compile(r"^internal error \(ref ([0-9a-f]{8}); see the coordinator log\)$")


@pytest.mark.parametrize("service", ["", "fedota.v1.Fleet", "fedota.v1.Admin"])
def test_health_reports_serving(coordinator: Coordinator, service: str) -> None:
    with public_channel(coordinator) as channel:
        response = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT
        )

    assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_services(coordinator: Coordinator) -> None:
    with public_channel(coordinator) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        responses = list(stub.ServerReflectionInfo(iter([request]), timeout=TIMEOUT))

    names = {s.name for s in responses[0].list_services_response.service}
    assert {"fedota.v1.Fleet", "fedota.v1.Admin", "grpc.health.v1.Health"} <= names


class _Failing:
    """A Fleet servicer whose calls fail in each way a handler can."""

    def Enroll(self, request: object, context: object) -> object:
        raise NotFound("nothing here")

    def Heartbeat(self, request: object, context: object) -> object:
        raise ZeroDivisionError("secret detail")

    def GetDevice(self, request: object, context: object) -> object:
        return fleet_pb2.GetDeviceRequest()  # the wrong type: serialising it still works

    def RenewCertificate(self, request: object, context: object) -> object:
        raise KeyError("secret detail")


@pytest.fixture
def failing_stub() -> Iterator[fleet_pb2_grpc.FleetStub]:
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    add_service(server, FLEET, _Failing())
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield fleet_pb2_grpc.FleetStub(channel)
    finally:
        server.stop(0)


def test_a_service_error_becomes_its_status(failing_stub: fleet_pb2_grpc.FleetStub) -> None:
    error = rpc_error(lambda: failing_stub.Enroll(fleet_pb2.EnrollRequest(), timeout=TIMEOUT))

    assert (error.code(), error.details()) == (grpc.StatusCode.NOT_FOUND, "nothing here")


@pytest.mark.parametrize("method", ["Heartbeat", "RenewCertificate"])
def test_an_unexpected_exception_is_internal_with_a_logged_reference(
    failing_stub: fleet_pb2_grpc.FleetStub, caplog: pytest.LogCaptureFixture, method: str
) -> None:
    request = getattr(fleet_pb2, f"{method}Request")()
    with caplog.at_level(logging.ERROR, logger="fedota.server.rpc"):
        error = rpc_error(lambda: getattr(failing_stub, method)(request, timeout=TIMEOUT))

    assert error.code() == grpc.StatusCode.INTERNAL
    match = INTERNAL_MESSAGE.match(error.details())
    assert match is not None and "secret" not in error.details()
    logged = [r for r in caplog.records if match[1] in r.getMessage()]
    assert logged and logged[0].exc_info is not None


def test_a_failing_database_is_internal_and_rolls_back(
    coordinator: Coordinator, make_token: Callable[..., str], database: Database
) -> None:
    token = make_token()
    with database.transaction() as session:
        session.execute(text("DROP TABLE audit_events"))
    before = snapshot(database, skip=frozenset({"audit_events"}))

    error = rpc_error(lambda: enroll(coordinator, token))

    assert error.code() == grpc.StatusCode.INTERNAL
    assert INTERNAL_MESSAGE.match(error.details())
    assert snapshot(database, skip=frozenset({"audit_events"})) == before
