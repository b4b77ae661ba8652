"""`fedota coordinator serve|migrate` as real subprocesses, the way an operator runs them."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

READY = re.compile(
    r"^coordinator ready: public 127\.0\.0\.1:(\d+), devices 127\.0\.0\.1:(\d+), "
    r"update repository http://127\.0\.0\.1:(\d+)/, federation (off|127\.0\.0\.1:\d+)$"
)
START_DEADLINE = 60.0
STOP_DEADLINE = 20.0


@dataclass
class Served:
    """A running `fedota coordinator serve` and the stdout lines it printed before it was ready."""

    process: subprocess.Popen[str]
    lines: queue.Queue[str | None] = field(default_factory=queue.Queue)
    before_ready: list[str] = field(default_factory=list)
    public_port: int = 0
    federation: str = ""

    def pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_DEADLINE
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                raise AssertionError(f"exited with {self.process.wait()} before it was ready")
            match = READY.match(line)
            if match:
                self.public_port = int(match[1])
                self.federation = match[4]
                return
            self.before_ready.append(line)
        raise AssertionError("no ready line before the deadline")

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=STOP_DEADLINE)


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "fedota", "coordinator", *args]


def _run(args: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _command(*args), capture_output=True, text=True, timeout=START_DEADLINE, check=False
    )


Start = Callable[..., Served]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Start]:
    """Start `fedota coordinator serve --listen 127.0.0.1:0 ARGS...` and wait for its ready line;
    whatever is still running at the end is killed."""
    started: list[subprocess.Popen[str]] = []

    def start(*args: str, federation: bool = False) -> Served:
        log = (tmp_path / f"serve-{len(started)}.stderr").open("w")
        # A SuperLink costs seconds to start: only the tests about it run one.
        if not federation:
            args = ("--no-federation", *args)
        process = subprocess.Popen(
            _command("serve", "--listen", "127.0.0.1:0", *args),
            stdout=subprocess.PIPE,
            stderr=log,
            stdin=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        log.close()
        started.append(process)
        served = Served(process)
        threading.Thread(target=served.pump, daemon=True).start()
        served.wait_ready()
        return served

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=STOP_DEADLINE)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_serve_prints_ready_keeps_secrets_private_and_stops_on_sigterm(
    serve: Start, tmp_path: Path, db_url: str
) -> None:
    data = tmp_path / "data"

    first = serve("--data", str(data), "--db", db_url)
    token = (data / "admin-token").read_text().strip()

    assert token.startswith("fdta1.")
    assert token in first.before_ready
    assert any(str(data / "admin-token") in line for line in first.before_ready)
    assert _mode(data) == 0o700
    assert _mode(data / "admin-token") == 0o600
    assert _mode(data / "ca.key") == 0o600
    assert _mode(data / "server.key") == 0o600
    assert first.terminate() == 0

    second = serve("--data", str(data), "--db", db_url)
    assert not any("fdta1." in line for line in second.before_ready)
    assert (data / "admin-token").read_text().strip() == token
    assert second.terminate() == 0


@pytest.mark.timeout(120)
def test_serve_runs_its_federation_superlink_and_stops_it_with_everything_under_it(
    serve: Start, tmp_path: Path
) -> None:
    data = tmp_path / "data"

    running = serve("--data", str(data), federation=True)

    host, _, port = running.federation.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=5):
        pass  # the SuperLink answers on the port the ready line names
    assert _mode(data / "flower" / "control-token") == 0o600
    flower = _flower_processes_under(data)
    assert flower, "no Flower process runs for this coordinator"
    assert running.terminate() == 0
    assert _flower_processes_under(data) == []


def _flower_processes_under(data: Path) -> list[int]:
    """Pids of live processes whose command line names this data directory's flower folder."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if str(data / "flower") in command and state != "Z":
            found.append(int(entry.name))
    return found


def test_a_port_in_use_exits_2_with_one_line(serve: Start, tmp_path: Path) -> None:
    running = serve("--data", str(tmp_path / "one"))

    result = _run(
        ["serve", "--data", str(tmp_path / "two"), "--listen", f"127.0.0.1:{running.public_port}"]
    )

    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("fedota: error:")]
    assert errors == [
        f"fedota: error: cannot listen on 127.0.0.1:{running.public_port}: "
        "the address is in use or not available here"
    ]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--db", "nosuchdriver://x/y"], "is not a usable database URL"),
        (["--no-migrate"], "run `fedota coordinator migrate`"),
        (["--listen", "nowhere"], "is not HOST:PORT"),
    ],
)
def test_startup_problems_exit_2_with_one_line(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = _run(["serve", "--data", str(tmp_path / "data"), *args])

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("fedota: error:")]
    assert len(errors) == 1 and message in errors[0]


def test_migrate_prints_the_revision(tmp_path: Path) -> None:
    from fedota.storage.migrate import head_revision

    result = _run(["migrate", "--data", str(tmp_path / "data")])

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"database at schema revision {head_revision()}"
