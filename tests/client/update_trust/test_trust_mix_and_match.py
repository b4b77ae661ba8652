"""Mix-and-match attacks: every file must be the exact one the role above it names.

The timestamp names the snapshot, and the snapshot the targets, by version, length and SHA-256.
Ported from python-tuf's test_updater_top_level_update.py (new_snapshot_hash_mismatch,
new_targets_hash_mismatch, new_snapshot_version_mismatch, new_targets_version_mismatch).
"""

from __future__ import annotations

import datetime as dt

import pytest
from tuf.api.metadata import Signed
from tuf_simulator import Coordinator, disk_state, forge

from fedota.client.update import HashMismatch, TrustedUpdates


def _later_expiry(signed: Signed) -> None:
    signed.expires += dt.timedelta(days=1)


def test_a_snapshot_other_than_the_one_the_timestamp_names_is_refused(
    publisher: Coordinator, device: TrustedUpdates
) -> None:
    # Same version, validly signed by the snapshot key, other bytes.
    other = forge(publisher.latest("snapshot"), _later_expiry, [publisher.signer("snapshot")])
    publisher.server.serve("metadata/1.snapshot.json", other)

    with pytest.raises(HashMismatch, match="snapshot"):
        device.refresh()

    assert {name for name in disk_state(device.metadata_dir) if "/" not in name} == {
        "root.json",
        "timestamp.json",
    }


def test_targets_other_than_the_ones_the_snapshot_names_are_refused(
    publisher: Coordinator, device: TrustedUpdates
) -> None:
    publisher.add_artifact(b"weights" * 100)
    device.refresh()
    trusted_targets = (device.metadata_dir / "targets.json").read_bytes()
    publisher.change(lambda repo: repo.bump_snapshot(publisher.now))
    version = publisher.latest("targets").version
    # The targets file of an earlier snapshot, served under the current version's name.
    publisher.server.serve(
        f"metadata/{version}.targets.json", publisher.server.files["metadata/1.targets.json"]
    )
    device.refresh()  # the stored targets still match: nothing is downloaded

    (device.metadata_dir / "targets.json").unlink()
    with pytest.raises(HashMismatch, match="targets"):
        device.refresh()

    assert not (device.metadata_dir / "targets.json").exists()
    assert trusted_targets != publisher.server.files["metadata/1.targets.json"]


def test_a_snapshot_named_by_version_only_must_still_be_that_version(
    publisher: Coordinator, device: TrustedUpdates
) -> None:
    publisher.change(lambda repo: repo.bump_snapshot(publisher.now))
    # The current snapshot v2 served as v2 but with the bytes of v1 (and so v1 inside).
    publisher.server.serve(
        "metadata/2.snapshot.json", publisher.server.files["metadata/1.snapshot.json"]
    )

    with pytest.raises(HashMismatch):
        device.refresh()

    assert not (device.metadata_dir / "snapshot.json").exists()
