"""The happy path: a device verifies what the coordinator signed, and follows it as it changes."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from tuf_simulator import Coordinator, forge

from fedota.client.update import (
    TrustedUpdates,
    TrustStateError,
    install_trust_root,
)
from fedota.server.releases import generate_signer
from fedota.update_targets import ArtifactTarget


def test_first_refresh_stores_only_verified_metadata(
    publisher: Coordinator, device: TrustedUpdates
) -> None:
    device.refresh()

    assert device.trusted_versions() == {"root": 1, "timestamp": 1, "snapshot": 1, "targets": 1}
    assert publisher.server.metadata_requests() == [
        "metadata/2.root.json",
        "metadata/timestamp.json",
        "metadata/1.snapshot.json",
        "metadata/1.targets.json",
    ]
    stored = (device.metadata_dir / "timestamp.json").read_bytes()
    assert stored == publisher.latest("timestamp").data


def test_a_signed_artifact_downloads_verified(
    publisher: Coordinator, device: TrustedUpdates, tmp_path: Path
) -> None:
    data = os.urandom(5000)
    spec = publisher.add_artifact(data, version=2, variant="int8")
    dest = tmp_path / "model.safetensors"

    target = device.download(spec.path, dest)

    assert dest.read_bytes() == data
    assert target.length == len(data) and target.sha256 == spec.sha256
    assert isinstance(target.info, ArtifactTarget)
    assert (target.info.family, target.info.version, target.info.variant) == ("digits", 2, "int8")
    assert target.info.content_sha256 == spec.info.content_sha256
    assert publisher.server.target_requests() == [(f"targets/{spec.served_path}", 0)]
    assert not (tmp_path / "model.safetensors.part").exists()


def test_a_verified_file_already_in_place_is_not_fetched_again(
    publisher: Coordinator, device: TrustedUpdates, tmp_path: Path
) -> None:
    spec = publisher.add_artifact(b"weights" * 100)
    dest = tmp_path / "model.safetensors"
    device.download(spec.path, dest)
    publisher.server.requests.clear()

    device.download(spec.path, dest)

    assert publisher.server.target_requests() == []


def test_a_new_release_and_a_rotated_root_are_followed(
    publisher: Coordinator, make_device: Callable[..., TrustedUpdates], tmp_path: Path
) -> None:
    first = make_device()
    first.refresh()
    publisher.change(lambda repo: repo.rotate_key("root", generate_signer(), publisher.now))
    publisher.change(lambda repo: repo.rotate_key("targets", generate_signer(), publisher.now))
    spec = publisher.add_artifact(b"v2" * 1000, version=2)

    later = make_device()  # a daemon restart: same anchor, same metadata directory
    later.download(spec.path, tmp_path / "v2.safetensors")

    versions = later.trusted_versions()
    assert versions["root"] == publisher.latest("root").version == 3
    assert versions["targets"] == publisher.latest("targets").version


def test_the_installed_anchor_is_used_when_no_root_is_given(
    publisher: Coordinator, update_dir: Path
) -> None:
    install_trust_root(update_dir, publisher.first_root)
    assert (update_dir / "trusted_root.json").stat().st_mode & 0o777 == 0o600

    device = TrustedUpdates(update_dir, publisher.server)
    device.refresh()

    assert device.trusted_versions()["timestamp"] == 1
    assert update_dir.stat().st_mode & 0o777 == 0o700


def test_no_anchor_is_a_state_error(publisher: Coordinator, update_dir: Path) -> None:
    with pytest.raises(TrustStateError, match="no trusted update root"):
        TrustedUpdates(update_dir, publisher.server)


@pytest.mark.parametrize(
    "root",
    [b"", b"{}", b'{"signed": {"_type": "targets"}, "signatures": []}'],
    ids=["empty", "not-metadata", "not-a-root"],
)
def test_an_invalid_anchor_is_refused(
    publisher: Coordinator, update_dir: Path, root: bytes
) -> None:
    with pytest.raises(TrustStateError, match="not a valid, self-signed TUF root"):
        install_trust_root(update_dir, root)
    assert not (update_dir / "trusted_root.json").exists()


def test_an_anchor_not_signed_by_its_own_keys_is_refused(
    publisher: Coordinator, update_dir: Path
) -> None:
    unsigned = forge(publisher.first_root, lambda signed: None, [])

    with pytest.raises(TrustStateError, match="self-signed"):
        TrustedUpdates(update_dir, publisher.server, trust_root=unsigned)
