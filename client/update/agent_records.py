"""What the update agent must remember across a crash: its assignment and an unsent outcome.

Two small JSON files in the update directory, each written atomically and durably:

    assignment.json   the assignment being worked on: its rollout, target and patch paths, the
                      signed target's content hash once verified, install attempts begun, and
                      bytes received so far (written before a download starts)
    report.json       an outcome (healthy, failed, rolled back) the coordinator has not yet
                      acknowledged (written before it is sent, removed once it was)

A restart reads them to report what the last run finished and to count installs a crash cut
short. A file that does not parse is dropped with a warning: it only ever costs a repeated
report or download, never a wrong model.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from fedota.client.update import durable
from fedota.client.update.install import UpdateStatus
from fedota.client.update.trust_errors import TrustStateError

log = logging.getLogger(__name__)

ASSIGNMENT_FILE = "assignment.json"
REPORT_FILE = "report.json"
OUTCOMES = frozenset({UpdateStatus.HEALTHY, UpdateStatus.FAILED, UpdateStatus.ROLLED_BACK})
_R = TypeVar("_R", "AssignmentRecord", "PendingReport")


@dataclass(frozen=True)
class AssignmentRecord:
    """The assignment the agent works on.

    Attributes:
        rollout_id: the rollout that assigned it.
        target_path: the signed artifact to run.
        patch_path: the signed patch offered ("" for a full download).
        content_sha256: the target's signed content hash ("" until its metadata was verified).
        installs: installs begun for it (a crash mid-apply counts one).
        bytes_received: patch and target bytes received for it so far.
        patch_refused: why the patch was not used ("" while it may be): the full target is
            fetched instead.
    """

    rollout_id: str
    target_path: str
    patch_path: str = ""
    content_sha256: str = ""
    installs: int = 0
    bytes_received: int = 0
    patch_refused: str = ""

    def same_work(self, rollout_id: str, target_path: str) -> bool:
        return (self.rollout_id, self.target_path) == (rollout_id, target_path)

    def replace(self, **changes: Any) -> AssignmentRecord:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class PendingReport:
    """An outcome to tell the coordinator until it acknowledges it."""

    rollout_id: str
    status: UpdateStatus
    content_sha256: str
    reason: str = ""
    bytes_received: int = 0

    def __post_init__(self) -> None:
        if self.status not in OUTCOMES:
            raise ValueError(f"only outcomes are kept for resending, not {self.status}")


class AgentRecords:
    """The agent's two files in `update_dir`."""

    def __init__(self, update_dir: Path) -> None:
        self.directory = Path(update_dir)

    def assignment(self) -> AssignmentRecord | None:
        return self._read(ASSIGNMENT_FILE, AssignmentRecord)

    def save_assignment(self, record: AssignmentRecord) -> None:
        """Raises: TrustStateError: the file cannot be written."""
        self._write(ASSIGNMENT_FILE, asdict(record))

    def clear_assignment(self) -> None:
        """Raises: TrustStateError: the file cannot be removed."""
        self._remove(ASSIGNMENT_FILE)

    def pending_report(self) -> PendingReport | None:
        return self._read(REPORT_FILE, PendingReport)

    def save_report(self, report: PendingReport) -> None:
        """Raises: TrustStateError: the file cannot be written."""
        self._write(REPORT_FILE, {**asdict(report), "status": report.status.value})

    def clear_report(self) -> None:
        """Raises: TrustStateError: the file cannot be removed."""
        self._remove(REPORT_FILE)

    # -- internals -------------------------------------------------------------------------

    def _read(self, name: str, kind: type[_R]) -> _R | None:
        path = self.directory / name
        try:
            data = json.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("ignoring the unreadable %s: %s", path, exc)
            return None
        try:
            if kind is PendingReport:
                data["status"] = UpdateStatus(data["status"])
            record = kind(**data)
            _check_types(record)
        except (TypeError, ValueError, KeyError) as exc:
            log.warning("ignoring the corrupt %s: %s", path, exc)
            return None
        return record

    def _write(self, name: str, value: dict[str, Any]) -> None:
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            durable.write_json(self.directory / name, value)
        except OSError as exc:
            raise TrustStateError(f"cannot write {self.directory / name}: {exc}") from None

    def _remove(self, name: str) -> None:
        try:
            durable.remove(self.directory / name)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise TrustStateError(f"cannot remove {self.directory / name}: {exc}") from None


def _check_types(record: AssignmentRecord | PendingReport) -> None:
    for item in dataclasses.fields(record):
        value = getattr(record, item.name)
        wanted = int if item.type in ("int", int) else str
        if not isinstance(value, wanted) or isinstance(value, bool):
            raise TypeError(f"{item.name} must be {wanted.__name__}, got {value!r}")
        if wanted is int and value < 0:
            raise ValueError(f"{item.name} must be >= 0, got {value}")


__all__ = [
    "ASSIGNMENT_FILE",
    "OUTCOMES",
    "REPORT_FILE",
    "AgentRecords",
    "AssignmentRecord",
    "PendingReport",
]
