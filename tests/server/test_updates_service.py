"""The Updates service over a real coordinator and real mTLS device channels, on SQLite and
PostgreSQL: assignments (full, patch, none, rollback), resumable Fetch, status reports that move
and abort rollouts, and who may call it at all."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from coordinator_support import (
    AdminClient,
    EnrolledDevice,
    enroll,
    public_channel,
    rpc_error,
    snapshot,
)
from ota_support import (
    INSTALL,
    NONE,
    UpdatesFetcher,
    accepted_device,
    assignment,
    content_hash,
    fetch_bytes,
    release,
    report,
    rollout,
    updates_as,
    write_versions,
)
from sqlalchemy import select

from fedota.client.update import TrustedUpdates, install_trust_root
from fedota.delta import apply, load, model_hash
from fedota.protos.v1 import admin_pb2, updates_pb2, updates_pb2_grpc
from fedota.protos.v1 import releases_pb2 as pb
from fedota.server import Coordinator
from fedota.server.releases import TARGETS
from fedota.server.rollouts.policy import stage_of
from fedota.storage.db import Database
from fedota.storage.models import DeviceUpdate, ModelArtifact, Patch, TufMetadata

pytestmark = pytest.mark.timeout(120)

HEALTHY = updates_pb2.UPDATE_STATUS_HEALTHY
FAILED = updates_pb2.UPDATE_STATUS_FAILED
DOWNLOADING = updates_pb2.UPDATE_STATUS_DOWNLOADING
V1_PATH = "artifacts/digits/1/fp32.safetensors"
V2_PATH = "artifacts/digits/2/fp32.safetensors"
SMALL_CHUNK = 4096


@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_versions(tmp_path_factory.mktemp("versions"))


@pytest.fixture
def released(admin: AdminClient, versions: tuple[Path, Path]) -> tuple[str, str]:
    """digits@v1 and digits@v2 released (fp32); returns their content hashes."""
    release(admin, versions[0], "digits@v1")
    release(admin, versions[1], "digits@v2")
    return content_hash(versions[0]), content_hash(versions[1])


def _on_v1(
    coordinator: Coordinator, admin: AdminClient, v1: str, count: int = 1
) -> list[EnrolledDevice]:
    """`count` accepted devices that run v1 (rolled out, reported healthy)."""
    devices = [accepted_device(coordinator, admin) for _ in range(count)]
    first = rollout(admin, "digits@v1", [100])
    for device in devices:
        with updates_as(coordinator, device) as stub:
            assert assignment(stub).target_path == V1_PATH
            report(stub, first.id, HEALTHY, content=v1)
    assert admin.GetRollout(pb.RolloutRef(id=first.id)).state == "completed"
    return devices


def test_a_device_without_a_model_gets_the_full_target(
    coordinator: Coordinator, admin: AdminClient, released: tuple[str, str]
) -> None:
    device = accepted_device(coordinator, admin)
    created = rollout(admin, "digits@v2", [100])

    with updates_as(coordinator, device) as stub:
        given = assignment(stub)

    assert given.action == INSTALL and given.rollout_id == created.id
    assert given.target_path == V2_PATH and given.patch_path == "" and not given.rollback


def test_a_device_on_v1_gets_a_signed_patch_the_device_verifier_accepts_then_none(
    coordinator: Coordinator,
    admin: AdminClient,
    released: tuple[str, str],
    versions: tuple[Path, Path],
    database: Database,
    tmp_path: Path,
) -> None:
    v1, v2 = released
    (device,) = _on_v1(coordinator, admin, v1)
    second = rollout(admin, "digits@v2", [100])

    with updates_as(coordinator, device) as stub:
        given = assignment(stub, v1)
        assert given.action == INSTALL and given.target_path == V2_PATH
        assert given.patch_path == f"patches/digits/fp32/{v1}-{v2}.patch"

        # The device's own verifier, from the root it got at enrollment, over Updates.Fetch.
        trusted = TrustedUpdates(
            tmp_path / "update",
            UpdatesFetcher(stub),
            trust_root=device.response.update_root_json,
        )
        patch_file = tmp_path / "v2.patch"
        signed = trusted.download(given.patch_path, patch_file)
        assert signed.info.target_path == V2_PATH
        assert signed.length == patch_file.stat().st_size < versions[1].stat().st_size // 4
        assert model_hash(apply(load(versions[0]), patch_file.read_bytes())) == v2

        report(stub, second.id, DOWNLOADING, bytes_received=signed.length)
        report(stub, second.id, HEALTHY, content=v2, bytes_received=signed.length)
        assert assignment(stub, v2).action == NONE

    shown = admin.GetRollout(pb.RolloutRef(id=second.id))
    assert shown.state == "completed"
    assert 0 < shown.bytes_sent < shown.full_bytes // 4
    with database.session() as session:
        (record,) = session.scalars(
            select(DeviceUpdate).where(DeviceUpdate.rollout_id == second.id)
        ).all()
        patch = session.get(Patch, record.patch_id)
        assert patch is not None and patch.size_bytes == signed.length


def test_devices_asking_for_one_patch_together_share_one_computation_and_one_signing(
    coordinator: Coordinator, admin: AdminClient, released: tuple[str, str], database: Database
) -> None:
    v1, _ = released
    devices = _on_v1(coordinator, admin, v1, count=4)
    rollout(admin, "digits@v2", [100])
    targets_before = coordinator_targets_version(coordinator)
    answers: list[updates_pb2.Assignment] = []
    start = threading.Barrier(len(devices))

    def ask(device: EnrolledDevice) -> None:
        with updates_as(coordinator, device) as stub:
            start.wait(timeout=30)
            answers.append(assignment(stub, v1))

    threads = [threading.Thread(target=ask, args=(d,)) for d in devices]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(answers) == len(devices)
    assert {a.patch_path for a in answers} == {answers[0].patch_path} != {""}
    with database.session() as session:
        assert len(session.scalars(select(Patch)).all()) == 1
    assert coordinator_targets_version(coordinator) == targets_before + 1


def coordinator_targets_version(coordinator: Coordinator) -> int:
    with coordinator.database.session() as session:
        versions = session.scalars(select(TufMetadata.version).where(TufMetadata.role == TARGETS))
        return max(versions)


def test_a_patch_that_cannot_be_made_falls_back_to_the_full_target(
    coordinator: Coordinator, admin: AdminClient, released: tuple[str, str], database: Database
) -> None:
    v1, _ = released
    (device,) = _on_v1(coordinator, admin, v1)
    rollout(admin, "digits@v2", [100])
    # The v1 artifact's blob is lost from the store: no patch can be computed from it.
    with database.session() as session:
        base_blob = session.scalars(
            select(ModelArtifact.blob_sha256).where(ModelArtifact.content_sha256 == v1)
        ).one()
    blob_file = next(p for p in (coordinator.data_dir / "blobs").rglob(f"*{base_blob}*"))
    blob_file.unlink()

    with updates_as(coordinator, device) as stub:
        given = assignment(stub, v1)

    assert given.action == INSTALL and given.target_path == V2_PATH and given.patch_path == ""
    with database.session() as session:
        assert session.scalars(select(Patch)).all() == []


def test_fetch_streams_bounded_chunks_and_resumes_from_an_offset(
    released_small_chunks: tuple[Coordinator, AdminClient],
) -> None:
    coordinator, admin = released_small_chunks
    device = accepted_device(coordinator, admin)
    with updates_as(coordinator, device) as stub:
        listing = admin.ListReleases(pb.ListReleasesRequest())
        artifact = listing.releases[0].artifacts[0]
        signed_name = _served_name(stub, artifact.target_path)
        chunks = list(stub.Fetch(updates_pb2.FetchRequest(path=signed_name), timeout=10))
        whole = b"".join(c.data for c in chunks)
        cut = len(whole) // 3

        resumed = fetch_bytes(stub, signed_name, offset=cut)
        at_end = list(stub.Fetch(updates_pb2.FetchRequest(path=signed_name, offset=len(whole))))
        past = rpc_error(lambda: fetch_bytes(stub, signed_name, offset=len(whole) + 1))
        missing = rpc_error(lambda: fetch_bytes(stub, "targets/artifacts/nope.safetensors"))

    assert len(whole) == artifact.size_bytes and len(chunks) > 1
    assert all(len(c.data) <= SMALL_CHUNK for c in chunks)
    assert {c.total_length for c in chunks} == {len(whole)}
    assert whole[:cut] + resumed == whole
    assert [c.data for c in at_end] == [b""]
    assert past.code() == grpc.StatusCode.OUT_OF_RANGE
    assert missing.code() == grpc.StatusCode.NOT_FOUND


@pytest.fixture
def released_small_chunks(
    start_coordinator: Callable[..., Coordinator], versions: tuple[Path, Path]
) -> Iterator[tuple[Coordinator, AdminClient]]:
    """A coordinator that streams 4 KiB chunks, with digits@v1 released."""
    coordinator = start_coordinator(fetch_chunk_bytes=SMALL_CHUNK)
    with public_channel(coordinator) as channel:
        admin = AdminClient(channel, coordinator.admin_token)
        release(admin, versions[0], "digits@v1")
        yield coordinator, admin


def _served_name(stub: updates_pb2_grpc.UpdatesStub, target_path: str) -> str:
    """`targets/<dir>/<sha256>.<name>` of a signed target, found as a device finds it: the
    timestamp names the snapshot, the snapshot the targets."""
    timestamp = json.loads(fetch_bytes(stub, "metadata/timestamp.json"))["signed"]
    snapshot_version = timestamp["meta"]["snapshot.json"]["version"]
    snapshot = json.loads(fetch_bytes(stub, f"metadata/{snapshot_version}.snapshot.json"))
    targets_version = snapshot["signed"]["meta"]["targets.json"]["version"]
    targets = json.loads(fetch_bytes(stub, f"metadata/{targets_version}.targets.json"))
    sha256 = targets["signed"]["targets"][target_path]["hashes"]["sha256"]
    directory, _, name = target_path.rpartition("/")
    return f"targets/{directory}/{sha256}.{name}"


def test_status_reports_advance_the_stages_and_late_stages_wait(
    coordinator: Coordinator, admin: AdminClient, released: tuple[str, str]
) -> None:
    _, v2 = released
    created, first, later = _split(coordinator, admin, "digits@v2", stages=[50, 100])

    for device in later:
        with updates_as(coordinator, device) as stub:
            assert assignment(stub).action == NONE
    for device in first:
        with updates_as(coordinator, device) as stub:
            given = assignment(stub)
            assert given.action == INSTALL and given.target_path == V2_PATH
            report(stub, created.id, HEALTHY, content=v2)

    shown = admin.GetRollout(pb.RolloutRef(id=created.id))
    assert shown.state == "running" and shown.current_stage == 1
    assert [s.state for s in shown.stages] == ["passed", "active"]
    assert shown.stages[0].healthy == len(first) and shown.stages[1].devices == len(later)
    for device in later:
        with updates_as(coordinator, device) as stub:
            assert assignment(stub).target_path == V2_PATH


def test_a_failing_canary_stage_aborts_the_rollout_and_later_stages_are_untouched(
    coordinator: Coordinator, admin: AdminClient, released: tuple[str, str]
) -> None:
    created, first, later = _split(coordinator, admin, "digits@v2", stages=[50, 100])

    with updates_as(coordinator, first[0]) as stub:
        assert assignment(stub).action == INSTALL
        report(stub, created.id, FAILED, reason="health check: accuracy 0.1 < 0.9")

    shown = admin.GetRollout(pb.RolloutRef(id=created.id))
    assert shown.state == "aborted" and "failed" in shown.reason
    assert [s.state for s in shown.stages] == ["failed", "waiting"]
    assert shown.stages[1].devices == 0
    for device in [*first[1:], *later]:
        with updates_as(coordinator, device) as stub:
            assert assignment(stub).action == NONE


def _split(
    coordinator: Coordinator, admin: AdminClient, ref: str, stages: list[float], count: int = 6
) -> tuple[pb.Rollout, list[EnrolledDevice], list[EnrolledDevice]]:
    """A rollout whose first stage and later stages both hold devices (a rollout's stage
    membership hashes its id, so another rollout is tried when one stage comes out empty)."""
    devices = [accepted_device(coordinator, admin) for _ in range(count)]
    fractions = [s / 100 for s in stages]
    for _ in range(20):
        created = rollout(admin, ref, stages)
        first = [d for d in devices if stage_of(created.id, d.id, fractions) == 0]
        if 0 < len(first) < len(devices):
            later = [d for d in devices if d not in first]
            return created, first, later
        admin.AbortRollout(pb.RolloutRef(id=created.id, reason="test: try other canaries"))
    raise AssertionError("no rollout split the devices in 20 tries")


def test_after_a_rollback_the_device_is_sent_back_by_patch(
    coordinator: Coordinator, admin: AdminClient, released: tuple[str, str]
) -> None:
    v1, v2 = released
    (device,) = _on_v1(coordinator, admin, v1)
    second = rollout(admin, "digits@v2", [100])
    with updates_as(coordinator, device) as stub:
        assignment(stub, v1)
        report(stub, second.id, HEALTHY, content=v2)

        rolled = admin.RollbackRollout(pb.RolloutRef(id=second.id, reason="bad accuracy"))
        back = assignment(stub, v2)
        report(stub, second.id, HEALTHY, content=v1)
        after = assignment(stub, v1)

    assert rolled.reason.startswith("rolled back by an operator: bad accuracy; 1 devices")
    assert back.action == INSTALL and back.rollback and back.target_path == V1_PATH
    assert back.patch_path == f"patches/digits/fp32/{v2}-{v1}.patch"
    assert after.action == NONE


def _refusals(stub: updates_pb2_grpc.UpdatesStub) -> list[grpc.RpcError]:
    calls: list[Callable[[], object]] = [
        lambda: assignment(stub),
        lambda: report(stub, "rol_00", HEALTHY),
        lambda: fetch_bytes(stub, "metadata/1.root.json"),
    ]
    return [rpc_error(call) for call in calls]


@pytest.mark.parametrize("who", ["pending", "revoked"])
def test_pending_and_revoked_devices_are_refused(
    coordinator: Coordinator,
    admin: AdminClient,
    make_token: Callable[..., str],
    who: str,
    database: Database,
) -> None:
    if who == "pending":
        device = enroll(coordinator, make_token())
    else:
        device = accepted_device(coordinator, admin)
        admin.RevokeDevice(admin_pb2.DeviceStateChange(id=device.id, reason="lost"))
    before = snapshot(database)

    with updates_as(coordinator, device) as stub:
        errors = _refusals(stub)

    assert {e.code() for e in errors} == {grpc.StatusCode.PERMISSION_DENIED}
    assert all(f"is {who}" in e.details() for e in errors)
    assert snapshot(database) == before


def test_the_public_port_asks_for_the_device_certificate(
    coordinator: Coordinator, database: Database
) -> None:
    before = snapshot(database)

    with public_channel(coordinator) as channel:
        errors = _refusals(updates_pb2_grpc.UpdatesStub(channel))

    assert {e.code() for e in errors} == {grpc.StatusCode.UNAUTHENTICATED}
    assert all("use the device port" in e.details() for e in errors)
    assert snapshot(database) == before


def test_the_enrollment_root_is_the_served_root_and_the_device_installs_it(
    coordinator: Coordinator, admin: AdminClient, tmp_path: Path
) -> None:
    device = accepted_device(coordinator, admin)

    root = device.response.update_root_json
    install_trust_root(tmp_path / "update", root)

    with updates_as(coordinator, device) as stub:
        assert fetch_bytes(stub, "metadata/1.root.json") == root
    assert (tmp_path / "update" / "trusted_root.json").read_bytes() == root
