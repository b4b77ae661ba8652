"""A coordinator killed outright in the middle of a campaign: what it completed is kept, and the
restarted coordinator resumes the campaign on a new Flower run.

Real processes throughout: `fedota coordinator serve` (with its SuperLink), two `fedota device
run` daemons (with their SuperNodes) holding their own digits examples, the operator's
`fedota admin` commands. The coordinator restarts on the same ports and data directory, as a
supervisor (systemd, Kubernetes) would restart it.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_support import list_devices, wait_until
from rich.console import Console

from fedota.cli._demo_campaign import collect_examples
from fedota.cli._demo_models import write_demo_models
from fedota.cli._demo_updates import release_and_roll_out
from fedota.cli._local_fleet import LocalCoordinator, LocalProcess, run_admin, start_device

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

ROUNDS = 3
# The coordinator's ports: public, device, repository, federation (`serve`'s defaults).
PORTS = 4


def _free_port_block(count: int) -> int:
    """A loopback port p with p .. p+count-1 free (the coordinator keeps its ports on restart)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            first = probe.getsockname()[1]
        if first + count > 65535:
            continue
        held = []
        try:
            for port in range(first, first + count):
                sock = socket.socket()
                held.append(sock)
                sock.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
    raise RuntimeError(f"no {count} consecutive free loopback ports")


class Fleet:
    """One coordinator that may be killed and restarted, and its daemons."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.logs = root / "logs"
        self.logs.mkdir(parents=True)
        self.port = _free_port_block(PORTS)
        self.coordinator: LocalCoordinator | None = None
        self.daemons: list[LocalProcess] = []

    def start_coordinator(self) -> LocalCoordinator:
        self.coordinator = LocalCoordinator.start(
            self.root / "coordinator",
            log_dir=self.logs,
            extra_args=["--listen", f"127.0.0.1:{self.port}", "--heartbeat-interval", "1s"],
        )
        return self.coordinator

    def stop(self) -> None:
        for daemon in self.daemons:
            daemon.stop()
        if self.coordinator is not None:
            self.coordinator.stop()


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    running = Fleet(tmp_path)
    try:
        yield running
    finally:
        running.stop()


def _show(coordinator: LocalCoordinator, campaign_id: str) -> dict[str, Any]:
    return json.loads(run_admin(coordinator, "campaigns", "show", campaign_id, "--json"))  # type: ignore[no-any-return]


def _completed_rounds(shown: dict[str, Any]) -> dict[int, str]:
    return {r["number"]: r["version"] for r in shown["rounds"] if r["state"] == "completed"}


def test_a_campaign_survives_a_kill_9_of_its_coordinator(fleet: Fleet, tmp_path: Path) -> None:
    coordinator = fleet.start_coordinator()
    minted = json.loads(run_admin(coordinator, "tokens", "create", "--uses", "2", "--json"))
    states = [tmp_path / f"device-{n}" for n in (1, 2)]
    for state in states:
        fleet.daemons.append(
            start_device(
                state.name,
                coordinator.public_address,
                minted["token"],
                state,
                log_dir=fleet.logs,
                extra_args=["--update-interval", "1s"],
            )
        )
    wait_until(lambda: len(list_devices(coordinator)) == 2, "two enrollments", 60)
    for device in list_devices(coordinator):
        run_admin(coordinator, "devices", "accept", device["id"])
    models = write_demo_models(tmp_path / "models")
    release_and_roll_out(coordinator, models.base, "digits@v1", "100%", 120)
    collect_examples(Console(quiet=True), states)

    started = json.loads(
        run_admin(
            coordinator,
            *("campaigns", "start", "--model", "digits@v1", "--rounds", str(ROUNDS)),
            *("--clients-per-round", "2", "--min-clients", "2", "--strategy", "fedavg"),
            *("--uplink", "int8", "--evaluate", "final", "--json"),
        )
    )
    campaign_id = started["id"]
    wait_until(
        lambda: len(_completed_rounds(_show(coordinator, campaign_id))) >= 1,
        "the campaign's first round",
        180,
    )
    # The coordinator copies its Flower run's log by polling; a line not copied before the kill
    # dies with the SuperLink, so wait for round 1's before the count below relies on it.
    campaign_log = coordinator.data_dir / "campaigns" / "logs" / f"{campaign_id}.log"
    wait_until(
        lambda: campaign_log.exists() and "round 1 stored" in campaign_log.read_text(),
        "the first round's log line",
        60,
    )
    before = _show(coordinator, campaign_id)
    kept = _completed_rounds(before)
    assert before["state"] == "running" and len(kept) < ROUNDS

    coordinator.process.kill()  # a power cut: no shutdown, the SuperLink and ServerApp die too
    restarted = fleet.start_coordinator()

    deadline = time.monotonic() + 240
    shown = _show(restarted, campaign_id)
    while shown["state"] == "running" and time.monotonic() < deadline:
        time.sleep(1.0)
        shown = _show(restarted, campaign_id)
    assert shown["state"] == "completed", shown.get("reason")
    # Nothing completed before the kill was redone or lost; the rest ran on a new Flower run.
    after = _completed_rounds(shown)
    assert {n: after[n] for n in kept} == kept
    assert sorted(after) == list(range(1, ROUNDS + 1))
    assert shown["flower_run_id"] != before["flower_run_id"]
    assert shown["final_version"] == after[ROUNDS]
    log = restarted.data_dir / "campaigns" / "logs" / f"{campaign_id}.log"
    wait_until(
        lambda: f"resumes after round {max(kept)}" in log.read_text(),
        "the resumed run's log",
        30,
    )
    assert log.read_text().count("round 1 stored") == 1  # the new coordinator went on, not over
