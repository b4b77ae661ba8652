"""The install journal, `<state>/models/update.json`: what a half-done install was doing.

It is written (atomically, durably) before an install touches a slot and removed once the install
is settled, so its presence at start-up means "an install was interrupted". With the slot pointer
(`active.json`) it tells `recover` where the install stopped:

- the pointer does not name the journal's slot: the crash came before the switch (or after a
  rollback flipped the pointer back): the slot is discarded;
- it names the slot, pending: the crash came between switch and confirm: the health check runs
  again (at most `max_health_attempts` times in all; a model that kills the daemon while being
  checked is rolled back rather than checked forever), or a recorded rollback is finished;
- it names the slot, confirmed: only the journal's removal was missing.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path

from fedota.client.update import durable
from fedota.client.update.apply_errors import SlotError
from fedota.client.update.slots import SLOT_NAMES, SlotStore, target_from_record
from fedota.update_targets import ArtifactTarget

JOURNAL_FILE = "update.json"


class Phase(StrEnum):
    """Where an install stands, as far as a restart needs to know."""

    APPLYING = "applying"  # writing, verifying, switching or health-checking
    ROLLING_BACK = "rolling_back"  # the health check failed; the pointer goes back


@dataclass(frozen=True)
class Journal:
    """One install in progress.

    Attributes:
        slot: the slot being installed into.
        target: the signed artifact it must hold.
        phase: see `Phase`.
        health_attempts: health checks started so far (counted before each one runs).
        reason: why the install is being rolled back (ROLLING_BACK only).
    """

    slot: str
    target: ArtifactTarget
    phase: Phase = Phase.APPLYING
    health_attempts: int = 0
    reason: str = ""

    def replace(self, **changes: object) -> Journal:
        """A copy with `changes` applied."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def journal_path(slots: SlotStore) -> Path:
    return slots.root / JOURNAL_FILE


def read_journal(slots: SlotStore) -> Journal | None:
    """The journal of an interrupted install, or None.

    Raises:
        SlotError: it is unreadable or corrupt.
    """
    path = journal_path(slots)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SlotError(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = json.loads(raw)
        journal = Journal(
            slot=data["slot"],
            target=target_from_record(data["target"]),
            phase=Phase(data["phase"]),
            health_attempts=data["health_attempts"],
            reason=data["reason"],
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise SlotError(f"{path} is corrupt: {exc}") from None
    if journal.slot not in SLOT_NAMES or type(journal.health_attempts) is not int:
        raise SlotError(f"{path} is corrupt: slot {journal.slot!r} or its attempts are invalid")
    return journal


def write_journal(slots: SlotStore, journal: Journal) -> None:
    """Persist `journal` (replacing any other) before the step it announces.

    Raises:
        SlotError: it cannot be written.
    """
    path = journal_path(slots)
    try:
        durable.write_json(path, {**asdict(journal), "phase": journal.phase.value})
    except OSError as exc:
        raise SlotError(f"cannot write {path}: {exc.strerror}") from None


def remove_journal(slots: SlotStore) -> None:
    """The install is settled: forget it.

    Raises:
        SlotError: the journal cannot be removed.
    """
    path = journal_path(slots)
    try:
        durable.remove(path)
    except OSError as exc:
        raise SlotError(f"cannot remove {path}: {exc.strerror}") from None


__all__ = [
    "JOURNAL_FILE",
    "Journal",
    "Phase",
    "journal_path",
    "read_journal",
    "remove_journal",
    "write_journal",
]
