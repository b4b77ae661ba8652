"""Run a real `Daemon` in a thread against the fake coordinator, with fast timings."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fedota.client import DaemonConfig, DaemonOptions, Endpoint, EnrollOptions, StateStore
from fedota.client.daemon import Daemon

FAST = DaemonConfig(
    rpc_timeout=2.0,
    connect_timeout=2.0,
    backoff_base=0.05,
    backoff_cap=0.3,
    heartbeat_interval=0.1,
    reconnect_backoff_max=0.2,
)


def wait_for(condition: Callable[[], object], timeout: float = 10.0, what: str = "") -> None:
    """Poll `condition` until true; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what or condition}")
        time.sleep(0.02)


def make_daemon(
    state: Path,
    coordinator: str,
    token: str | None,
    *,
    config: DaemonConfig = FAST,
    interval: float | None = 0.1,
    **kwargs: object,
) -> Daemon:
    options = DaemonOptions(
        EnrollOptions(coordinator=Endpoint.parse(coordinator), token=token),
        heartbeat_interval=interval,
    )
    return Daemon(StateStore(state), options, config, **kwargs)  # type: ignore[arg-type]


@dataclass
class Running:
    daemon: Daemon
    thread: threading.Thread
    error: list[BaseException] = field(default_factory=list)

    def finished(self) -> bool:
        return not self.thread.is_alive()


@contextmanager
def running_daemon(daemon: Daemon) -> Iterator[Running]:
    """`daemon.run()` in a thread; stopped and joined (within 5 s) on exit."""
    run = Running(daemon, threading.Thread(target=lambda: None))

    def target() -> None:
        try:
            daemon.run()
        except BaseException as exc:
            run.error.append(exc)

    run.thread = threading.Thread(target=target, daemon=True)
    run.thread.start()
    try:
        yield run
    finally:
        daemon.stop()
        run.thread.join(5)
        assert not run.thread.is_alive(), "the daemon did not stop within 5 s"


def log_lines(caplog: pytest.LogCaptureFixture, needle: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if needle in r.getMessage()]


def capture_info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="fedota")
