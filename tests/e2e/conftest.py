"""Fixtures that run a real coordinator process on each database backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fedota.cli._local_fleet import LocalCoordinator


@pytest.fixture
def coordinator(db_url: str, tmp_path: Path) -> Iterator[LocalCoordinator]:
    """`fedota coordinator serve` on free loopback ports, on SQLite and on PostgreSQL."""
    logs = tmp_path / "logs"
    logs.mkdir()
    running = LocalCoordinator.start(
        tmp_path / "coordinator",
        log_dir=logs,
        db_url=db_url,
        # The federation has its own tests (test_e2e_federation.py): a SuperLink costs seconds.
        extra_args=["--heartbeat-interval", "1s", "--no-federation"],
    )
    try:
        yield running
    finally:
        assert running.stop() == 0, running.process.tail()
