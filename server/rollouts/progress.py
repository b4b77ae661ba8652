"""Moving a rollout inside the caller's transaction: lock it, assign a stage's devices, apply the
policy's decisions. Every function here joins a transaction the caller opened and commits.

Locking: every transaction that changes a rollout or its device records starts with `lock`, a
no-op UPDATE of the rollout row. On PostgreSQL that takes the row lock (and, under READ
COMMITTED, every later statement sees what the previous holder committed); on SQLite the first
write takes the database's write lock. So two devices reporting at once are counted one after the
other, and the second sees the first's report: no advance or abort is lost between them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from sqlalchemy import and_, insert, select, update
from sqlalchemy.orm import Session

from fedota.server import audit
from fedota.server.rollouts import policy
from fedota.server.rollouts.errors import RolloutNotFound
from fedota.server.rollouts.policy import StageCounts, Verdict
from fedota.server.rollouts.views import stage_counts, thresholds_of
from fedota.storage.models import (
    Device,
    DeviceState,
    DeviceUpdate,
    ModelArtifact,
    ModelVersion,
    Release,
    Rollout,
    RolloutState,
    StageState,
)
from fedota.storage.types import new_id

UPDATE_ID_PREFIX = "upd"


def lock(session: Session, rollout_id: str) -> Rollout:
    """The rollout, locked for the rest of the transaction (call it first).

    Raises:
        RolloutNotFound: no such rollout.
    """
    locked = session.execute(
        update(Rollout)
        .where(Rollout.id == rollout_id)
        .values(state=Rollout.state)
        .execution_options(synchronize_session=False)
    ).rowcount
    rollout = session.get(Rollout, rollout_id, populate_existing=True) if locked else None
    if rollout is None:
        raise RolloutNotFound(rollout_id)
    return rollout


def release_artifacts(session: Session, release_id: str) -> dict[str, ModelArtifact]:
    """The release's artifacts by variant (a device's hardware class names its variant)."""
    artifacts = session.scalars(
        select(ModelArtifact)
        .join(Release, Release.version_id == ModelArtifact.version_id)
        .where(Release.id == release_id)
    )
    return {artifact.variant.value: artifact for artifact in artifacts}


def current_artifact(
    session: Session, family_id: str, variant: str, content_sha256: str | None
) -> ModelArtifact | None:
    """The family's artifact of `variant` whose canonical content hash is `content_sha256`."""
    if not content_sha256:
        return None
    return session.scalars(
        select(ModelArtifact)
        .join(ModelVersion, ModelArtifact.version_id == ModelVersion.id)
        .where(
            ModelVersion.family_id == family_id,
            ModelArtifact.variant == variant,
            ModelArtifact.content_sha256 == content_sha256,
        )
        .limit(1)
    ).first()


def _known_currents(
    session: Session, devices: list[tuple[str, str, str | None, str | None]]
) -> dict[tuple[str, str], str]:
    """(version id, variant) -> artifact id, for what devices last reported they run."""
    pairs = {(version, variant) for _, _, version, variant in devices if version and variant}
    if not pairs:
        return {}
    rows = session.execute(
        select(ModelArtifact.version_id, ModelArtifact.variant, ModelArtifact.id).where(
            ModelArtifact.version_id.in_({version for version, _ in pairs})
        )
    ).all()
    return {(version, variant.value): artifact_id for version, variant, artifact_id in rows}


def assign_members(session: Session, rollout: Rollout, index: int, now: dt.datetime) -> int:
    """Assign stage `index` every accepted cohort device within its fraction that has no record
    yet (its own bucket, or an earlier one it joined too late for); returns how many.

    Devices of a hardware class the release built no variant for are left out.
    """
    fraction = rollout.stages[index].fraction
    artifacts = release_artifacts(session, rollout.release_id)
    devices = [
        (device_id, hardware_class, version_id, variant)
        for device_id, hardware_class, version_id, variant in session.execute(
            select(
                Device.id,
                Device.hardware_class,
                Device.current_model_version_id,
                Device.current_variant,
            )
            .outerjoin(
                DeviceUpdate,
                and_(DeviceUpdate.device_id == Device.id, DeviceUpdate.rollout_id == rollout.id),
            )
            .where(
                Device.cohort_id == rollout.cohort_id,
                Device.state == DeviceState.ACCEPTED,
                DeviceUpdate.id.is_(None),
            )
        ).all()
        if hardware_class in artifacts and policy.within(rollout.id, device_id, fraction)
    ]
    currents = _known_currents(session, devices)
    rows = []
    for device_id, hardware_class, version_id, variant in devices:
        target = artifacts[hardware_class]
        before = currents.get((version_id or "", variant or ""))
        rows.append(
            {
                "id": new_id(UPDATE_ID_PREFIX),
                "rollout_id": rollout.id,
                "device_id": device_id,
                "stage_index": index,
                "from_artifact_id": before if before != target.id else None,
                "to_artifact_id": target.id,
                "created_at": now,
                "updated_at": now,
            }
        )
    if rows:
        session.execute(insert(DeviceUpdate), rows)
    return len(rows)


def finish(rollout: Rollout, state: RolloutState, reason: str, now: dt.datetime) -> None:
    """Complete or abort: the rollout lets go of its cohort."""
    rollout.state = state
    rollout.reason = reason
    rollout.finished_at = now
    rollout.active_cohort_id = None


def _counts(session: Session, rollout: Rollout) -> list[StageCounts]:
    session.flush()
    by_index: Mapping[int, StageCounts] = stage_counts(session, [rollout.id]).get(rollout.id, {})
    return [by_index.get(index, StageCounts()) for index in range(len(rollout.stages))]


def settle(session: Session, rollout: Rollout, now: dt.datetime, trigger: str) -> None:
    """Apply the policy until it says stay: advance through stages (assigning each new stage's
    devices), complete, or abort. A paused rollout only aborts. One audit row per move.

    `trigger` says what prompted the evaluation (e.g. `device dev_... reported failed`).
    """
    fractions = [stage.fraction for stage in rollout.stages]
    while rollout.state in (RolloutState.RUNNING, RolloutState.PAUSED):
        current = rollout.current_stage
        counts = _counts(session, rollout)
        decision = policy.decide(fractions, current, counts, thresholds_of(rollout))
        if decision.verdict == Verdict.STAY:
            return
        if rollout.state == RolloutState.PAUSED and decision.verdict != Verdict.ABORT:
            return
        stage = rollout.stages[current]
        details: dict[str, object] = {
            "stage": current + 1,
            "reason": decision.reason,
            "trigger": trigger,
        }
        if decision.verdict == Verdict.ABORT:
            stage.state, stage.finished_at = StageState.FAILED, now
            finish(rollout, RolloutState.ABORTED, decision.reason, now)
            action = "rollout.abort"
        elif decision.verdict == Verdict.COMPLETE:
            stage.state, stage.finished_at = StageState.PASSED, now
            finish(rollout, RolloutState.COMPLETED, decision.reason, now)
            action = "rollout.complete"
        else:
            stage.state, stage.finished_at = StageState.PASSED, now
            following = rollout.stages[current + 1]
            following.state, following.started_at = StageState.ACTIVE, now
            rollout.current_stage = current + 1
            rollout.reason = decision.reason
            details["assigned"] = assign_members(session, rollout, current + 1, now)
            action = "rollout.advance"
        audit.record(session, audit.Actor.system(), action, "rollout", rollout.id, details)


__all__ = [
    "UPDATE_ID_PREFIX",
    "assign_members",
    "current_artifact",
    "finish",
    "lock",
    "release_artifacts",
    "settle",
]
