"""Rollback attacks: metadata older than what the device trusts is refused.

Ported from python-tuf's test_updater_top_level_update.py (new_timestamp_version_rollback,
new_timestamp_snapshot_rollback, new_snapshot_version_rollback, new_root_same_version,
snapshot_rollback_with_local_snapshot_hash_mismatch, timestamp_eq_versions_check).
"""

from __future__ import annotations

import pytest
from tuf.api.metadata import MetaFile, Signed, Snapshot, Timestamp
from tuf_simulator import Coordinator, disk_state, forge, forged_chain

from fedota.client.update import TrustedUpdates, VersionRejected


def test_an_older_timestamp_is_refused(publisher: Coordinator, device: TrustedUpdates) -> None:
    old_timestamp = publisher.latest("timestamp").data
    publisher.change(lambda repo: repo.bump_timestamp(publisher.now))
    device.refresh()
    before = disk_state(device.metadata_dir)
    publisher.server.serve("metadata/timestamp.json", old_timestamp)

    with pytest.raises(VersionRejected, match="timestamp version 1 must be >= 2"):
        device.refresh()

    assert disk_state(device.metadata_dir) == before


def test_a_timestamp_naming_an_older_snapshot_is_refused(
    publisher: Coordinator, device: TrustedUpdates
) -> None:
    publisher.change(lambda repo: repo.bump_snapshot(publisher.now))
    publisher.change(lambda repo: repo.bump_snapshot(publisher.now))
    device.refresh()
    before = disk_state(device.metadata_dir)
    old_snapshot = publisher.server.files["metadata/2.snapshot.json"]

    def name_old_snapshot(signed: Signed) -> None:
        assert isinstance(signed, Timestamp)
        signed.version += 1
        signed.snapshot_meta = MetaFile(2, len(old_snapshot))

    # Signed with the real timestamp key: only the version check stands in the way.
    publisher.server.serve(
        "metadata/timestamp.json",
        forge(publisher.latest("timestamp"), name_old_snapshot, [publisher.signer("timestamp")]),
    )

    with pytest.raises(VersionRejected, match="snapshot version must be >= 3"):
        device.refresh()

    assert disk_state(device.metadata_dir) == before


def test_a_snapshot_naming_older_targets_is_refused(
    publisher: Coordinator, device: TrustedUpdates
) -> None:
    publisher.add_artifact(b"v1" * 100, version=1)
    publisher.add_artifact(b"v2" * 100, version=2)
    device.refresh()
    trusted = {
        role: (device.metadata_dir / f"{role}.json").read_bytes()
        for role in ("snapshot", "targets")
    }
    old_targets = publisher.server.files["metadata/2.targets.json"]

    def name_old_targets(signed: Signed) -> None:
        assert isinstance(signed, Snapshot)
        signed.version += 1
        signed.meta["targets.json"] = MetaFile(2, len(old_targets))

    # The attacker holds the snapshot and timestamp keys and replays targets v2 under them.
    snapshot_key = publisher.signer("snapshot")
    rolled_back = forge(publisher.latest("snapshot"), name_old_targets, [snapshot_key])
    for path, data in forged_chain(publisher, snapshot=rolled_back).items():
        publisher.server.serve(path, data)

    with pytest.raises(VersionRejected, match=r"targets\.json"):
        device.refresh()

    for role, data in trusted.items():
        assert (device.metadata_dir / f"{role}.json").read_bytes() == data


def test_a_root_replayed_as_the_next_version_is_refused(
    publisher: Coordinator, device: TrustedUpdates
) -> None:
    device.refresh()
    before = disk_state(device.metadata_dir)
    publisher.server.serve("metadata/2.root.json", publisher.first_root)

    with pytest.raises(VersionRejected, match="Expected root version 2 instead got version 1"):
        device.refresh()

    assert disk_state(device.metadata_dir) == before


def test_a_root_skipping_versions_is_refused(
    publisher: Coordinator, device: TrustedUpdates
) -> None:
    def jump(signed: Signed) -> None:
        signed.version = 3

    publisher.server.serve(
        "metadata/2.root.json", forge(publisher.first_root, jump, [publisher.signer("root")])
    )

    with pytest.raises(VersionRejected, match="instead got version 3"):
        device.refresh()

    assert not (device.metadata_dir / "root_history" / "2.root.json").exists()
    assert not (device.metadata_dir / "root_history" / "3.root.json").exists()


def test_a_same_version_timestamp_with_other_content_is_ignored(
    publisher: Coordinator, device: TrustedUpdates
) -> None:
    device.refresh()
    trusted = (device.metadata_dir / "timestamp.json").read_bytes()

    def other_content(signed: Signed) -> None:
        assert isinstance(signed, Timestamp)
        signed.snapshot_meta = MetaFile(100)

    publisher.server.serve(
        "metadata/timestamp.json",
        forge(publisher.latest("timestamp"), other_content, [publisher.signer("timestamp")]),
    )

    device.refresh()

    assert (device.metadata_dir / "timestamp.json").read_bytes() == trusted
    assert device.trusted_versions()["snapshot"] == 1
