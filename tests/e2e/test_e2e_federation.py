"""The federation end to end: the coordinator's SuperLink and the daemons' SuperNodes.

A coordinator process runs its Flower SuperLink (TLS from the fleet CA, SuperNode
authentication); accepted daemons are told where it is and join with their enrollment keys;
a revoked device's key is unregistered and its SuperNode stops with its daemon; a daemon killed
outright leaves no SuperNode behind.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import list_devices, wait_until

from fedota.cli._local_fleet import LocalCoordinator, LocalProcess, run_admin, start_device
from fedota.server.federation import ControlClient, Node

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


@pytest.fixture
def coordinator(tmp_path: Path) -> Iterator[LocalCoordinator]:
    logs = tmp_path / "logs"
    logs.mkdir()
    running = LocalCoordinator.start(
        tmp_path / "coordinator", log_dir=logs, extra_args=["--heartbeat-interval", "1s"]
    )
    try:
        yield running
    finally:
        assert running.stop() == 0, running.process.tail()


def _nodes(coordinator: LocalCoordinator) -> dict[str, Node]:
    """The SuperNodes the SuperLink knows, by name (the device id), unregistered ones left out
    (Flower keeps them, so a key is never registered twice)."""
    data = coordinator.data_dir
    token = (data / "flower" / "control-token").read_bytes().strip()
    assert coordinator.federation_address is not None
    with ControlClient(
        coordinator.federation_address, (data / "ca.crt").read_bytes(), token
    ) as control:
        return {n.name: n for n in control.list_nodes() if n.status != "unregistered"}


def _supernode_pids(state: Path) -> list[int]:
    """Live processes whose command line names this device's SuperNode key."""
    key = str(state / "flower" / "supernode.key")
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            status = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if key in command and status != "Z":
            found.append(int(entry.name))
    return found


def test_accepted_daemons_join_the_federation_and_a_revoked_one_leaves_it(
    coordinator: LocalCoordinator, tmp_path: Path
) -> None:
    minted = json.loads(run_admin(coordinator, "tokens", "create", "--uses", "2", "--json"))
    daemons: list[tuple[LocalProcess, Path]] = []
    try:
        for name in ("device-1", "device-2"):
            state = tmp_path / name
            daemon = start_device(
                name, coordinator.public_address, minted["token"], state, log_dir=tmp_path / "logs"
            )
            daemons.append((daemon, state))
        wait_until(lambda: len(list_devices(coordinator)) == 2, "two enrollments")
        # Pending devices are not in the federation.
        assert _nodes(coordinator) == {}
        ids = [device["id"] for device in list_devices(coordinator)]
        for device_id in ids:
            run_admin(coordinator, "devices", "accept", device_id)

        wait_until(
            lambda: (
                all(node.status == "online" for node in _nodes(coordinator).values())
                and set(_nodes(coordinator)) == set(ids)
            ),
            "both SuperNodes online",
            90,
        )

        revoked = ids[0]
        run_admin(coordinator, "devices", "revoke", revoked, "--reason", "lost")
        wait_until(lambda: revoked not in _nodes(coordinator), "the revoked key unregistered", 90)
        victim = next(
            (daemon, state)
            for daemon, state in daemons
            if json.loads((state / "identity.json").read_text())["device_id"] == revoked
        )
        assert victim[0].wait(60) == 4  # the revoked daemon exits, refused
        assert _supernode_pids(victim[1]) == []
        assert set(_nodes(coordinator)) == {ids[1]}

        # A power cut of the other daemon: its SuperNode does not outlive it.
        survivor = next(pair for pair in daemons if pair[1] != victim[1])
        wait_until(lambda: _supernode_pids(survivor[1]) != [], "the other SuperNode running", 30)
        survivor[0].kill()
        wait_until(lambda: _supernode_pids(survivor[1]) == [], "the orphaned SuperNode to end", 30)
    finally:
        for daemon, _ in daemons:
            daemon.stop()
