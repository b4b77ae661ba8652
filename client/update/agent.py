"""One pass of the device's update agent: ask, fetch, install, report.

    agent = UpdateAgent(state_dir, update_dir, connection)
    agent.recover()              # at start, before serving: finish what a crash interrupted
    result = agent.run_once()    # every update interval; the install's result, or None

A pass sends an outcome the coordinator has not acknowledged yet, asks for the assignment of the
model the device runs (`GetAssignment`), and for an INSTALL: refreshes the verified TUF metadata,
looks both the target and the patch up in it (only signed paths are ever fetched), downloads the
patch when one is offered (else the full target) resumably into `<update>/downloads/`, installs
it into the inactive slot (`install`), and reports every step: DOWNLOADING (with bytes received),
VERIFYING, APPLYING, HEALTH_CHECKING, then HEALTHY, FAILED (with the reason) or ROLLED_BACK.

What fails where:
- the repository's data is refused (`RepositoryRejected`: unsigned, tampered, expired...): the
  outcome is FAILED with the reason; nothing of it is installed. A refused or unappliable *patch*
  only costs the patch: the full target, verified on its own, is fetched instead;
- the coordinator or a stream is unreachable or cut (`RepositoryUnavailable`, `ClientError`s of
  the transport): the pass raises, the daemon retries with backoff, a cut download resumes from
  its `.part` file, also after a restart;
- an outcome is kept in `report.json` until the coordinator acknowledged it, and an assignment's
  progress in `assignment.json` (`agent_records`), so after `kill -9` the next start reports what
  the last run finished, and an install a crash interrupted before its switch is tried again
  (at most `max_installs` times) rather than reported as the update's failure.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from fedota.client.errors import ClientError, RemoteError
from fedota.client.update.agent_records import (
    OUTCOMES,
    AgentRecords,
    AssignmentRecord,
    PendingReport,
)
from fedota.client.update.apply_errors import SlotError, UpdateRejected
from fedota.client.update.grpc_fetcher import FetchChannel, GrpcFetcher
from fedota.client.update.install import (
    HealthCheckFn,
    InstallResult,
    StatusReport,
    StepHook,
    Update,
    UpdateStatus,
    install,
    recover,
)
from fedota.client.update.journal import journal_path
from fedota.client.update.slots import Slot, SlotStore
from fedota.client.update.trust import SignedTarget, TrustConfig, TrustedUpdates
from fedota.client.update.trust_bootstrap import ensure_trust_root
from fedota.client.update.trust_errors import RepositoryRejected, TrustStateError
from fedota.protos.v1 import updates_pb2
from fedota.update_targets import ArtifactTarget, PatchTarget

log = logging.getLogger(__name__)

DOWNLOADS_DIR = "downloads"
# Codes under which the coordinator will never take a report: drop it rather than resend forever.
_REPORT_REFUSED = frozenset(
    {"INVALID_ARGUMENT", "FAILED_PRECONDITION", "NOT_FOUND", "OUT_OF_RANGE"}
)
_MAX_REASON_CHARS = 1000
_STATUS_CODES = {
    UpdateStatus.APPLYING: updates_pb2.UPDATE_STATUS_APPLYING,
    UpdateStatus.HEALTH_CHECKING: updates_pb2.UPDATE_STATUS_HEALTH_CHECKING,
    UpdateStatus.HEALTHY: updates_pb2.UPDATE_STATUS_HEALTHY,
    UpdateStatus.FAILED: updates_pb2.UPDATE_STATUS_FAILED,
    UpdateStatus.ROLLED_BACK: updates_pb2.UPDATE_STATUS_ROLLED_BACK,
}


class UpdateChannel(FetchChannel, Protocol):
    """What the agent needs of the connection (`FleetConnection` provides it)."""

    def get_assignment(
        self, request: updates_pb2.GetAssignmentRequest
    ) -> updates_pb2.Assignment: ...

    def report_status(
        self, request: updates_pb2.ReportStatusRequest
    ) -> updates_pb2.ReportStatusResponse: ...


@dataclass(frozen=True)
class AgentConfig:
    """Limits of the update agent.

    Attributes:
        trust: byte caps for metadata and targets.
        progress_interval: least seconds between two DOWNLOADING reports of one download.
        max_installs: installs of one assignment a crash may interrupt before it is reported
            as failed (a model that crashes the daemon while being applied).

    Raises (on construction):
        ValueError: a non-positive value.
    """

    trust: TrustConfig = field(default_factory=TrustConfig)
    progress_interval: float = 5.0
    max_installs: int = 3

    def __post_init__(self) -> None:
        if not self.progress_interval > 0 or self.max_installs < 1:
            raise ValueError("progress_interval must be positive and max_installs at least 1")


class UpdateAgent:
    """Installs what the coordinator assigns, into the slots of one state directory.

    Not thread-safe: one thread runs `recover` and then `run_once` over and over.
    """

    def __init__(
        self,
        state_dir: Path,
        update_dir: Path,
        channel: UpdateChannel,
        *,
        config: AgentConfig | None = None,
        health: HealthCheckFn | None = None,
        on_step: StepHook | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.update_dir = Path(update_dir)
        self.downloads = self.update_dir / DOWNLOADS_DIR
        self.config = config or AgentConfig()
        self.slots = SlotStore(self.state_dir)
        self.records = AgentRecords(self.update_dir)
        self._channel = channel
        self._fetcher = GrpcFetcher(channel)
        self._health = health
        self._on_step = on_step
        self._clock = clock

    # -- start-up --------------------------------------------------------------------------

    def recover(self) -> InstallResult | None:
        """Finish or undo an install a crash interrupted, and queue the outcome the coordinator
        should hear (sent by the next `run_once`). Returns the interrupted install's result.

        Raises:
            SlotsBusy: another process holds the slots.
            SlotError: the slots, pointer or journal are corrupt or cannot be written.
            TrustStateError: the agent's records cannot be written.
        """
        if not self.slots.root.is_dir():
            return None  # no model was ever installed; nothing is created before enrollment
        result = recover(self.state_dir, health=self._health, on_step=self._on_step)
        record = self.records.assignment()
        if result is not None:
            log.info("an interrupted install ended %s: %s", result.status, result.reason or "ok")
        if record is None:
            return result
        if result is None:
            active = self.slots.active()
            finished = (
                record.content_sha256
                and active is not None
                and active.content_sha256 == record.content_sha256
            )
            if finished and self.records.pending_report() is None:
                # The last run installed it but stopped before it queued the outcome.
                self._settle(record, UpdateStatus.HEALTHY, record.content_sha256)
            return None
        if result.status is UpdateStatus.FAILED:
            # Interrupted before the switch: a crash, not the update's fault. Try again.
            if record.installs >= self.config.max_installs:
                self._settle(
                    record,
                    UpdateStatus.FAILED,
                    _serving(result),
                    f"the install was interrupted {record.installs} times; giving up",
                )
            return result
        self._settle(record, result.status, _serving(result), result.reason)
        return result

    # -- one pass --------------------------------------------------------------------------

    def run_once(self) -> InstallResult | None:
        """Report what is unsent, ask for an assignment and carry it out; the install's result,
        None when nothing was installed.

        Raises:
            CoordinatorUnavailable, RemoteError: a call failed (retry later).
            RepositoryUnavailable: the update repository could not be reached or a download was
                cut (retry later; the download resumes).
            SlotsBusy, SlotError: the slots cannot be used as they are.
            TrustStateError: the update directory cannot be used.
        """
        self._send_pending()
        if journal_path(self.slots).exists() or self.slots.pointer().pending:
            self.recover()
            self._send_pending()
        active = self.slots.active()
        assignment = self._channel.get_assignment(
            updates_pb2.GetAssignmentRequest(
                content_sha256=active.content_sha256 if active is not None else ""
            )
        )
        if assignment.action != updates_pb2.ASSIGNMENT_ACTION_INSTALL:
            self._forget_stale_work()
            return None
        record = self._record_for(assignment)
        result = self._carry_out(record, active)
        try:
            self._send_pending()
        except ClientError as exc:  # the outcome stays queued for the next pass
            log.warning("reporting the update's outcome failed: %s; will retry", exc)
        return result

    def _carry_out(self, record: AssignmentRecord, active: Slot | None) -> InstallResult | None:
        ensure_trust_root(self.update_dir, self._fetcher, config=self.config.trust)
        updates = TrustedUpdates(self.update_dir, self._fetcher, config=self.config.trust)
        try:
            target = self._verified_target(updates, record)
        except RepositoryRejected as exc:
            log.error("update %s refused: %s", record.target_path, exc)
            self._settle(record, UpdateStatus.FAILED, _content(active), str(exc))
            return None
        record = self.records.assignment() or record
        if record.installs >= self.config.max_installs:
            reason = f"the install was interrupted {record.installs} times; giving up"
            self._settle(record, UpdateStatus.FAILED, _content(active), reason)
            return None
        if record.patch_path and active is not None:
            result = self._by_patch(updates, record, target, active)
            if result is not None:
                return self._finish(record, result)
            record = self.records.assignment() or record
        try:
            file = self._download(updates, record, target)
        except RepositoryRejected as exc:
            log.error("update %s refused: %s", record.target_path, exc)
            self._settle(record, UpdateStatus.FAILED, _content(active), str(exc))
            return None
        assert isinstance(target.info, ArtifactTarget)
        return self._finish(record, self._install(record, Update(target.info, file)))

    def _verified_target(self, updates: TrustedUpdates, record: AssignmentRecord) -> SignedTarget:
        """The assignment's target as the verified metadata signs it.

        Raises:
            RepositoryRejected: it is not signed, not an artifact, or not installable here.
            RepositoryUnavailable: the repository could not be reached.
        """
        updates.refresh()
        target = updates.target_info(record.target_path)
        if not isinstance(target.info, ArtifactTarget):
            raise _NotInstallable(f"{record.target_path} is signed as a patch, not a model")
        if target.info.variant == "mcu-int8":
            raise _NotInstallable(
                f"{record.target_path} is a microcontroller image: it is flashed, not run by "
                "the device daemon"
            )
        if record.content_sha256 != target.info.content_sha256:
            self.records.save_assignment(record.replace(content_sha256=target.info.content_sha256))
        return target

    def _by_patch(
        self,
        updates: TrustedUpdates,
        record: AssignmentRecord,
        target: SignedTarget,
        active: Slot,
    ) -> InstallResult | None:
        """Install by the offered patch; None when the full target must be fetched instead."""
        if record.patch_refused:
            return None
        try:
            patch = updates.target_info(record.patch_path)
            info = patch.info
            if not isinstance(info, PatchTarget) or info.target_path != target.path:
                raise _NotInstallable(f"{record.patch_path} is not signed as a patch to it")
            if info.target_content_sha256 != target.info.content_sha256:
                raise _NotInstallable(f"{record.patch_path} is signed for other content")
            file = self._download(updates, record, patch)
        except RepositoryRejected as exc:
            self._refuse_patch(record, str(exc))
            return None
        assert isinstance(target.info, ArtifactTarget)
        result = self._install(
            record, Update(target.info, file, base_content_sha256=info.base_content_sha256)
        )
        if result.status is UpdateStatus.FAILED and isinstance(result.error, UpdateRejected):
            self._refuse_patch(self.records.assignment() or record, result.reason)
            return None
        return result

    def _refuse_patch(self, record: AssignmentRecord, reason: str) -> None:
        log.warning(
            "the patch %s is not used (%s); fetching the full model", record.patch_path, reason
        )
        self.records.save_assignment(record.replace(patch_refused=reason[:_MAX_REASON_CHARS]))

    def _download(
        self, updates: TrustedUpdates, record: AssignmentRecord, signed: SignedTarget
    ) -> Path:
        """The signed file, downloaded (or resumed) and verified, with DOWNLOADING reports.

        Raises:
            RepositoryRejected: it is not signed, oversized, or does not hash as signed.
            RepositoryUnavailable: the transfer was cut (the part file is kept).
        """
        dest = self.downloads / f"{signed.sha256}.{signed.path.rsplit('/', 1)[-1]}"
        try:
            self.downloads.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise TrustStateError(f"cannot create {self.downloads}: {exc}") from None
        earlier = record.bytes_received
        counted = dest.exists()  # downloaded and counted by an earlier pass
        last = [self._clock()]

        def progress(received: int, length: int) -> None:
            now = self._clock()
            if now - last[0] >= self.config.progress_interval:
                last[0] = now
                received_now = earlier + received
                self._report_working(record, updates_pb2.UPDATE_STATUS_DOWNLOADING, received_now)

        self._report_working(record, updates_pb2.UPDATE_STATUS_DOWNLOADING, earlier)
        updates.download(signed.path, dest, progress)
        record = self.records.assignment() or record
        if not counted:
            record = record.replace(bytes_received=earlier + signed.length)
            self.records.save_assignment(record)
        self._report_working(record, updates_pb2.UPDATE_STATUS_VERIFYING, record.bytes_received)
        return dest

    def _install(self, record: AssignmentRecord, update: Update) -> InstallResult:
        record = self.records.assignment() or record
        self.records.save_assignment(record.replace(installs=record.installs + 1))

        def on_status(report: StatusReport) -> None:
            if report.status not in OUTCOMES:
                self._report_working(record, _STATUS_CODES[report.status], record.bytes_received)

        return install(
            self.state_dir, update, health=self._health, on_status=on_status, on_step=self._on_step
        )

    def _finish(self, record: AssignmentRecord, result: InstallResult) -> InstallResult:
        if result.status is UpdateStatus.FAILED and isinstance(result.error, SlotError):
            log.error("installing %s failed on this device: %s", record.target_path, result.reason)
        self._settle(
            self.records.assignment() or record, result.status, _serving(result), result.reason
        )
        return result

    # -- records and reports -----------------------------------------------------------------

    def _record_for(self, assignment: updates_pb2.Assignment) -> AssignmentRecord:
        record = self.records.assignment()
        if record is not None and record.same_work(assignment.rollout_id, assignment.target_path):
            if record.patch_path != assignment.patch_path:
                record = record.replace(patch_path=assignment.patch_path, patch_refused="")
                self.records.save_assignment(record)
            return record
        self._clear_downloads()
        record = AssignmentRecord(
            assignment.rollout_id, assignment.target_path, assignment.patch_path
        )
        self.records.save_assignment(record)
        log.info(
            "update assigned by rollout %s: %s%s",
            record.rollout_id,
            record.target_path,
            f" (by patch {record.patch_path})" if record.patch_path else "",
        )
        return record

    def _forget_stale_work(self) -> None:
        if self.records.assignment() is not None:
            log.info("the coordinator no longer assigns the update in progress; dropping it")
            self.records.clear_assignment()
            self._clear_downloads()

    def _settle(
        self, record: AssignmentRecord, status: UpdateStatus, content: str, reason: str = ""
    ) -> None:
        """Queue the outcome for the coordinator and forget the assignment's files."""
        self.records.save_report(
            PendingReport(
                record.rollout_id,
                status,
                content,
                reason[:_MAX_REASON_CHARS],
                record.bytes_received,
            )
        )
        self.records.clear_assignment()
        self._clear_downloads()
        log.info(
            "update %s: %s%s", record.target_path, status.value, f" ({reason})" if reason else ""
        )

    def _send_pending(self) -> None:
        """Send the queued outcome, if any.

        Raises:
            CoordinatorUnavailable, RemoteError: the call failed in a way worth retrying (the
                outcome stays queued).
        """
        report = self.records.pending_report()
        if report is None:
            return
        try:
            self._channel.report_status(
                updates_pb2.ReportStatusRequest(
                    rollout_id=report.rollout_id,
                    status=_STATUS_CODES[report.status],
                    reason=report.reason,
                    content_sha256=report.content_sha256,
                    bytes_received=report.bytes_received,
                )
            )
        except RemoteError as exc:
            if exc.code not in _REPORT_REFUSED:
                raise
            log.warning("the coordinator refused the %s report: %s", report.status.value, exc)
        self.records.clear_report()

    def _report_working(self, record: AssignmentRecord, status: int, received: int) -> None:
        """Best effort: a lost progress report is not worth failing an update for (and one
        raised inside `install` would stop it where it stands)."""
        try:
            active = self.slots.active()
            self._channel.report_status(
                updates_pb2.ReportStatusRequest(
                    rollout_id=record.rollout_id,
                    status=status,  # type: ignore[arg-type]
                    content_sha256=active.content_sha256 if active is not None else "",
                    bytes_received=received,
                )
            )
        except ClientError as exc:
            log.debug("status report failed: %s", exc)

    def _clear_downloads(self) -> None:
        if self.downloads.exists():
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(self.downloads)


class _NotInstallable(RepositoryRejected):
    """A signed target this device does not install (a patch named as the model, mcu-int8)."""


def _serving(result: InstallResult) -> str:
    return result.active.content_sha256 if result.active is not None else ""


def _content(active: Slot | None) -> str:
    return active.content_sha256 if active is not None else ""


__all__ = ["DOWNLOADS_DIR", "AgentConfig", "UpdateAgent", "UpdateChannel"]
