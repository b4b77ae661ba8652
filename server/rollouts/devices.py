"""The device's side of rollouts (used by the Updates service): what to run now, and status reports.

A device follows the newest rollout of its cohort. `assignment_for` answers from a plain read
when it can, and opens a transaction (locking the rollout, see `progress`) only to write: a device
that joins the rollout late, one that already runs the target, or the first word of what it runs.
`report_status` records a report and applies the policy in the same transaction, so a canary
stage's failures abort the rollout before any later stage's device is assigned.
"""

from __future__ import annotations

import datetime as dt
import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from fedota.server import audit, validation
from fedota.server.errors import InvalidArgument
from fedota.server.rollouts import policy, progress, transitions
from fedota.server.rollouts.errors import (
    DeviceNotFound,
    NoAssignment,
    ReportContradicts,
    UpdateTransitionNotAllowed,
)
from fedota.server.rollouts.service import rollout_id
from fedota.server.rollouts.transitions import OPEN, WORKING
from fedota.server.rollouts.views import DeviceAssignment, artifact_refs
from fedota.storage.db import Database
from fedota.storage.models import (
    ActorType,
    Device,
    DeviceState,
    DeviceUpdate,
    ModelArtifact,
    Rollout,
    RolloutState,
    UpdateState,
)
from fedota.storage.types import new_id

MAX_STATUS_REASON_CHARS = 1000
_SHA256 = re.compile(r"[0-9a-f]{64}")
_DEVICE_ID = re.compile(r"dev_[0-9a-f]{1,32}")


def _content(value: str) -> str | None:
    if value and not _SHA256.fullmatch(value):
        raise InvalidArgument("content_sha256", "must be 64 lower-case hex digits (or empty)")
    return value or None


def _device_id(value: str) -> str:
    validation.text("device_id", value, 40, required=True)
    if not _DEVICE_ID.fullmatch(value):
        raise InvalidArgument("device_id", f"{value!r} is not a device id of the form dev_<hex>")
    return value


def _newest_rollout(session: Session, cohort_id: str) -> Rollout | None:
    return session.scalars(
        select(Rollout)
        .where(Rollout.cohort_id == cohort_id)
        .order_by(Rollout.created_at.desc(), Rollout.id.desc())
        .limit(1)
    ).first()


def _record(session: Session, rollout_id: str, device_id: str) -> DeviceUpdate | None:
    return session.scalars(
        select(DeviceUpdate).where(
            DeviceUpdate.rollout_id == rollout_id, DeviceUpdate.device_id == device_id
        )
    ).first()


def _joins(rollout: Rollout, device: Device) -> bool:
    """Whether a device without a record belongs in the rollout now (a late joiner), leaving
    aside whether the release has its variant."""
    if device.state != DeviceState.ACCEPTED or rollout.rolled_back_at is not None:
        return False
    if rollout.state == RolloutState.COMPLETED:
        return True
    fraction = rollout.stages[rollout.current_stage].fraction
    return rollout.state == RolloutState.RUNNING and policy.within(rollout.id, device.id, fraction)


def _join_target(session: Session, rollout: Rollout, device: Device) -> ModelArtifact | None:
    """The artifact a late joiner would be assigned, or None when it does not join."""
    if not _joins(rollout, device):
        return None
    return progress.release_artifacts(session, rollout.release_id).get(device.hardware_class)


def _answer(
    session: Session, rollout: Rollout, record: DeviceUpdate | None
) -> DeviceAssignment | None:
    """What the record says the device should run now, or None for "keep what you run"."""
    if record is None:
        return None
    refs = artifact_refs(session, [record.to_artifact_id, record.from_artifact_id])
    new, old = refs[record.to_artifact_id], refs.get(record.from_artifact_id or "")
    if record.rollback:
        if record.state not in OPEN or old is None:
            return None
        return DeviceAssignment(rollout.id, old, new, True, record.state)
    if rollout.rolled_back_at is not None or record.state in (
        UpdateState.FAILED,
        UpdateState.ROLLED_BACK,
    ):
        return None
    # Paused: nothing new starts; aborted: nothing unfinished goes on. Healthy devices keep it.
    if record.state == UpdateState.ASSIGNED and rollout.state not in (
        RolloutState.RUNNING,
        RolloutState.COMPLETED,
    ):
        return None
    if record.state in WORKING and rollout.state == RolloutState.ABORTED:
        return None
    return DeviceAssignment(rollout.id, new, old, False, record.state)


