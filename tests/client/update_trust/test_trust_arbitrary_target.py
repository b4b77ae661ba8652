"""Arbitrary-software attacks: bytes the targets role did not sign never reach the device.

Ported from python-tuf's tests/test_updater_fetch_target.py (invalid target download) and
test_updater_top_level_update.py (unsigned targets): each case checks the error type and that
nothing wrong reached the disk (no target file, no part file, trusted metadata as it was).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from tuf.api.metadata import Signed, TargetFile, Targets
from tuf_simulator import Coordinator, disk_state, forge, forged_chain

from fedota.client.update import (
    HashMismatch,
    RepositoryUnavailable,
    SignatureRejected,
    TargetInfoInvalid,
    TargetNotSigned,
    TrustedUpdates,
)
from fedota.server.releases import generate_signer

GOOD = b"the signed weights" * 200
EVIL = b"weights of the attacker's choosing" * 100


@pytest.fixture
def refreshed(publisher: Coordinator, device: TrustedUpdates) -> TrustedUpdates:
    publisher.add_artifact(GOOD)
    device.refresh()
    return device


def _nothing_written(dest: Path) -> None:
    assert not dest.exists()
    assert not dest.with_name(dest.name + ".part").exists()


def test_a_target_with_other_bytes_of_the_signed_length_is_refused(
    publisher: Coordinator, refreshed: TrustedUpdates, tmp_path: Path
) -> None:
    spec = publisher.repository.targets()["artifacts/digits/1/fp32.safetensors"]
    tampered = bytes([GOOD[0] ^ 1]) + GOOD[1:]
    publisher.server.add_target(spec, tampered)
    before = disk_state(refreshed.metadata_dir)
    dest = tmp_path / "model.safetensors"

    with pytest.raises(HashMismatch, match="sha256"):
        refreshed.download(spec.path, dest)

    _nothing_written(dest)
    assert disk_state(refreshed.metadata_dir) == before


def test_a_truncated_target_is_never_put_in_place(
    publisher: Coordinator, refreshed: TrustedUpdates, tmp_path: Path
) -> None:
    spec = publisher.repository.targets()["artifacts/digits/1/fp32.safetensors"]
    publisher.server.add_target(spec, GOOD[:-10])
    dest = tmp_path / "model.safetensors"

    with pytest.raises(RepositoryUnavailable, match=f"ended at {len(GOOD) - 10} of {len(GOOD)}"):
        refreshed.download(spec.path, dest)

    assert not dest.exists()


def test_a_path_the_targets_role_did_not_sign_is_refused(
    publisher: Coordinator, refreshed: TrustedUpdates, tmp_path: Path
) -> None:
    path = "artifacts/digits/9/fp32.safetensors"
    sha = hashlib.sha256(EVIL).hexdigest()
    publisher.server.serve(f"targets/artifacts/digits/9/{sha}.fp32.safetensors", EVIL)
    dest = tmp_path / "model.safetensors"

    with pytest.raises(TargetNotSigned, match="not signed"):
        refreshed.download(path, dest)

    _nothing_written(dest)
    assert publisher.server.target_requests() == []


def _evil_targets(publisher: Coordinator) -> bytes:
    def add_evil(signed: Signed) -> None:
        assert isinstance(signed, Targets)
        signed.version += 1
        path = "artifacts/digits/1/fp32.safetensors"
        signed.targets[path] = TargetFile.from_data(path, EVIL)

    return forge(publisher.latest("targets"), add_evil, [generate_signer()])


@pytest.mark.parametrize("signed_by", ["outsider", "nobody"])
def test_targets_metadata_not_signed_by_the_targets_key_is_refused(
    publisher: Coordinator, device: TrustedUpdates, tmp_path: Path, signed_by: str
) -> None:
    publisher.add_artifact(GOOD)
    device.refresh()
    trusted_targets = (device.metadata_dir / "targets.json").read_bytes()
    evil = _evil_targets(publisher)
    if signed_by == "nobody":
        evil = forge(evil, lambda signed: None, [])
    # The attacker holds the snapshot and timestamp keys, not the targets key.
    for path, data in forged_chain(publisher, targets=evil).items():
        publisher.server.serve(path, data)
    dest = tmp_path / "model.safetensors"

    with pytest.raises(SignatureRejected, match="targets"):
        device.refresh()
    with pytest.raises(SignatureRejected):
        device.download("artifacts/digits/1/fp32.safetensors", dest)

    _nothing_written(dest)
    assert (device.metadata_dir / "targets.json").read_bytes() == trusted_targets
    assert EVIL not in b"".join(disk_state(device.metadata_dir).values())


def test_signed_targets_with_invalid_fedota_fields_are_refused(
    publisher: Coordinator, device: TrustedUpdates, tmp_path: Path
) -> None:
    path = "artifacts/digits/1/fp32.safetensors"

    def mislabel(signed: Signed) -> None:
        assert isinstance(signed, Targets)
        signed.version += 1
        target = TargetFile.from_data(path, GOOD)
        # Signed by the real targets key, but names another version than its path.
        target.unrecognized_fields["custom"] = {
            "fedota": {
                "kind": "artifact",
                "family": "digits",
                "version": 2,
                "variant": "fp32",
                "content_sha256": "a" * 64,
            }
        }
        signed.targets[path] = target

    mislabelled = forge(publisher.latest("targets"), mislabel, [publisher.signer("targets")])
    for file, data in forged_chain(publisher, targets=mislabelled).items():
        publisher.server.serve(file, data)
    dest = tmp_path / "model.safetensors"

    with pytest.raises(TargetInfoInvalid, match=r"artifacts/digits/2/fp32\.safetensors"):
        device.download(path, dest)

    _nothing_written(dest)
    assert publisher.server.target_requests() == []
