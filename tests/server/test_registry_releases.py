"""Model import, release building and signing, and the HTTP update repository, end to end.

A real coordinator (real sockets) on SQLite and PostgreSQL; a stock python-tuf client verifies
what the release signed, with nothing of fedota's, through the read-only HTTP repository.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from coordinator_support import AdminClient, audit_actions, rpc_error, snapshot
from tuf.ngclient import Updater

from fedota.delta import load, model_hash
from fedota.ml import digits
from fedota.ml.checkpoint import save_checkpoint
from fedota.protos.v1 import releases_pb2 as pb
from fedota.server import Coordinator
from fedota.storage.db import Database

CHUNK = 4096


@pytest.fixture(scope="module")
def digits_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model, _ = digits.train_digits(seed=0, epochs=10)
    path = tmp_path_factory.mktemp("models") / "digits.safetensors"
    save_checkpoint(
        path,
        model.state_dict(),
        architecture=digits.ARCHITECTURE,
        config=digits.config_of(model),
        variant="fp32",
    )
    return path


def _chunks(path: Path, family: str = "digits", **header: object) -> Iterator[pb.ImportModelChunk]:
    data = path.read_bytes()
    yield pb.ImportModelChunk(
        header=pb.ImportModelHeader(family=family, size_bytes=len(data), **header)  # type: ignore[arg-type]
    )
    for start in range(0, len(data), CHUNK):
        yield pb.ImportModelChunk(data=data[start : start + CHUNK])


def test_an_import_becomes_the_next_version_with_its_fp32_artifact(
    admin: AdminClient, digits_file: Path, database: Database
) -> None:
    version = admin.ImportModel(_chunks(digits_file, metrics={"accuracy": 0.97}))

    assert version.ref == "digits@v1" and version.architecture == digits.ARCHITECTURE
    assert version.content_sha256 == model_hash(load(digits_file))
    assert [a.variant for a in version.artifacts] == ["fp32"]
    assert version.artifacts[0].target_path == "artifacts/digits/1/fp32.safetensors"
    assert dict(version.metrics) == {"accuracy": pytest.approx(0.97)}
    assert ("model.import", "operator") in [a[:2] for a in audit_actions(database)]
    listed = admin.ListModels(pb.ListModelsRequest(family="digits"))
    assert [v.ref for v in listed.versions] == ["digits@v1"]


def test_the_same_weights_twice_are_refused_and_nothing_changes(
    admin: AdminClient, digits_file: Path, database: Database
) -> None:
    admin.ImportModel(_chunks(digits_file))
    before = snapshot(database)

    error = rpc_error(lambda: admin.ImportModel(_chunks(digits_file)))

    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "digits@v1 already holds exactly these weights" in error.details()
    assert snapshot(database) == before


def test_a_non_fp32_checkpoint_is_refused(
    admin: AdminClient, digits_file: Path, tmp_path: Path
) -> None:
    from fedota.ml.checkpoint import load_checkpoint
    from fedota.ml.variants import build_variant

    int8 = tmp_path / "int8.safetensors"
    build_variant(load_checkpoint(digits_file), "int8", int8)

    error = rpc_error(lambda: admin.ImportModel(_chunks(int8)))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "import takes fp32 weights" in error.details()


def test_a_release_builds_every_variant_and_a_stock_tuf_client_verifies_it(
    coordinator: Coordinator, admin: AdminClient, digits_file: Path, tmp_path: Path
) -> None:
    admin.ImportModel(_chunks(digits_file))

    release = admin.CreateRelease(pb.CreateReleaseRequest(version="digits@v1", notes="first"))

    assert release.state == "ready" and release.targets_version >= 2
    by_variant = {a.variant: a for a in release.artifacts}
    assert sorted(by_variant) == ["fp32", "int4", "int8", "mcu-int8"]
    for variant in ("int8", "int4", "mcu-int8"):
        assert by_variant[variant].metrics["accuracy_retention"] >= 0.98
    assert by_variant["int4"].size_bytes < by_variant["fp32"].size_bytes / 3
    assert by_variant["mcu-int8"].target_path == "artifacts/digits/1/mcu-int8.bin"

    updater = _stock_updater(coordinator, tmp_path)
    updater.refresh()
    for artifact in release.artifacts:
        info = updater.get_targetinfo(artifact.target_path)
        assert info is not None and info.length == artifact.size_bytes
        assert info.custom["fedota"]["content_sha256"] == artifact.content_sha256
    fetched = updater.download_target(updater.get_targetinfo(by_variant["int8"].target_path))
    assert model_hash(load(fetched)) == by_variant["int8"].content_sha256


def test_after_a_root_rotation_the_stock_client_walks_to_the_new_root(
    coordinator: Coordinator, admin: AdminClient, tmp_path: Path
) -> None:
    updater = _stock_updater(coordinator, tmp_path)
    updater.refresh()

    rotated = admin.RotateKey(pb.RotateKeyRequest(role="root"))

    assert rotated.root_version == 2 and rotated.old_key.keyid != rotated.new_key.keyid
    fresh = _stock_updater(coordinator, tmp_path)  # keeps the trusted root v1 it stored
    fresh.refresh()
    keys = admin.ListKeys(pb.ListKeysRequest())
    assert keys.root_version == 2
    assert {k.role for k in keys.keys} == {"root", "targets", "snapshot", "timestamp"}


def test_the_http_repository_serves_only_repository_files_and_resumes(
    coordinator: Coordinator,
) -> None:
    base = f"http://{coordinator.repository.address}"
    with urllib.request.urlopen(f"{base}/metadata/1.root.json", timeout=10) as response:
        root = response.read()
        assert response.headers["Cache-Control"].startswith("public")
    request = urllib.request.Request(f"{base}/metadata/1.root.json", headers={"Range": "bytes=10-"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 206 and response.read() == root[10:]
    for path in ("/metadata/9.root.json", "/blobs/x", "/../signing.key", "/targets/a/b"):
        with pytest.raises(urllib.error.HTTPError) as raised:
            urllib.request.urlopen(f"{base}{path}", timeout=10)
        assert raised.value.code == 404


def _stock_updater(coordinator: Coordinator, tmp_path: Path) -> Updater:
    """python-tuf's own client over plain HTTP; trusts root v1 on first use, then its cache."""
    base = f"http://{coordinator.repository.address}"
    metadata_dir = tmp_path / "tuf-metadata"
    targets_dir = tmp_path / "tuf-targets"
    bootstrap = None
    if not metadata_dir.exists():
        metadata_dir.mkdir()
        targets_dir.mkdir()
        with urllib.request.urlopen(f"{base}/metadata/1.root.json", timeout=10) as response:
            bootstrap = response.read()
    return Updater(
        str(metadata_dir),
        f"{base}/metadata/",
        str(targets_dir),
        f"{base}/targets/",
        bootstrap=bootstrap,
    )