def _target_sha(session: Session, record: DeviceUpdate) -> tuple[str, str | None]:
    """Content hashes of the record's new artifact and of the one it replaces (if known)."""
    rows = dict(
        session.execute(
            select(ModelArtifact.id, ModelArtifact.content_sha256).where(
                ModelArtifact.id.in_({record.to_artifact_id, record.from_artifact_id or ""})
            )
        ).all()
    )
    return rows[record.to_artifact_id], rows.get(record.from_artifact_id or "")


def _needs_write(
    session: Session,
    rollout: Rollout,
    device: Device,
    record: DeviceUpdate | None,
    content: str | None,
) -> bool:
    if record is None:
        return _join_target(session, rollout, device) is not None
    if record.state != UpdateState.ASSIGNED or content is None:
        return False
    new, old = _target_sha(session, record)
    if record.rollback:
        return content == old
    if content == new:
        return True
    return record.from_artifact_id is None and _known_model(session, record, content) is not None


def _known_model(session: Session, record: DeviceUpdate, content: str) -> ModelArtifact | None:
    """The artifact of the record's family and variant with this content hash, if any."""
    target = session.get(ModelArtifact, record.to_artifact_id)
    assert target is not None  # a foreign key
    return progress.current_artifact(
        session, target.version.family_id, target.variant.value, content
    )


def assignment_for(
    database: Database, device_id: str, content_sha256: str, now: dt.datetime
) -> DeviceAssignment | None:
    """What the device should run now under its cohort's newest rollout, or None to keep what it
    runs. `content_sha256` is the canonical hash of the model it runs ("" when none).

    A device that already runs the target before starting is recorded healthy at once; the
    hash of another model of the family is recorded as what a rollback would return it to.

    Raises:
        InvalidArgument: a malformed device id or content hash.
        DeviceNotFound: no such device.
    """
    device_id = _device_id(device_id)
    content = _content(content_sha256)
    with database.session() as session:
        device = session.get(Device, device_id)
        if device is None:
            raise DeviceNotFound(device_id)
        rollout = _newest_rollout(session, device.cohort_id)
        if rollout is None:
            return None
        record = _record(session, rollout.id, device_id)
        if not _needs_write(session, rollout, device, record, content):
            return _answer(session, rollout, record)
        wanted = rollout.id
    with database.transaction() as session:
        rollout = progress.lock(session, wanted)
        device = session.get(Device, device_id, populate_existing=True)
        if device is None:
            raise DeviceNotFound(device_id)
        newest = _newest_rollout(session, device.cohort_id)
        if newest is None or newest.id != rollout.id:
            # A newer rollout started meanwhile; the device asks again and follows that one.
            return None
        record = _record(session, rollout.id, device_id)
        if record is None:
            record = _join(session, rollout, device, content, now)
        elif content is not None and record.state == UpdateState.ASSIGNED:
            _settle_known_content(session, rollout, record, content, now)
        return _answer(session, rollout, record)


def _join(
    session: Session, rollout: Rollout, device: Device, content: str | None, now: dt.datetime
) -> DeviceUpdate | None:
    """Assign a late joiner to the current stage (the last one of a completed rollout)."""
    target = _join_target(session, rollout, device)
    if target is None:
        return None
    before = progress.current_artifact(
        session, target.version.family_id, device.hardware_class, content
    )
    record = DeviceUpdate(
        id=new_id(progress.UPDATE_ID_PREFIX),
        rollout_id=rollout.id,
        device_id=device.id,
        stage_index=rollout.current_stage,
        state=UpdateState.ASSIGNED,
        reason="",
        from_artifact_id=before.id if before is not None and before.id != target.id else None,
        to_artifact_id=target.id,
        created_at=now,
        updated_at=now,
    )
    session.add(record)
    audit.record(
        session,
        audit.Actor.system(),
        "device_update.assign",
        "device_update",
        record.id,
        {"rollout": rollout.id, "device": device.id, "stage": rollout.current_stage + 1},
    )
    session.flush()
    if content is not None:
        _settle_known_content(session, rollout, record, content, now)
    return record


def _settle_known_content(
    session: Session, rollout: Rollout, record: DeviceUpdate, content: str, now: dt.datetime
) -> None:
    """Use what a not-yet-started device says it runs: done already, or the way back."""
    new, old = _target_sha(session, record)
    if record.rollback and content == old:
        _apply(session, rollout, record, UpdateState.HEALTHY, "already ran the previous model", now)
    elif not record.rollback and content == new:
        _apply(session, rollout, record, UpdateState.HEALTHY, "already runs the target", now)
    elif not record.rollback and record.from_artifact_id is None:
        before = _known_model(session, record, content)
        if before is not None:
            record.from_artifact_id = before.id


