"""How long each TUF role's metadata stays valid, and when the coordinator re-signs it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from tuf.api.metadata import Root, Snapshot, Targets, Timestamp

ROOT = Root.type
TARGETS = Targets.type
SNAPSHOT = Snapshot.type
TIMESTAMP = Timestamp.type
# Publication order: a reader that sees a timestamp finds everything it names already stored.
ROLES = (ROOT, TARGETS, SNAPSHOT, TIMESTAMP)


@dataclass(frozen=True)
class TufConfig:
    """Expiry per role and the refresh margin.

    The timestamp expires soonest so a frozen repository (an attacker replaying old metadata) is
    noticed within a day; the root, which only offline-style operations change, lasts a year.
    A role is re-signed once less than `refresh_fraction` of its lifetime remains, so devices
    never meet expired metadata while the coordinator runs.

    Raises (on construction):
        ValueError: an expiry shorter than a minute, or `refresh_fraction` not in (0, 1).
    """

    root_expiry: dt.timedelta = dt.timedelta(days=365)
    targets_expiry: dt.timedelta = dt.timedelta(days=90)
    snapshot_expiry: dt.timedelta = dt.timedelta(days=7)
    timestamp_expiry: dt.timedelta = dt.timedelta(days=1)
    refresh_fraction: float = 0.5

    def __post_init__(self) -> None:
        for role in ROLES:
            lifetime = self.expiry(role)
            if lifetime < dt.timedelta(minutes=1):
                raise ValueError(f"{role}_expiry must be at least one minute, got {lifetime}")
        if not 0 < self.refresh_fraction < 1:
            raise ValueError(f"refresh_fraction must be in (0, 1), got {self.refresh_fraction}")

    def expiry(self, role: str) -> dt.timedelta:
        """The lifetime of a new version of `role`. Raises: ValueError for an unknown role."""
        lifetimes = {
            ROOT: self.root_expiry,
            TARGETS: self.targets_expiry,
            SNAPSHOT: self.snapshot_expiry,
            TIMESTAMP: self.timestamp_expiry,
        }
        if role not in lifetimes:
            raise ValueError(f"unknown TUF role {role!r}; expected one of {', '.join(ROLES)}")
        return lifetimes[role]

    def refresh_at(self, role: str, expires: dt.datetime) -> dt.datetime:
        """When metadata of `role` expiring at `expires` is due to be re-signed."""
        return expires - self.expiry(role) * self.refresh_fraction


__all__ = ["ROLES", "ROOT", "SNAPSHOT", "TARGETS", "TIMESTAMP", "TufConfig"]
