"""The enrollment slice end to end: real coordinator and daemon processes over real sockets."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from e2e_support import list_devices, wait_until

from fedota.cli._local_fleet import (
    LocalCoordinator,
    LocalProcess,
    ProcessFailed,
    run_admin,
    start_device,
)
from fedota.cli.errors import EXIT_REFUSED
from fedota.protos.v1 import fleet_pb2, fleet_pb2_grpc

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

EXIT_DEADLINE = 30.0


@pytest.fixture
def devices(tmp_path: Path) -> Iterator[Callable[..., LocalProcess]]:
    """Start device daemons; every one is stopped at the end, whatever happened."""
    started: list[LocalProcess] = []

    def start(coordinator: LocalCoordinator, name: str, token: str) -> LocalProcess:
        daemon = start_device(
            name,
            coordinator.public_address,
            token,
            tmp_path / name,
            log_dir=tmp_path / "logs",
        )
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.stop()


def test_token_uses_accept_revoke_and_restart(
    coordinator: LocalCoordinator, devices: Callable[..., LocalProcess], tmp_path: Path
) -> None:
    minted = json.loads(run_admin(coordinator, "tokens", "create", "--uses", "2", "--json"))
    token = minted["token"]

    first = devices(coordinator, "device-a", token)
    second = devices(coordinator, "device-b", token)
    first.wait_for_line(re.compile(r"enrolled as dev_"), 60)
    second.wait_for_line(re.compile(r"enrolled as dev_"), 60)

    third = devices(coordinator, "device-c", token)
    assert third.wait(EXIT_DEADLINE) == EXIT_REFUSED
    assert "used 2 of 2" in third.tail(), third.tail()
    assert not (tmp_path / "device-c" / "identity.json").exists()

    enrolled = list_devices(coordinator)
    assert sorted(d["state"] for d in enrolled) == ["pending", "pending"]
    ids = {
        name: json.loads((tmp_path / name / "identity.json").read_text())["device_id"]
        for name in ("device-a", "device-b")
    }
    assert set(ids.values()) == {d["id"] for d in enrolled}

    for device_id in ids.values():
        run_admin(coordinator, "devices", "accept", device_id)
    first.wait_for_line(re.compile(r"accepted"), 60)
    second.wait_for_line(re.compile(r"accepted"), 60)
    wait_until(
        lambda: all(d["last_seen"] for d in list_devices(coordinator)), "heartbeats after accept"
    )

    run_admin(coordinator, "devices", "revoke", ids["device-b"], "--reason", "stolen")
    assert second.wait(EXIT_DEADLINE) == EXIT_REFUSED
    assert "revoked" in second.tail(), second.tail()
    shown = json.loads(run_admin(coordinator, "devices", "show", ids["device-b"], "--json"))
    assert shown["state"] == "revoked"

    # Restart the accepted daemon with the same state directory: same identity, no new enrollment.
    assert first.stop() == 0
    restarted = devices(coordinator, "device-a", token)
    restarted.wait_for_line(re.compile(re.escape(ids["device-a"])), 60)
    wait_until(
        lambda: {d["id"] for d in list_devices(coordinator)} == set(ids.values()),
        "the restarted daemon to report in",
    )
    assert (
        json.loads((tmp_path / "device-a" / "identity.json").read_text())["device_id"]
        == ids["device-a"]
    )
    assert len(list_devices(coordinator)) == 2


def forged_token(coordinator: LocalCoordinator) -> str:
    """A well-formed API token pinning the right CA, with a secret the coordinator never issued."""
    real = coordinator.admin_token
    kind, _secret, ca = real.split(".")
    return f"{kind}.{'A' * 43}.{ca}"


def test_calls_without_credentials_are_refused(
    coordinator: LocalCoordinator, tmp_path: Path
) -> None:
    with pytest.raises(ProcessFailed, match="exited 4"):
        run_admin(coordinator, "devices", "list", token=forged_token(coordinator))

    ca = (coordinator.data_dir / "ca.crt").read_bytes()
    host, port = coordinator.device_address.rsplit(":", 1)
    # The device port without a client certificate: the TLS handshake itself fails.
    with grpc.secure_channel(
        f"{host}:{port}", grpc.ssl_channel_credentials(root_certificates=ca)
    ) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            fleet_pb2_grpc.FleetStub(channel).Heartbeat(fleet_pb2.HeartbeatRequest(), timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    # A device call on the public port carries no certificate at all.
    with grpc.secure_channel(
        coordinator.public_address, grpc.ssl_channel_credentials(root_certificates=ca)
    ) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            fleet_pb2_grpc.FleetStub(channel).Heartbeat(fleet_pb2.HeartbeatRequest(), timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
