"""Fixtures for device-daemon tests: a fake coordinator over real sockets, a state directory."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fleet_simulator import CliResult, FakeCoordinator, FakeFleet, TestCA

from fedota.cli.main import main


@pytest.fixture
def ca() -> TestCA:
    return TestCA()


@pytest.fixture
def fleet(ca: TestCA) -> FakeFleet:
    return FakeFleet(ca)


@pytest.fixture
def coordinator(fleet: FakeFleet) -> Iterator[FakeCoordinator]:
    server = FakeCoordinator(fleet)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def run_cli(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> Iterator[Callable[..., CliResult]]:
    """Run `fedota ...` in-process; returns exit code, stdout, stderr and the daemon's log."""
    caplog.set_level(logging.INFO, logger="fedota")

    def run(*argv: str) -> CliResult:
        capsys.readouterr()
        caplog.clear()
        code = main(list(argv))
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err, caplog.text)

    yield run