def _apply(
    session: Session,
    rollout: Rollout,
    record: DeviceUpdate,
    reported: UpdateState,
    reason: str,
    now: dt.datetime,
) -> bool:
    """Move the record for a report; audit it and apply the policy. False when nothing changed.

    Raises:
        UpdateTransitionNotAllowed: the report does not fit the record.
    """
    try:
        step = transitions.next_step(record.state, record.rollback, reported, reason)
    except transitions.Refused as exc:
        raise UpdateTransitionNotAllowed(
            record.device_id, rollout.id, record.state.value, reported.value
        ) from exc
    if step is None:
        return False
    previous = record.state
    record.state, record.reason, record.updated_at = step.state, step.reason, now
    details: dict[str, object] = {
        "rollout": rollout.id,
        "from": previous.value,
        "to": step.state.value,
    }
    if step.reason:
        details["reason"] = step.reason
    if (
        not record.rollback
        and step.state == UpdateState.HEALTHY
        and rollout.rolled_back_at is not None
        and record.from_artifact_id is not None
    ):
        # Finished after the operator's rollback: it goes back like the others did.
        record.rollback, record.state, record.reason = True, UpdateState.ASSIGNED, "rollback"
        details["sent_back"] = True
    actor = audit.Actor(ActorType.DEVICE, record.device_id)
    audit.record(session, actor, "device_update.report", "device_update", record.id, details)
    if not record.rollback:
        progress.settle(
            session, rollout, now, f"device {record.device_id} reported {reported.value}"
        )
    return True


def _note_current_model(
    session: Session, device_id: str, content: str, record: DeviceUpdate
) -> None:
    """Keep the device's `current_model_version_id` / `current_variant` to what it reports."""
    for artifact_id in (record.to_artifact_id, record.from_artifact_id):
        artifact = session.get(ModelArtifact, artifact_id) if artifact_id else None
        if artifact is not None and artifact.content_sha256 == content:
            device = session.get(Device, device_id)
            if device is not None:
                device.current_model_version_id = artifact.version_id
                device.current_variant = artifact.variant.value
            return


def report_status(
    database: Database,
    device_id: str,
    rollout: str,
    status: UpdateState,
    reason: str,
    now: dt.datetime,
    *,
    content_sha256: str = "",
    bytes_received: int | None = None,
) -> UpdateState:
    """Record the device's progress through its assignment in `rollout`, then let the policy
    advance, complete or abort the rollout, all in one transaction; returns the record's state.

    A repeated outcome (a retried report) changes nothing. A `healthy` report whose content hash
    is not the assignment's target is refused; on the way back (a rollback), a late `healthy` of
    the forward install (its hash is the release's) is ignored.

    Raises:
        InvalidArgument: a malformed id, content hash or reason; `assigned` as the status; a
            negative byte count.
        RolloutNotFound: no such rollout.
        NoAssignment: the rollout never assigned this device.
        UpdateTransitionNotAllowed: the record already holds another outcome.
        ReportContradicts: healthy on a model other than the assignment's target.
    """
    device_id = _device_id(device_id)
    wanted = rollout_id("rollout_id", rollout)
    content = _content(content_sha256)
    why = validation.text("reason", reason, MAX_STATUS_REASON_CHARS, multiline=True)
    try:
        status = UpdateState(status)
    except ValueError:
        raise InvalidArgument("status", f"{status!r} is not an update status") from None
    if status == UpdateState.ASSIGNED:
        raise InvalidArgument("status", "assigned is set by the coordinator, not reported")
    if bytes_received is not None and bytes_received < 0:
        raise InvalidArgument("bytes_received", f"must not be negative (got {bytes_received})")
    with database.transaction() as session:
        found = progress.lock(session, wanted)
        record = _record(session, wanted, device_id)
        if record is None:
            raise NoAssignment(device_id, wanted)
        if bytes_received is not None and not record.rollback:
            record.bytes_received = max(record.bytes_received, bytes_received)
        if content is not None:
            _note_current_model(session, device_id, content, record)
            if status == UpdateState.HEALTHY and record.state in OPEN:
                new, old = _target_sha(session, record)
                expected = old if record.rollback else new
                if record.rollback and content == new:
                    return record.state
                if content != expected:
                    raise ReportContradicts(device_id, wanted, content, expected or "")
        _apply(session, found, record, status, why, now)
        return record.state


__all__ = ["MAX_STATUS_REASON_CHARS", "assignment_for", "report_status"]
