"""Installing a verified download into the inactive slot: apply, verify, switch, check, settle.

    result = install(state_dir, Update(target, Path("v2.patch"), base_content_sha256=v1_hash),
                     on_status=report)
    result.status      # UpdateStatus.HEALTHY, FAILED or ROLLED_BACK; result.active runs now

The file comes from elsewhere (the TUF updater has checked its length and sha256 against the
signed metadata); this module moves only local bytes. The steps, each durable before the next:

1. refuse a patch whose signed base is not the active model, or whose header disagrees with its
   signed metadata (nothing written);
2. journal the install (`journal.py`), clear the inactive slot, write the new model into it
   (`fedota.delta.apply_file` from the active model, or a copy of the full artifact);
3. commit the slot only once its canonical hash is the signed `content_sha256`;
4. switch the pointer to it, marked pending;
5. run the health check: pass -> confirm and report healthy; fail -> point back at the previous
   slot, discard the new one, and report rolled back.

A failure before the switch discards the slot and reports failed; the device never stops running
the model it had. `recover` (run at every start, before serving) finishes or undoes what a crash
interrupted, so after `kill -9` at any step the device runs the old or the new verified model.

Callbacks run inline: `on_status` gets each status the coordinator should hear, `on_step` each
durable point passed (tests pause there to kill the process). An exception from a callback stops
the install where it stands, as a crash would; `recover` finishes it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from fedota.client.errors import ClientError
from fedota.client.update.apply_errors import (
    HealthCheckFailed,
    PatchRejected,
    SlotError,
    UpdateRejected,
    WrongBase,
)
from fedota.client.update.durable import copy_file
from fedota.client.update.health import HealthCheck
from fedota.client.update.journal import (
    Journal,
    Phase,
    read_journal,
    remove_journal,
    write_journal,
)
from fedota.client.update.slots import Slot, SlotStore
from fedota.delta import (
    BaseMismatch,
    ModelFormatError,
    PatchError,
    apply_file,
    read_header,
)
from fedota.update_targets import ArtifactTarget

MAX_HEALTH_ATTEMPTS = 2


class UpdateStatus(StrEnum):
    """What the device reports (the contracts' UpdateState values this module reaches)."""

    APPLYING = "applying"
    HEALTH_CHECKING = "health_checking"
    HEALTHY = "healthy"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"


class Step(StrEnum):
    """Durable points an install passes, in order (ROLLING_BACK/ROLLED_BACK only on failure)."""

    JOURNALED = "journaled"  # the journal is written; no slot touched yet
    WRITING = "writing"  # the new model is being written (once per tensor or chunk)
    COMMITTED = "committed"  # the slot holds the verified model; the pointer is unchanged
    SWITCHED = "switched"  # the pointer names the new slot, pending its health check
    CHECKING = "checking"  # the attempt is counted; the health check is about to run
    CONFIRMED = "confirmed"  # the switch is final; the journal is not yet removed
    ROLLING_BACK = "rolling_back"  # the failure is journaled; the pointer is not yet back
    ROLLED_BACK = "rolled_back"  # the pointer is back; the journal is not yet removed


@dataclass(frozen=True)
class Update:
    """A downloaded, signature-checked file and what installing it must produce.

    Attributes:
        target: the signed artifact the slot must end up holding.
        file: the downloaded patch, or the full artifact.
        base_content_sha256: for a patch, the signed base it applies to (which must be the
            active model); None when `file` is the full artifact.
    """

    target: ArtifactTarget
    file: Path
    base_content_sha256: str | None = None

    @property
    def is_patch(self) -> bool:
        return self.base_content_sha256 is not None


@dataclass(frozen=True)
class StatusReport:
    """One status for the coordinator; `content_sha256` is the model the device serves after
    this step ("" for none): the new one only once it is healthy."""

    status: UpdateStatus
    content_sha256: str
    reason: str = ""


@dataclass(frozen=True)
class InstallResult:
    """How an install (or a recovery) ended: HEALTHY, FAILED or ROLLED_BACK.

    `active` is the slot to serve now (None: no model); `error` the typed cause of a failure.
    """

    status: UpdateStatus
    active: Slot | None
    reason: str = ""
    error: ClientError | None = None


HealthCheckFn = Callable[[Slot], object]
StatusCallback = Callable[[StatusReport], None]
StepHook = Callable[[Step], None]


def install(
    state_dir: Path,
    update: Update,
    *,
    health: HealthCheckFn | None = None,
    on_status: StatusCallback | None = None,
    on_step: StepHook | None = None,
) -> InstallResult:
    """Install `update` into the inactive slot and switch to it if it proves healthy.

    When the previous slot already holds the target (a rollback to the version before), it is
    verified again and switched to without writing anything.
    `health` defaults to `HealthCheck` with the probes in the models directory; it raises
    `HealthCheckFailed` for a model that must not run.

    A local fault before the switch (the download unreadable, the disk full) ends the install
    as FAILED like a refused update does, with a `SlotError` as the result's `error`.

    Raises:
        SlotsBusy: another process holds the slots.
        SlotError: the slots cannot be read or written where the install cannot be undone in
            place (the journal stays; `recover` finishes it).
        RuntimeError: an interrupted install awaits `recover` (caller misuse).
    """
    slots = SlotStore(state_dir)
    check = health if health is not None else HealthCheck.from_state_dir(slots.root)
    with slots.lock():
        return _Run(slots, check, on_status, on_step).install(update)


def recover(
    state_dir: Path,
    *,
    health: HealthCheckFn | None = None,
    on_status: StatusCallback | None = None,
    on_step: StepHook | None = None,
    max_health_attempts: int = MAX_HEALTH_ATTEMPTS,
) -> InstallResult | None:
    """Finish or undo an install a crash interrupted, and sweep what interrupted writes left.

    Returns how the interrupted install ended (reported through `on_status` too), or None when
    none was interrupted.

    Raises:
        SlotsBusy: another process holds the slots.
        SlotError: the slots, pointer or journal are corrupt or cannot be written.
    """
    slots = SlotStore(state_dir)
    check = health if health is not None else HealthCheck.from_state_dir(slots.root)
    with slots.lock():
        return _Run(slots, check, on_status, on_step, max_health_attempts).recover()


class _Run:
    """One install or recovery over locked slots."""

    def __init__(
        self,
        slots: SlotStore,
        health: HealthCheckFn,
        on_status: StatusCallback | None,
        on_step: StepHook | None,
        max_health_attempts: int = MAX_HEALTH_ATTEMPTS,
    ) -> None:
        self.slots = slots
        self.health = health
        self.on_status = on_status
        self.on_step = on_step
        self.max_health_attempts = max_health_attempts

    # -- install ---------------------------------------------------------------------------

    def install(self, update: Update) -> InstallResult:
        if read_journal(self.slots) is not None or self.slots.pointer().pending:
            raise RuntimeError(f"an interrupted install in {self.slots} awaits recover()")
        active = self.slots.active()
        self._report(UpdateStatus.APPLYING)
        if active is not None and active.content_sha256 == update.target.content_sha256:
            return self._settled(UpdateStatus.HEALTHY, "already running this model")
        try:
            if update.is_patch:
                self._check_patch(update, active)
        except (UpdateRejected, SlotError) as exc:
            return self._settled(UpdateStatus.FAILED, str(exc), exc)
        journal = Journal(self.slots.inactive_name(), update.target)
        write_journal(self.slots, journal)
        self._step(Step.JOURNALED)
        try:
            if not self._reuse_previous(update.target):
                out = self.slots.begin_install()
                self._write_model(update, active, out)
                self.slots.commit_install(update.target)
        except (UpdateRejected, SlotError) as exc:
            self.slots.discard(journal.slot)
            remove_journal(self.slots)
            return self._settled(UpdateStatus.FAILED, str(exc), exc)
        self._step(Step.COMMITTED)
        self.slots.switch()
        self._step(Step.SWITCHED)
        return self._check_and_settle(journal)

    def _reuse_previous(self, target: ArtifactTarget) -> bool:
        """Re-commit the previous slot when it holds the target (a rollback to it) and still
        hashes to it; False when the model must be written afresh."""
        previous = self.slots.previous()
        if previous is None or previous.content_sha256 != target.content_sha256:
            return False
        try:
            self.slots.commit_install(target)
        except UpdateRejected:
            return False  # damaged since: begin_install clears it
        return True

    def _check_patch(self, update: Update, active: Slot | None) -> None:
        base = update.base_content_sha256
        assert base is not None
        if active is None or active.content_sha256 != base:
            raise WrongBase(base, active.content_sha256 if active is not None else "")
        try:
            with open(update.file, "rb") as handle:
                header = read_header(handle, os.fstat(handle.fileno()).st_size)
        except PatchError as exc:
            raise PatchRejected(f"the patch is malformed: {exc}") from None
        except OSError as exc:
            raise SlotError(f"cannot read the patch {update.file}: {exc.strerror}") from None
        for what, signed, declared in (
            ("base", base, header.base_hash),
            ("target", update.target.content_sha256, header.target_hash),
        ):
            if declared != signed:
                raise PatchRejected(
                    f"the patch's header names {what} {declared[:16]}…, "
                    f"its signed metadata {signed[:16]}…"
                )

    def _write_model(self, update: Update, active: Slot | None, out: Path) -> None:
        def progress(done: int, total: int) -> None:
            self._step(Step.WRITING)

        try:
            if not update.is_patch:
                copy_file(update.file, out, progress)
                return
            assert active is not None
            apply_file(active.model_path, update.file, out, progress=progress)
        except (BaseMismatch, ModelFormatError) as exc:
            # The signed base was checked against the slot's record: its file has changed since.
            raise SlotError(
                f"the active model file {active.model_path if active else ''} no longer matches "
                f"its verified content: {exc}"
            ) from None
        except PatchError as exc:
            raise PatchRejected(f"the patch does not apply: {exc}") from None
        except OSError as exc:
            where = exc.filename or out
            raise SlotError(f"cannot install the new model: {where}: {exc.strerror}") from None

    # -- health check and settling -----------------------------------------------------------

    def _check_and_settle(self, journal: Journal) -> InstallResult:
        journal = journal.replace(health_attempts=journal.health_attempts + 1)
        write_journal(self.slots, journal)
        self._report(UpdateStatus.HEALTH_CHECKING)
        self._step(Step.CHECKING)
        slot = self.slots.active()
        assert slot is not None
        try:
            self.health(slot)
        except HealthCheckFailed as exc:
            return self._roll_back(journal, str(exc), exc)
        self.slots.confirm()
        self._step(Step.CONFIRMED)
        remove_journal(self.slots)
        return self._settled(UpdateStatus.HEALTHY)

    def _roll_back(
        self, journal: Journal, reason: str, error: ClientError | None = None
    ) -> InstallResult:
        if journal.phase is not Phase.ROLLING_BACK:
            journal = journal.replace(phase=Phase.ROLLING_BACK, reason=reason)
            write_journal(self.slots, journal)
        self._step(Step.ROLLING_BACK)
        self.slots.rollback()
        self._step(Step.ROLLED_BACK)
        remove_journal(self.slots)
        return self._settled(UpdateStatus.ROLLED_BACK, journal.reason, error)

    def _settled(
        self, status: UpdateStatus, reason: str = "", error: ClientError | None = None
    ) -> InstallResult:
        active = self.slots.active()
        self._report(status, reason)
        return InstallResult(status, active, reason, error)

    # -- recovery ----------------------------------------------------------------------------

    def recover(self) -> InstallResult | None:
        self.slots.sweep()
        journal = read_journal(self.slots)
        pointer = self.slots.pointer()
        if journal is None:
            if not pointer.pending:
                return None
            # A pending switch without a journal: made with SlotStore directly; check it now.
            active = self.slots.active()
            assert active is not None and pointer.active is not None
            journal = Journal(pointer.active, active.target)
            write_journal(self.slots, journal)
        if pointer.active != journal.slot:
            # Before the switch (the slot was swept), or after the pointer went back.
            remove_journal(self.slots)
            if journal.phase is Phase.ROLLING_BACK:
                return self._settled(UpdateStatus.ROLLED_BACK, journal.reason)
            return self._settled(
                UpdateStatus.FAILED, "the install was interrupted before the switch; discarded"
            )
        if not pointer.pending:
            remove_journal(self.slots)  # confirmed; only this removal was missing
            return self._settled(UpdateStatus.HEALTHY)
        if journal.phase is Phase.ROLLING_BACK:
            return self._roll_back(journal, journal.reason)
        if journal.health_attempts >= self.max_health_attempts:
            return self._roll_back(
                journal,
                f"the health check was interrupted {journal.health_attempts} times "
                "(did the model crash the daemon?)",
            )
        return self._check_and_settle(journal)

    # -- helpers -----------------------------------------------------------------------------

    def _serving(self) -> str:
        """The content hash of the model the device serves: the new one only once confirmed."""
        pointer = self.slots.pointer()
        slot = self.slots.previous() if pointer.pending else self.slots.active()
        return slot.content_sha256 if slot is not None else ""

    def _report(self, status: UpdateStatus, reason: str = "") -> None:
        if self.on_status is not None:
            self.on_status(StatusReport(status, self._serving(), reason))

    def _step(self, step: Step) -> None:
        if self.on_step is not None:
            self.on_step(step)


__all__ = [
    "MAX_HEALTH_ATTEMPTS",
    "HealthCheckFn",
    "InstallResult",
    "StatusCallback",
    "StatusReport",
    "Step",
    "Update",
    "UpdateStatus",
    "install",
    "recover",
]
