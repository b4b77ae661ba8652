"""The daemon end to end against a fake coordinator with the Updates service (real mTLS sockets):
it keeps the update root from enrollment, installs what is assigned once accepted, serves the
active model on its local inference API and swaps to each new one, and names it in heartbeats."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from daemon_runner import FAST, make_daemon, running_daemon, wait_for
from fleet_simulator import CliResult, TestCA
from ota_simulator import (
    CHUNK,
    Hold,
    Models,
    OtaCoordinator,
    OtaFleet,
    SignedRepository,
    UpdatesSim,
    write_models,
)

from fedota.client.config import DaemonConfig
from fedota.client.daemon import Daemon, DaemonOptions
from fedota.client.endpoint import Endpoint
from fedota.client.enrollment import EnrollOptions
from fedota.client.local_api import LocalApiOptions
from fedota.client.store import StateStore
from fedota.client.update import SlotStore
from fedota.client.update.trust import TRUSTED_ROOT_FILE
from fedota.protos.v1 import inference_pb2 as pb
from fedota.protos.v1 import inference_pb2_grpc as pb_grpc

pytestmark = pytest.mark.timeout(120)

CONFIG = DaemonConfig(**{**FAST.__dict__, "update_interval": 0.2, "download_timeout": 10.0})
HEALTHY = 5


@dataclass
class Fleet:
    fleet: OtaFleet
    updates: UpdatesSim
    repository: SignedRepository
    coordinator: OtaCoordinator


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    return write_models(tmp_path_factory.mktemp("models"))


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """Unix socket paths must stay short: a fresh directory under /tmp."""
    directory = Path(tempfile.mkdtemp(prefix="fo-", dir="/tmp"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def ota() -> Iterator[Fleet]:
    repository = SignedRepository()
    fleet = OtaFleet(TestCA(), update_root=repository.first_root)
    updates = UpdatesSim(repository)
    coordinator = OtaCoordinator(fleet, updates)
    coordinator.start()
    try:
        yield Fleet(fleet, updates, repository, coordinator)
    finally:
        coordinator.stop()


def _daemon(ota: Fleet, state: Path, socket: Path | None) -> Daemon:
    token = ota.fleet.mint_token(auto_accept=True)
    options = DaemonOptions(
        EnrollOptions(coordinator=Endpoint.parse(ota.coordinator.address), token=token),
        heartbeat_interval=0.1,
        local_api=LocalApiOptions(socket_path=socket) if socket is not None else None,
    )
    return Daemon(StateStore(state), options, CONFIG)


def _healthy(ota: Fleet, rollout: str) -> bool:
    return any(r.rollout_id == rollout and r.status == HEALTHY for r in ota.updates.outcomes())


def test_the_daemon_installs_serves_and_swaps_to_each_update(
    ota: Fleet, models: Models, short_dir: Path
) -> None:
    socket = short_dir / "infer.sock"
    ota.updates.assign(ota.repository.add_artifact(models.v1), rollout="ro_v1")
    with running_daemon(_daemon(ota, short_dir / "state", socket)) as run:
        wait_for(lambda: _healthy(ota, "ro_v1"), 60, "v1 to be installed")
        channel = grpc.insecure_channel(f"unix:{socket}")
        stub = pb_grpc.LocalInferenceStub(channel)
        wait_for(lambda: _version(stub) == "digits@v1", 30, "v1 to be served")
        answer = stub.Predict(pb.PredictRequest(features=[0.0] * 64), timeout=10)
        assert answer.model_version == "digits@v1" and len(answer.probabilities) == 10

        target = ota.repository.add_artifact(models.v2)
        patch = ota.repository.add_patch(models.v1, models.v2, models.patch)
        ota.updates.assign(target, patch, rollout="ro_v2")
        wait_for(lambda: _healthy(ota, "ro_v2"), 60, "v2 to be installed")
        wait_for(lambda: _version(stub) == "digits@v2", 30, "v2 to be served")
        info = stub.ModelInfo(pb.ModelInfoRequest(), timeout=10)
        assert (info.variant, info.architecture) == ("fp32", "digits-mlp")
        wait_for(
            lambda: ota.fleet.calls("Heartbeat")[-1].model_version == "digits@v2 (fp32)",
            10,
            "a heartbeat naming v2",
        )
        channel.close()
        assert not run.error
    assert (short_dir / "state" / "update" / TRUSTED_ROOT_FILE).read_bytes() == (
        ota.repository.first_root
    )
    fetched = [path for path, _ in ota.updates.target_fetches()]
    assert fetched[-1] == ota.repository.target_file(patch)
    assert not socket.exists()  # stopped: the socket is gone


def test_a_restarted_daemon_serves_its_active_model_before_asking(
    ota: Fleet, models: Models, short_dir: Path, run_cli: Callable[..., CliResult]
) -> None:
    state, socket = short_dir / "state", short_dir / "infer.sock"
    ota.updates.assign(ota.repository.add_artifact(models.v1), rollout="ro_v1")
    with running_daemon(_daemon(ota, state, None)):
        wait_for(lambda: _healthy(ota, "ro_v1"), 60, "v1 to be installed")
    ota.coordinator.stop()  # the coordinator is gone: the model is served anyway
    shown = run_cli("device", "status", "--state", str(state), "--json")
    assert shown.code == 0, shown.err
    view = json.loads(shown.out)
    assert (view["model"], view["model_variant"]) == ("digits@v1", "fp32")
    assert view["model_content_sha256"] == models.v1.target.content_sha256
    assert view["update_trust_root"] == "present"

    with running_daemon(_daemon(ota, state, socket)) as run:
        with grpc.insecure_channel(f"unix:{socket}") as channel:
            stub = pb_grpc.LocalInferenceStub(channel)
            wait_for(lambda: _version(stub) == "digits@v1", 30, "v1 to be served")
        assert not run.error


def test_a_device_enrolled_without_a_root_fetches_it_on_its_first_update(
    ota: Fleet, models: Models, short_dir: Path
) -> None:
    ota.fleet.update_root = b""  # a coordinator that predates updates
    ota.updates.assign(ota.repository.add_artifact(models.v1), rollout="ro_v1")
    state = short_dir / "state"

    with running_daemon(_daemon(ota, state, None)) as run:
        wait_for(lambda: _healthy(ota, "ro_v1"), 60, "v1 to be installed")
        assert not run.error

    assert ("metadata/1.root.json", 0) in ota.updates.fetches
    active = SlotStore(state).active()
    assert active is not None and active.content_sha256 == models.v1.target.content_sha256


def test_a_pending_device_asks_for_no_update(ota: Fleet, models: Models, tmp_path: Path) -> None:
    ota.updates.assign(ota.repository.add_artifact(models.v1), rollout="ro_v1")
    token = ota.fleet.mint_token()  # not auto-accepted
    daemon = make_daemon(tmp_path / "state", ota.coordinator.address, token, config=CONFIG)

    with running_daemon(daemon):
        wait_for(lambda: len(ota.fleet.calls("Heartbeat")) >= 3, 10, "heartbeats")

    assert ota.updates.fetches == [] and ota.updates.reports == []
    assert not (tmp_path / "state" / "models").exists()


def _version(stub: pb_grpc.LocalInferenceStub) -> str:
    try:
        return stub.ModelInfo(pb.ModelInfoRequest(), timeout=5).version  # type: ignore[no-any-return]
    except grpc.RpcError:
        return ""


def test_an_invalid_root_in_the_enrollment_reply_does_not_strand_the_device(
    ota: Fleet, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ota.fleet.update_root = b'{"signed": {"_type": "root"}, "signatures": []}'
    daemon = make_daemon(tmp_path / "state", ota.coordinator.address, ota.fleet.mint_token())

    status = daemon.run_once()

    assert status is not None and status.state == "pending"
    assert not (tmp_path / "state" / "update" / TRUSTED_ROOT_FILE).exists()
    assert "update trust root is unusable" in caplog.text


def test_stop_cancels_a_download_in_flight(ota: Fleet, models: Models, tmp_path: Path) -> None:
    target = ota.repository.add_artifact(models.v1)
    held = Hold(after=CHUNK)
    ota.updates.holds[ota.repository.target_file(target)] = held
    ota.updates.assign(target, rollout="ro_v1")
    state = tmp_path / "state"
    daemon = _daemon(ota, state, None)

    def on_disk() -> list[int]:
        return [part.stat().st_size for part in (state / "update" / "downloads").glob("*.part")]

    with running_daemon(daemon) as run:
        wait_for(held.reached.is_set, 60, "the download to be in flight")
        # The coordinator sent the first chunk; stop once the device has it (it flushes each).
        wait_for(lambda: on_disk() == [CHUNK], 60, "the first chunk on disk")
        daemon.stop()
        run.thread.join(10)
        # Ended while the coordinator still holds the stream open: the call was cancelled.
        assert not run.thread.is_alive() and not held.release.is_set()
        assert not run.error

    assert on_disk() == [CHUNK]  # kept to resume from
    assert SlotStore(state).active() is None
