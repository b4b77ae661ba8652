"""The heartbeat loop: refusals end it, outages are retried with backoff, stop is prompt."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from daemon_runner import FAST, capture_info, log_lines, make_daemon, running_daemon, wait_for
from fleet_simulator import (
    ACCEPTED,
    REJECTED,
    REVOKED,
    CliResult,
    FakeCoordinator,
    FakeFleet,
    free_port,
    snapshot,
)

from fedota.cli.errors import EXIT_REFUSED, EXIT_UNAVAILABLE
from fedota.client import CredentialRefused, DaemonConfig, DeviceRefused

pytestmark = pytest.mark.timeout(60)
Run = Callable[..., CliResult]


def test_heartbeats_carry_the_interval_and_the_daemon_state(
    coordinator: FakeCoordinator, fleet: FakeFleet, state_dir: Path
) -> None:
    daemon = make_daemon(state_dir, coordinator.address, fleet.mint_token())

    with running_daemon(daemon):
        wait_for(lambda: len(fleet.calls("Heartbeat")) >= 3, what="three heartbeats")

    beats = fleet.calls("Heartbeat")
    assert all(beat.available_memory_bytes > 0 for beat in beats)
    assert [b.uptime_seconds for b in beats] == sorted(b.uptime_seconds for b in beats)
    assert len(fleet.calls("Enroll")) == 1


@pytest.mark.parametrize(("state", "word"), [(REVOKED, "revoked"), (REJECTED, "rejected")])
def test_revoked_or_rejected_device_ends_the_daemon(
    run_cli: Run,
    coordinator: FakeCoordinator,
    fleet: FakeFleet,
    state_dir: Path,
    state: int,
    word: str,
) -> None:
    daemon = make_daemon(state_dir, coordinator.address, fleet.mint_token())
    with running_daemon(daemon) as run:
        wait_for(lambda: fleet.calls("Heartbeat"), what="a heartbeat")
        device = fleet.only_device()
        device.state, device.reason = state, "stolen"
        wait_for(run.finished, what="the daemon to give up")
    before = snapshot(state_dir)

    (error,) = run.error
    assert isinstance(error, DeviceRefused)
    assert f"device {device.id} is {word}: stolen" in str(error)

    result = run_cli("device", "run", "--once", "--state", str(state_dir))
    assert result.code == EXIT_REFUSED
    assert (
        result.err
        == f"fedota: error: refused by the coordinator: device {device.id} is {word}: stolen\n"
    )
    assert snapshot(state_dir) == before


def test_superseded_certificate_ends_the_daemon(
    run_cli: Run, coordinator: FakeCoordinator, fleet: FakeFleet, state_dir: Path
) -> None:
    assert run_cli(
        "device", "run", "--once", "--coordinator", coordinator.address,
        "--token", fleet.mint_token(), "--state", str(state_dir),
    ).code == 0  # fmt: skip
    fleet.only_device().serial = 1  # the coordinator issued it another certificate since

    result = run_cli("device", "run", "--once", "--state", str(state_dir))

    assert result.code == EXIT_REFUSED
    assert "device certificate refused: device certificate superseded or unknown" in result.err
    with pytest.raises(CredentialRefused):
        make_daemon(state_dir, coordinator.address, None).run()


def test_unreachable_coordinator_is_retried_with_backoff_until_it_comes_up(
    fleet: FakeFleet, state_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    capture_info(caplog)
    late = FakeCoordinator(fleet, public_port=free_port(), device_port=free_port())
    daemon = make_daemon(state_dir, late.address, fleet.mint_token())

    with running_daemon(daemon) as run:
        wait_for(lambda: len(log_lines(caplog, "retrying in")) >= 3, what="three retries")
        assert not state_dir.exists()  # nothing written while the coordinator is untrusted
        late.start()
        try:
            wait_for(lambda: fleet.calls("Heartbeat"), what="a heartbeat once it is up")
        finally:
            late.stop()
        assert not run.error

    retries = log_lines(caplog, "coordinator trust failed: coordinator unavailable")
    assert len(retries) >= 3
    for attempt, line in enumerate(retries):
        delay = float(re.search(r"retrying in ([\d.]+) s", line)[1])  # type: ignore[index]
        assert delay <= min(FAST.backoff_cap, FAST.backoff_base * 2**attempt) + 0.05
    assert len(fleet.calls("Enroll")) == 1


def test_coordinator_outage_mid_run_is_survived(
    fleet: FakeFleet, state_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    capture_info(caplog)
    first = FakeCoordinator(fleet)
    first.start()
    daemon = make_daemon(state_dir, first.address, fleet.mint_token())
    with running_daemon(daemon) as run:
        try:
            wait_for(lambda: fleet.calls("Heartbeat"), what="a first heartbeat")
        finally:
            first.stop()
        wait_for(
            lambda: log_lines(caplog, "heartbeat failed: coordinator unavailable"), what="a failure"
        )
        beats = len(fleet.calls("Heartbeat"))
        again = FakeCoordinator(fleet, first.public_port, first.device_port)
        again.start()
        try:
            wait_for(lambda: len(fleet.calls("Heartbeat")) > beats + 1, what="heartbeats again")
        finally:
            again.stop()
        assert not run.error
    assert log_lines(caplog, "heartbeat succeeded again after")


def test_coordinator_errors_are_retried(
    coordinator: FakeCoordinator,
    fleet: FakeFleet,
    state_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    capture_info(caplog)
    fleet.fail_next("Heartbeat", grpc.StatusCode.INTERNAL, "database is down", times=2)
    daemon = make_daemon(state_dir, coordinator.address, fleet.mint_token())

    with running_daemon(daemon) as run:
        wait_for(lambda: len(fleet.calls("Heartbeat")) >= 4, what="heartbeats after the errors")
        assert not run.error

    failures = log_lines(caplog, "heartbeat failed: Heartbeat failed (INTERNAL): database is down")
    assert len(failures) == 2


def test_state_transitions_are_logged_once(
    coordinator: FakeCoordinator,
    fleet: FakeFleet,
    state_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    capture_info(caplog)
    daemon = make_daemon(state_dir, coordinator.address, fleet.mint_token())

    with running_daemon(daemon):
        wait_for(lambda: len(fleet.calls("Heartbeat")) >= 3, what="pending heartbeats")
        device = fleet.only_device()
        device.state = ACCEPTED
        beats = len(fleet.calls("Heartbeat"))
        wait_for(lambda: len(fleet.calls("Heartbeat")) >= beats + 3, what="accepted heartbeats")

    assert log_lines(caplog, f"enrolled as {device.id} (pending approval)")
    assert len(log_lines(caplog, f"device {device.id} accepted")) == 1
    assert not log_lines(caplog, f"device {device.id} is pending approval")


@pytest.mark.parametrize("phase", ["between-heartbeats", "coordinator-unreachable"])
def test_stop_is_prompt(fleet: FakeFleet, state_dir: Path, phase: str) -> None:
    slow = DaemonConfig(backoff_base=30.0, backoff_cap=60.0, rpc_timeout=2.0, connect_timeout=2.0)
    if phase == "between-heartbeats":
        up = FakeCoordinator(fleet)
        up.start()
        address, stop_server = up.address, up.stop
    else:
        address, stop_server = f"127.0.0.1:{free_port()}", lambda: None
    daemon = make_daemon(state_dir, address, fleet.mint_token(), config=slow, interval=60.0)
    try:
        with running_daemon(daemon) as run:
            if phase == "between-heartbeats":
                wait_for(lambda: fleet.calls("Heartbeat"), what="a heartbeat")
            else:
                time.sleep(0.3)  # into the first 30 s-scale backoff wait
            started = time.monotonic()
            daemon.stop()
            run.thread.join(2)
            elapsed = time.monotonic() - started
            assert not run.thread.is_alive()
            assert not run.error
    finally:
        stop_server()
    assert elapsed < 1.0


def test_once_does_not_retry_an_unreachable_coordinator(
    run_cli: Run, fleet: FakeFleet, state_dir: Path
) -> None:
    result = run_cli(
        "device", "run", "--once", "--coordinator", f"127.0.0.1:{free_port()}",
        "--token", fleet.mint_token(), "--state", str(state_dir),
    )  # fmt: skip

    assert result.code == EXIT_UNAVAILABLE
    assert result.err.startswith("fedota: error: coordinator unavailable")
    assert not state_dir.exists()
