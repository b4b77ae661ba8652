"""A real `fedota device run` process stops promptly and cleanly on SIGTERM and SIGINT."""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fleet_simulator import FakeCoordinator, FakeFleet, free_port

pytestmark = pytest.mark.timeout(90)
STARTUP_TIMEOUT = 30.0
# The daemon stops within a second; the rest is interpreter teardown on a busy CI machine.
EXIT_WITHIN = 1.5


@pytest.fixture
def spawn() -> Iterator[object]:
    processes: list[subprocess.Popen[str]] = []

    def start(*argv: str) -> tuple[subprocess.Popen[str], queue.Queue[str | None]]:
        process = subprocess.Popen(
            [sys.executable, "-m", "fedota", "device", "run", *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        processes.append(process)
        lines: queue.Queue[str | None] = queue.Queue()
        assert process.stderr is not None
        stream = process.stderr

        def read() -> None:
            for line in stream:
                lines.put(line)
            lines.put(None)  # the end of its stderr

        threading.Thread(target=read, daemon=True).start()
        return process, lines

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait(10)


def _wait_for_line(lines: queue.Queue[str | None], needle: str) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            continue
        if line is None:
            pytest.fail(f"stderr ended before {needle!r}; saw {seen}")
        seen.append(line)
        if needle in line:
            return seen
    pytest.fail(f"no {needle!r} on stderr within {STARTUP_TIMEOUT} s; saw {seen}")


def _rest(lines: queue.Queue[str | None]) -> str:
    """Everything the exited process wrote to stderr after what was read, to its end."""
    rest = []
    try:
        while (line := lines.get(timeout=10)) is not None:
            rest.append(line)
    except queue.Empty:
        pytest.fail(f"stderr did not end within 10 s of the exit; saw {rest}")
    return "".join(rest)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_running_daemon_exits_zero_promptly(
    spawn: object, coordinator: FakeCoordinator, fleet: FakeFleet, tmp_path: Path, signum: int
) -> None:
    process, lines = spawn(  # type: ignore[operator]
        "--coordinator", coordinator.address, "--token", fleet.mint_token(),
        "--state", str(tmp_path / "state"), "--heartbeat-interval", "60s",
    )  # fmt: skip
    _wait_for_line(lines, "enrolled as")
    time.sleep(0.2)  # into the 60 s wait for the next heartbeat

    started = time.monotonic()
    process.send_signal(signum)
    code = process.wait(10)
    elapsed = time.monotonic() - started

    assert code == 0
    assert elapsed < EXIT_WITHIN
    assert "Traceback" not in _rest(lines)


def test_daemon_retrying_an_unreachable_coordinator_exits_zero_promptly(
    spawn: object, fleet: FakeFleet, tmp_path: Path
) -> None:
    process, lines = spawn(  # type: ignore[operator]
        "--coordinator", f"127.0.0.1:{free_port()}", "--token", fleet.mint_token(),
        "--state", str(tmp_path / "state"),
    )  # fmt: skip
    _wait_for_line(lines, "retrying in")

    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    code = process.wait(10)
    elapsed = time.monotonic() - started

    assert code == 0
    assert elapsed < EXIT_WITHIN
    assert "Traceback" not in _rest(lines)
    assert not (tmp_path / "state").exists()
