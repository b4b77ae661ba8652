"""Run a coordinator and device daemons as real local processes.

What `fedota demo` shows and what the end-to-end tests drive: every part runs as its own
`python -m fedota …` process, exactly as an operator would start it, and every process started
here is stopped again (SIGTERM, then SIGKILL after a deadline).
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

READY = re.compile(
    r"coordinator ready: public (?P<public>\S+), devices (?P<devices>[^\s,]+)"
    r".*, federation (?P<federation>\S+)$"
)


class ProcessFailed(RuntimeError):
    """A local process exited, or did not get ready, before its deadline."""


@dataclass
class LocalProcess:
    """A child process whose merged stdout/stderr is kept in a log file and a line queue."""

    name: str
    popen: subprocess.Popen[str]
    log_path: Path
    lines: queue.Queue[str] = field(default_factory=queue.Queue)

    @classmethod
    def start(cls, name: str, args: Sequence[str], log_dir: Path) -> LocalProcess:
        log_path = log_dir / f"{name}.log"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        popen = subprocess.Popen(
            [sys.executable, "-m", "fedota", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
            start_new_session=True,  # a Ctrl-C in the terminal reaches the demo, not every child
        )
        process = cls(name, popen, log_path)
        threading.Thread(target=process._pump, name=f"log-{name}", daemon=True).start()
        return process

    def _pump(self) -> None:
        assert self.popen.stdout is not None
        with self.log_path.open("a") as log:
            for line in self.popen.stdout:
                log.write(line)
                log.flush()
                self.lines.put(line.rstrip("\n"))

    def wait_for_line(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str]:
        """Block until a line of output matches, the process exits, or the deadline passes.

        Raises:
            ProcessFailed: the process exited or the deadline passed first.
        """
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=min(remaining, 0.2))
            except queue.Empty:
                if self.popen.poll() is not None and self.lines.empty():
                    raise ProcessFailed(
                        f"{self.name} exited with status {self.popen.returncode}: {self.tail()}"
                    ) from None
                continue
            if match := pattern.search(line):
                return match
        raise ProcessFailed(f"{self.name}: no line matching {pattern.pattern!r} in {timeout:.0f} s")

    def tail(self, count: int = 5) -> str:
        """The last lines of the log, for error messages."""
        try:
            lines = self.log_path.read_text().splitlines()
        except FileNotFoundError:
            return "(no output)"
        return " | ".join(lines[-count:]) or "(no output)"

    def wait(self, timeout: float) -> int:
        """The exit status, waiting at most `timeout` seconds.

        Raises:
            subprocess.TimeoutExpired: still running at the deadline.
        """
        return self.popen.wait(timeout=timeout)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then SIGKILL if it has not exited within `timeout`; returns the exit status."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                return self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
        return self.popen.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL: what a power cut or the OOM killer does."""
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(timeout=10)


@dataclass
class LocalCoordinator:
    process: LocalProcess
    data_dir: Path
    public_address: str
    device_address: str
    # The Flower SuperLink's HOST:PORT; None when started with --no-federation.
    federation_address: str | None = None

    @classmethod
    def start(
        cls,
        data_dir: Path,
        *,
        log_dir: Path,
        db_url: str | None = None,
        extra_args: Sequence[str] = (),
        timeout: float = 60.0,
    ) -> LocalCoordinator:
        """Start `fedota coordinator serve` on free loopback ports and wait until it is ready.

        Raises:
            ProcessFailed: it exited or did not print its ready line in time.
        """
        args = ["coordinator", "serve", "--data", str(data_dir), "--listen", "127.0.0.1:0"]
        if db_url:
            args += ["--db", db_url]
        process = LocalProcess.start("coordinator", [*args, *extra_args], log_dir)
        try:
            ready = process.wait_for_line(READY, timeout)
        except ProcessFailed:
            process.stop()
            raise
        federation = ready["federation"]
        return cls(
            process,
            data_dir,
            ready["public"],
            ready["devices"],
            None if federation == "off" else federation,
        )

    @property
    def admin_token(self) -> str:
        return (self.data_dir / "admin-token").read_text().strip()

    def stop(self) -> int:
        return self.process.stop()


def start_device(
    name: str,
    coordinator: str,
    token: str,
    state_dir: Path,
    *,
    log_dir: Path,
    extra_args: Sequence[str] = (),
) -> LocalProcess:
    """Start `fedota device run` as its own process."""
    args = ["device", "run", "--coordinator", coordinator, "--token", token]
    return LocalProcess.start(name, [*args, "--state", str(state_dir), *extra_args], log_dir)


def run_admin(
    coordinator: LocalCoordinator, *args: str, token: str | None = None, timeout: float = 60.0
) -> str:
    """Run `fedota admin …` against the coordinator as its own process; returns its stdout.

    The coordinator's first admin token is used unless `token` is given.

    Raises:
        ProcessFailed: the command exited non-zero (its stderr is in the message).
    """
    command = [
        sys.executable,
        "-m",
        "fedota",
        "admin",
        "--coordinator",
        coordinator.public_address,
        "--token",
        token if token is not None else coordinator.admin_token,
        *args,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise ProcessFailed(
            f"fedota admin {' '.join(args)} exited {done.returncode}: {done.stderr.strip()}"
        )
    return done.stdout


__all__ = ["LocalCoordinator", "LocalProcess", "ProcessFailed", "run_admin", "start_device"]
