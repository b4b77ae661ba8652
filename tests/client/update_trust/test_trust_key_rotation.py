"""Key rotation: a new root is trusted only when both the old and the new root sign it, and a
retired key signs nothing afterwards.

Ported from python-tuf's tests/test_updater_key_rotations.py (root rotation cases and non-root
rotation cases), with the coordinator's own `rotate_key` as the first case of each.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from securesystemslib.signer import Signer
from tuf.api.metadata import Metadata, Root, Signed, Timestamp
from tuf_simulator import Coordinator, disk_state, forge, forged_chain, set_role_keys

from fedota.client.update import SignatureRejected, TrustedUpdates
from fedota.server.releases import generate_signer

POOL = [generate_signer() for _ in range(6)]


def test_the_coordinators_root_rotation_is_accepted(
    publisher: Coordinator, device: TrustedUpdates
) -> None:
    device.refresh()
    new_root_key = generate_signer()
    publisher.change(lambda repo: repo.rotate_key("root", new_root_key, publisher.now))

    device.refresh()

    root = Metadata.from_bytes((device.metadata_dir / "root.json").read_bytes()).signed
    assert isinstance(root, Root)
    assert root.version == 2
    assert root.roles["root"].keyids == [new_root_key.public_key.keyid]


def test_the_old_root_key_cannot_sign_after_its_rotation(
    publisher: Coordinator, device: TrustedUpdates
) -> None:
    old_root_key = publisher.signer("root")
    publisher.change(lambda repo: repo.rotate_key("root", generate_signer(), publisher.now))
    device.refresh()
    before = disk_state(device.metadata_dir)

    def restore_old_key(signed: Signed) -> None:
        assert isinstance(signed, Root)
        signed.version += 1
        set_role_keys(signed, "root", [old_root_key], 1)

    publisher.server.serve(
        "metadata/3.root.json", forge(publisher.latest("root"), restore_old_key, [old_root_key])
    )

    with pytest.raises(SignatureRejected, match="root"):
        device.refresh()

    assert disk_state(device.metadata_dir) == before


@pytest.mark.parametrize("role", ["timestamp", "snapshot", "targets"])
def test_a_retired_role_key_cannot_sign_after_its_rotation(
    publisher: Coordinator, device: TrustedUpdates, role: str
) -> None:
    old_key = publisher.signer(role)
    publisher.change(lambda repo: repo.rotate_key(role, generate_signer(), publisher.now))
    device.refresh()
    trusted = (device.metadata_dir / f"{role}.json").read_bytes()

    def bump(signed: Signed) -> None:
        signed.version += 1

    forged = forge(publisher.latest(role), bump, [old_key])
    if role == "timestamp":
        publisher.server.serve("metadata/timestamp.json", forged)
    else:
        for path, data in forged_chain(publisher, **{role: forged}).items():
            publisher.server.serve(path, data)

    with pytest.raises(SignatureRejected, match=role):
        device.refresh()

    assert (device.metadata_dir / f"{role}.json").read_bytes() == trusted


@dataclass(frozen=True)
class RootVersion:
    keys: list[int]
    threshold: int
    sigs: list[int]
    refused: bool = False


# The cases of python-tuf's root_rotation_cases (indices into POOL).
ROOT_ROTATIONS = {
    "1-of-1 key rotation": [
        RootVersion([1], 1, [1]),
        RootVersion([2], 1, [2, 1]),
        RootVersion([2], 1, [2]),
    ],
    "1-of-1 key rotation, unused signatures": [
        RootVersion([1], 1, [3, 1, 4]),
        RootVersion([2], 1, [3, 2, 1, 4]),
        RootVersion([2], 1, [3, 2, 4]),
    ],
    "1-of-1 rotation fails: not signed with the old key": [
        RootVersion([1], 1, [1]),
        RootVersion([2], 1, [2, 3, 4], refused=True),
    ],
    "1-of-1 rotation fails: not signed with the new key": [
        RootVersion([1], 1, [1]),
        RootVersion([2], 1, [1, 3, 4], refused=True),
    ],
    "3-of-5, one key rotated": [
        RootVersion([0, 1, 2, 3, 4], 3, [0, 2, 4]),
        RootVersion([0, 1, 3, 4, 5], 3, [0, 4, 1]),
    ],
    "3-of-5, one key rotation fails: not signed with 3 new keys": [
        RootVersion([0, 1, 2, 3, 4], 3, [0, 2, 4]),
        RootVersion([0, 1, 3, 4, 5], 3, [0, 2, 4], refused=True),
    ],
    "3-of-5, one key rotation fails: not signed with 3 old keys": [
        RootVersion([0, 1, 2, 3, 4], 3, [0, 2, 4]),
        RootVersion([0, 1, 3, 4, 5], 3, [0, 4, 5], refused=True),
    ],
    "1-of-3 threshold raised to 2-of-3": [
        RootVersion([1, 2, 3], 1, [1]),
        RootVersion([1, 2, 3], 2, [1, 2]),
    ],
    "1-of-3 to 2-of-3 fails: the new threshold is not met": [
        RootVersion([1, 2, 3], 1, [1]),
        RootVersion([1, 2, 3], 2, [2], refused=True),
    ],
    "2-of-3 to 1-of-3 fails: the old threshold is not met": [
        RootVersion([1, 2, 3], 2, [1, 2]),
        RootVersion([1, 2, 3], 1, [1], refused=True),
    ],
}


def _root_versions(publisher: Coordinator, versions: list[RootVersion]) -> list[bytes]:
    roots = []
    for number, version in enumerate(versions, start=1):

        def shape(signed: Signed, number: int = number, version: RootVersion = version) -> None:
            assert isinstance(signed, Root)
            signed.version = number
            set_role_keys(signed, "root", [POOL[i] for i in version.keys], version.threshold)

        signers: list[Signer] = [POOL[i] for i in version.sigs]
        roots.append(forge(publisher.first_root, shape, signers))
    return roots


@pytest.mark.parametrize("versions", ROOT_ROTATIONS.values(), ids=ROOT_ROTATIONS.keys())
def test_root_rotation(
    publisher: Coordinator, update_dir: Path, versions: list[RootVersion]
) -> None:
    roots = _root_versions(publisher, versions)
    for number, data in enumerate(roots[1:], start=2):
        publisher.server.serve(f"metadata/{number}.root.json", data)
    device = TrustedUpdates(update_dir, publisher.server, trust_root=roots[0])

    if versions[-1].refused:
        with pytest.raises(SignatureRejected, match=f"root v{len(roots)}"):
            device.refresh()
        expected = roots[-2]
    else:
        device.refresh()
        expected = roots[-1]

    assert (device.metadata_dir / "root.json").read_bytes() == expected
    assert not (device.metadata_dir / "root_history" / f"{len(roots) + 1}.root.json").exists()
    if versions[-1].refused:
        assert not (device.metadata_dir / "root_history" / f"{len(roots)}.root.json").exists()


# python-tuf's non_root_rotation_cases, applied to the timestamp role.
ROLE_ROTATIONS = {
    "1-of-1 key rotation": RootVersion([2], 1, [2]),
    "1-of-1 key rotation, unused signatures": RootVersion([1], 1, [3, 1, 4]),
    "1-of-1 rotation fails: not signed with the new key": RootVersion([2], 1, [1, 3, 4], True),
    "3-of-5, one signature by a key not listed": RootVersion([0, 1, 3, 4, 5], 3, [0, 2, 4], True),
    "3-of-5, one signature missing": RootVersion([0, 1, 3, 4, 5], 3, [0, 4], True),
    "3-of-5, signed by a listed combination": RootVersion([0, 1, 2, 3, 4], 3, [1, 2, 3]),
}


@pytest.mark.parametrize("version", ROLE_ROTATIONS.values(), ids=ROLE_ROTATIONS.keys())
def test_timestamp_key_rotation(
    publisher: Coordinator, device: TrustedUpdates, version: RootVersion
) -> None:
    root_key = publisher.signer("root")

    def new_timestamp_keys(signed: Signed) -> None:
        assert isinstance(signed, Root)
        signed.version += 1
        set_role_keys(signed, "timestamp", [POOL[i] for i in version.keys], version.threshold)

    publisher.server.serve(
        "metadata/2.root.json", forge(publisher.first_root, new_timestamp_keys, [root_key])
    )

    def bump(signed: Signed) -> None:
        assert isinstance(signed, Timestamp)
        signed.version += 1

    timestamp = forge(publisher.latest("timestamp"), bump, [POOL[i] for i in version.sigs])
    publisher.server.serve("metadata/timestamp.json", timestamp)

    if version.refused:
        with pytest.raises(SignatureRejected, match="timestamp"):
            device.refresh()
        assert not (device.metadata_dir / "timestamp.json").exists()
    else:
        device.refresh()
        assert (device.metadata_dir / "timestamp.json").read_bytes() == timestamp
    assert device.trusted_versions()["root"] == 2
