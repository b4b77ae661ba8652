"""kill -9 of a device mid-update, then a restart: it runs the old or the new verified model,
never a broken one, a cut download resumes from what reached the disk, and the coordinator hears
exactly one outcome (the rollout converges).

The agent runs in a process of its own (agent_runner.py) against the Updates service in this
process; a download is killed while the service holds its stream, an install while the runner
pauses at one of its steps.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from fleet_simulator import TestCA
from ota_simulator import (
    CHUNK,
    DeviceCredentials,
    Hold,
    Models,
    SignedRepository,
    UpdatesServer,
    UpdatesSim,
    connect,
    write_models,
)

from fedota.client.config import DaemonConfig
from fedota.client.update import SlotStore, install_trust_root, partial_path
from fedota.client.update.agent import UpdateAgent

pytestmark = pytest.mark.timeout(180)
RUNNER = Path(__file__).with_name("agent_runner.py")
DEADLINE = 60.0


@dataclass
class Device:
    state: Path
    certs: Path
    port: int
    updates: UpdatesSim
    repository: SignedRepository

    def argv(self, *extra: str) -> list[str]:
        where = ["--port", str(self.port), "--certs", str(self.certs)]
        return [sys.executable, str(RUNNER), str(self.state), *where, *extra]

    def run(self) -> str:
        """A restart: recover, then one pass; how it ended."""
        done = subprocess.run(self.argv(), capture_output=True, text=True, timeout=DEADLINE)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def active_content(self) -> str | None:
        active = SlotStore(self.state).active()
        return active.content_sha256 if active is not None else None


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    return write_models(tmp_path_factory.mktemp("models"))


@pytest.fixture
def device(tmp_path: Path, models: Models) -> Iterator[Device]:
    """A device running v1 (installed in this process), v2 assigned as a full download."""
    ca = TestCA()
    repository = SignedRepository()
    updates = UpdatesSim(repository)
    server = UpdatesServer(ca, updates)
    credentials = DeviceCredentials.issue(ca)
    state = tmp_path / "state"
    install_trust_root(state / "update", repository.first_root)
    connection = connect(server.port, credentials, DaemonConfig(rpc_timeout=5.0))
    try:
        updates.assign(repository.add_artifact(models.v1), rollout="ro_v1")
        first = UpdateAgent(state, state / "update", connection).run_once()
        assert first is not None and first.status == "healthy"
        updates.assign(repository.add_artifact(models.v2), rollout="ro_v2")
        yield Device(state, credentials.write(tmp_path / "certs"), server.port, updates, repository)
    finally:
        connection.close()
        server.stop()


@contextmanager
def started(argv: list[str]) -> Iterator[subprocess.Popen[str]]:
    """A runner process, SIGKILLed (if still alive) and reaped on exit, whatever happens."""
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


def wait_until(condition: object, process: subprocess.Popen[str], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():  # type: ignore[operator]
        if process.poll() is not None:
            _, err = process.communicate()
            pytest.fail(f"the runner ended ({process.returncode}) before {what}: {err[-2000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def kill(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    assert process.returncode == -signal.SIGKILL


def assert_converged(device: Device, models: Models) -> None:
    assert device.active_content() == models.v2.target.content_sha256
    assert not SlotStore(device.state).pointer().pending
    outcomes = [r for r in device.updates.outcomes() if r.rollout_id == "ro_v2"]
    assert [(r.status, r.content_sha256) for r in outcomes] == [
        (5, models.v2.target.content_sha256)  # HEALTHY, once
    ]
    assert "failed" not in device.updates.statuses()


def test_kill_during_download_resumes_after_restart(device: Device, models: Models) -> None:
    target_file = _v2_file(device)
    held = Hold(after=2 * CHUNK)
    device.updates.holds[target_file] = held
    part = partial_path(device.state / "update" / "downloads" / target_file.rsplit("/", 1)[-1])

    with started(device.argv()) as process:
        wait_until(held.reached.is_set, process, "the download to reach the hold")
        wait_until(lambda: part.exists() and part.stat().st_size == 2 * CHUNK, process, "2 chunks")
        kill(process)
    held.release.set()
    assert device.active_content() == models.v1.target.content_sha256  # the old model runs

    assert device.run() == "healthy"

    offsets = [offset for path, offset in device.updates.target_fetches() if path == target_file]
    assert offsets == [0, 2 * CHUNK]
    assert_converged(device, models)


@pytest.mark.parametrize("step", ["writing", "committed", "switched", "checking"])
def test_kill_during_apply_ends_on_a_verified_model(
    device: Device, models: Models, step: str, tmp_path: Path
) -> None:
    marker = tmp_path / "paused"
    with started(device.argv("--pause-at", step, "--marker", str(marker))) as process:
        wait_until(marker.exists, process, f"the install to pause at {step}")
        kill(process)
    # Before any restart: a committed, verified model is pointed at (new only pending its check).
    active = SlotStore(device.state).active()
    assert active is not None
    assert active.content_sha256 in (
        models.v1.target.content_sha256,
        models.v2.target.content_sha256,
    )
    assert SlotStore.content_hash(active.model_path) == active.content_sha256

    assert device.run() in ("healthy", "none")

    assert_converged(device, models)


def _v2_file(device: Device) -> str:
    """The served path of v2's full artifact."""
    return next(p for p in device.repository.files if p.startswith("targets/artifacts/digits/2/"))
