"""Freeze attacks: expired metadata is refused, however well signed.

Ported from python-tuf's test_updater_top_level_update.py (new_timestamp_expired,
new_snapshot_expired, new_targets_expired, final_root_expired). The coordinator's core takes its
clock as an argument, so "signed three days ago" needs no frozen time.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from tuf_simulator import Coordinator, disk_state

from fedota.client.update import MetadataExpired, TrustedUpdates
from fedota.server.releases import TufConfig

DAY = dt.timedelta(days=1)
LONG = dt.timedelta(days=30)


@pytest.mark.parametrize(
    ("expired", "kept"),
    [
        ("timestamp", {"root.json"}),
        ("snapshot", {"root.json", "timestamp.json"}),
        ("targets", {"root.json", "timestamp.json", "snapshot.json"}),
    ],
)
def test_expired_metadata_is_refused_and_not_stored(
    tmp_path: Path, expired: str, kept: set[str]
) -> None:
    lifetimes = {f"{role}_expiry": LONG for role in ("root", "targets", "snapshot", "timestamp")}
    lifetimes[f"{expired}_expiry"] = DAY
    publisher = Coordinator.start(
        now=dt.datetime.now(dt.UTC) - 3 * DAY, config=TufConfig(**lifetimes)
    )
    device = TrustedUpdates(tmp_path / "update", publisher.server, trust_root=publisher.first_root)

    with pytest.raises(MetadataExpired, match=f"{expired}"):
        device.refresh()

    stored = {name for name in disk_state(device.metadata_dir) if "/" not in name}
    assert stored == kept


def test_an_expired_root_is_refused_and_nothing_after_it_stored(tmp_path: Path) -> None:
    publisher = Coordinator.start(
        now=dt.datetime.now(dt.UTC) - 3 * DAY, config=TufConfig(root_expiry=DAY)
    )
    device = TrustedUpdates(tmp_path / "update", publisher.server, trust_root=publisher.first_root)

    with pytest.raises(MetadataExpired, match=r"root\.json is expired"):
        device.refresh()

    stored = {name for name in disk_state(device.metadata_dir) if "/" not in name}
    assert stored == {"root.json"}


def test_a_frozen_device_recovers_once_the_coordinator_re_signs(tmp_path: Path) -> None:
    publisher = Coordinator.start(now=dt.datetime.now(dt.UTC) - 3 * DAY)
    device = TrustedUpdates(tmp_path / "update", publisher.server, trust_root=publisher.first_root)
    with pytest.raises(MetadataExpired):
        device.refresh()

    # The refresh timer runs again: the timestamp (and snapshot) due for refresh are re-signed.
    publisher.now = dt.datetime.now(dt.UTC)
    published = publisher.change(lambda repo: repo.refresh_expiring(publisher.now))
    device.refresh()

    assert [md.role for md in published.metadata] == ["timestamp"]
    assert device.trusted_versions()["timestamp"] == 2


def test_replaying_the_expired_timestamp_after_a_refresh_is_refused(
    publisher: Coordinator, device: TrustedUpdates
) -> None:
    device.refresh()
    before = disk_state(device.metadata_dir)
    # Version 2 signed by the real key, but three days ago: newer than trusted, yet expired.
    replay = publisher.repository.bump_timestamp(publisher.now - 3 * DAY).metadata[0].data
    publisher.server.serve("metadata/timestamp.json", replay)

    with pytest.raises(MetadataExpired, match="timestamp"):
        device.refresh()

    assert disk_state(device.metadata_dir) == before
