"""The update agent against a real signed repository behind a real Updates service (mTLS sockets):
full and patch installs, a cut stream resumed, attacks refused, fallbacks, rollbacks, and the
statuses the coordinator hears, in order."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fleet_simulator import TestCA
from ota_simulator import (
    DeviceCredentials,
    Models,
    SignedRepository,
    UpdatesServer,
    UpdatesSim,
    connect,
    write_models,
)

from fedota.client.config import DaemonConfig
from fedota.client.transport import FleetConnection
from fedota.client.update import RepositoryUnavailable, SlotStore, install_trust_root
from fedota.client.update.agent import UpdateAgent
from fedota.client.update.agent_records import AgentRecords
from fedota.client.update.trust import TRUSTED_ROOT_FILE
from fedota.client.update.trust_errors import TrustRootInvalid
from fedota.server.releases import artifact_target

pytestmark = pytest.mark.timeout(90)

CONFIG = DaemonConfig(rpc_timeout=5.0, download_timeout=10.0, reconnect_backoff_max=0.2)
FULL_RUN = ["downloading", "verifying", "applying", "health_checking"]


@dataclass
class World:
    repository: SignedRepository
    updates: UpdatesSim
    connection: FleetConnection
    state: Path

    def agent(self) -> UpdateAgent:
        """A fresh agent, as a restarted daemon makes one."""
        return UpdateAgent(self.state, self.state / "update", self.connection)

    def active_content(self) -> str | None:
        active = SlotStore(self.state).active()
        return active.content_sha256 if active is not None else None


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    return write_models(tmp_path_factory.mktemp("models"))


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    ca = TestCA()
    repository = SignedRepository()
    updates = UpdatesSim(repository)
    server = UpdatesServer(ca, updates)
    connection = connect(server.port, DeviceCredentials.issue(ca), CONFIG)
    state = tmp_path / "state"
    install_trust_root(state / "update", repository.first_root)
    try:
        yield World(repository, updates, connection, state)
    finally:
        connection.close()
        server.stop()


def _downloads(world: World) -> list[str]:
    directory = world.state / "update" / "downloads"
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def _install_v1(world: World, models: Models) -> None:
    world.updates.assign(world.repository.add_artifact(models.v1), rollout="ro_v1")
    result = world.agent().run_once()
    assert result is not None and result.status == "healthy", result


def test_a_full_install_reports_every_step_in_order(world: World, models: Models) -> None:
    target = world.repository.add_artifact(models.v1)
    world.updates.assign(target)

    result = world.agent().run_once()

    assert result is not None and result.status == "healthy"
    assert world.active_content() == models.v1.target.content_sha256
    assert world.updates.statuses() == [*FULL_RUN, "healthy"]
    (outcome,) = world.updates.outcomes()
    assert outcome.content_sha256 == models.v1.target.content_sha256
    assert outcome.bytes_received == target.length
    assert _downloads(world) == []
    # The next pass hears that there is nothing more to do.
    assert world.agent().run_once() is None
    assert len(world.updates.outcomes()) == 1


def test_a_patch_install_fetches_the_patch_only(world: World, models: Models) -> None:
    _install_v1(world, models)
    target = world.repository.add_artifact(models.v2)
    patch = world.repository.add_patch(models.v1, models.v2, models.patch)
    world.updates.assign(target, patch, rollout="ro_v2")

    result = world.agent().run_once()

    assert result is not None and result.status == "healthy", result.reason
    assert world.active_content() == models.v2.target.content_sha256
    fetched = [path for path, _ in world.updates.target_fetches()]
    assert world.repository.target_file(patch) in fetched
    assert world.repository.target_file(target) not in fetched
    outcome = world.updates.outcomes()[-1]
    assert outcome.bytes_received == patch.length < target.length


def test_a_cut_stream_resumes_from_its_offset(world: World, models: Models) -> None:
    target = world.repository.add_artifact(models.v1)
    path = world.repository.target_file(target)
    world.updates.cut_after[path] = 3 * 4096 + 100
    world.updates.assign(target)

    with pytest.raises(RepositoryUnavailable):
        world.agent().run_once()
    assert world.active_content() is None
    result = world.agent().run_once()

    assert result is not None and result.status == "healthy"
    assert [offset for p, offset in world.updates.target_fetches() if p == path] == [0, 12388]
    assert world.updates.outcomes()[-1].bytes_received == target.length


def test_a_tampered_target_is_refused_and_never_installed(world: World, models: Models) -> None:
    _install_v1(world, models)
    target = world.repository.add_artifact(models.v2)
    tampered = bytearray(models.v2.data)
    tampered[-10] ^= 0xFF
    world.repository.serve(world.repository.target_file(target), bytes(tampered))
    world.updates.assign(target, rollout="ro_v2")
    slots_before = sorted(p.name for p in SlotStore(world.state).root.rglob("*"))

    result = world.agent().run_once()

    assert result is None
    outcome = world.updates.outcomes()[-1]
    assert outcome.status == 6  # FAILED
    assert "sha256" in outcome.reason and "signed" in outcome.reason
    assert world.active_content() == models.v1.target.content_sha256
    assert sorted(p.name for p in SlotStore(world.state).root.rglob("*")) == slots_before
    assert _downloads(world) == []


def test_an_unsigned_target_is_refused(world: World, models: Models) -> None:
    unsigned = artifact_target(
        "digits",
        9,
        "fp32",
        models.v2.target.content_sha256,
        length=len(models.v2.data),
        sha256=hashlib.sha256(models.v2.data).hexdigest(),
    )
    world.repository.serve(world.repository.target_file(unsigned), models.v2.data)
    world.updates.assign(unsigned)

    assert world.agent().run_once() is None

    (outcome,) = world.updates.outcomes()
    assert outcome.status == 6 and "not signed" in outcome.reason
    assert world.updates.target_fetches() == []
    assert world.active_content() is None


@pytest.mark.parametrize("fault", ["does_not_apply", "tampered"])
def test_a_bad_patch_falls_back_to_the_full_target(
    world: World, models: Models, fault: str
) -> None:
    _install_v1(world, models)
    target = world.repository.add_artifact(models.v2)
    if fault == "does_not_apply":  # signed, so it verifies, but it is no patch
        patch = world.repository.add_patch(models.v1, models.v2, b"FDPATCH" + b"\0" * 200)
    else:
        patch = world.repository.add_patch(models.v1, models.v2, models.patch)
        world.repository.serve(world.repository.target_file(patch), models.bad_patch)
    world.updates.assign(target, patch, rollout="ro_v2")

    result = world.agent().run_once()

    assert result is not None and result.status == "healthy", result.reason
    assert world.active_content() == models.v2.target.content_sha256
    fetched = [path for path, _ in world.updates.target_fetches()]
    assert fetched[-2:] == [
        world.repository.target_file(patch),
        world.repository.target_file(target),
    ]
    assert world.updates.statuses()[-1] == "healthy"
    assert "failed" not in world.updates.statuses()


def test_a_failed_health_check_is_reported_rolled_back(world: World, models: Models) -> None:
    _install_v1(world, models)
    world.updates.reports.clear()
    world.updates.assign(world.repository.add_artifact(models.bad), rollout="ro_bad")

    result = world.agent().run_once()

    assert result is not None and result.status == "rolled_back"
    assert world.updates.statuses() == [*FULL_RUN, "rolled_back"]
    outcome = world.updates.outcomes()[-1]
    assert "NaN" in outcome.reason
    assert outcome.content_sha256 == models.v1.target.content_sha256
    assert world.active_content() == models.v1.target.content_sha256


def test_an_unacknowledged_outcome_is_sent_on_the_next_pass(world: World, models: Models) -> None:
    world.updates.assign(world.repository.add_artifact(models.v1))
    # Every report of this pass fails: progress ones are dropped, the outcome is kept.
    world.updates.failing_reports = 5

    result = world.agent().run_once()

    assert result is not None and result.status == "healthy"
    assert world.updates.outcomes() == []
    assert AgentRecords(world.state / "update").pending_report() is not None
    world.updates.failing_reports = 0
    assert world.agent().run_once() is None  # sends the outcome, then hears NONE
    (outcome,) = world.updates.outcomes()
    assert outcome.status == 5 and outcome.rollout_id == "ro_test1"
    assert AgentRecords(world.state / "update").pending_report() is None


def test_a_device_without_a_trust_root_fetches_the_first_one(world: World, models: Models) -> None:
    (world.state / "update" / TRUSTED_ROOT_FILE).unlink()
    world.updates.assign(world.repository.add_artifact(models.v1))

    result = world.agent().run_once()

    assert result is not None and result.status == "healthy"
    assert ("metadata/1.root.json", 0) in world.updates.fetches
    stored = (world.state / "update" / TRUSTED_ROOT_FILE).read_bytes()
    assert stored == world.repository.first_root


def test_a_forged_first_root_is_not_kept(world: World, models: Models) -> None:
    (world.state / "update" / TRUSTED_ROOT_FILE).unlink()
    world.repository.serve("metadata/1.root.json", b'{"signed": {}, "signatures": []}')
    world.updates.assign(world.repository.add_artifact(models.v1))

    with pytest.raises(TrustRootInvalid, match="not a valid, self-signed TUF root"):
        world.agent().run_once()

    assert not (world.state / "update" / TRUSTED_ROOT_FILE).exists()
    assert world.active_content() is None
