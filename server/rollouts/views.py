"""What the rollout service hands back: plain frozen values, read from the database in one session.

The Admin and Updates services turn these into their protobuf messages; nothing here knows gRPC.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fedota.server.rollouts import policy
from fedota.server.rollouts.policy import StageCounts, Thresholds
from fedota.storage.models import (
    Cohort,
    DeviceUpdate,
    ModelArtifact,
    ModelFamily,
    ModelVersion,
    Release,
    Rollout,
    RolloutState,
    StageState,
    UpdateState,
)


@dataclass(frozen=True)
class ArtifactRef:
    """One variant of one model version, as a device installs it."""

    id: str
    family: str
    version: int
    variant: str
    # Canonical tensor hash: what the device verifies after installing.
    content_sha256: str
    blob_sha256: str
    size_bytes: int


@dataclass(frozen=True)
class StageView:
    index: int
    # Cumulative share of the cohort, in (0, 1].
    fraction: float
    state: StageState
    counts: StageCounts
    started_at: dt.datetime | None
    finished_at: dt.datetime | None


@dataclass(frozen=True)
class RolloutView:
    id: str
    release_id: str
    family: str
    version: int
    cohort: str
    state: RolloutState
    thresholds: Thresholds
    current_stage: int
    stages: tuple[StageView, ...]
    # Why the rollout last changed state (an operator's reason, or the policy's).
    reason: str
    # What the policy says now for a running or paused rollout ("" once it is finished).
    outlook: str
    created_by: str | None
    created_at: dt.datetime
    finished_at: dt.datetime | None
    rolled_back_at: dt.datetime | None
    # Bytes the devices fetched, and what full downloads of the same targets would have been.
    bytes_received: int
    full_bytes: int

    @property
    def ref(self) -> str:
        """`family@vN` of the release's version."""
        return f"{self.family}@v{self.version}"


@dataclass(frozen=True)
class DeviceAssignment:
    """What a device should run now for a rollout (compare `target.content_sha256` with what it
    runs: equal means nothing to do)."""

    rollout_id: str
    target: ArtifactRef
    # What the device ran when it was assigned (the base of a patch); for a rollback, the
    # release it is leaving. None when unknown.
    current: ArtifactRef | None
    rollback: bool
    state: UpdateState


_OUTCOME_FIELD = {
    UpdateState.HEALTHY: "healthy",
    UpdateState.FAILED: "failed",
    UpdateState.ROLLED_BACK: "rolled_back",
}


def artifact_refs(session: Session, artifact_ids: Sequence[str | None]) -> dict[str, ArtifactRef]:
    """The artifacts of these ids (None and unknown ids are skipped), by id."""
    wanted = {artifact_id for artifact_id in artifact_ids if artifact_id}
    if not wanted:
        return {}
    rows = session.execute(
        select(ModelArtifact, ModelVersion.number, ModelFamily.name)
        .join(ModelVersion, ModelArtifact.version_id == ModelVersion.id)
        .join(ModelFamily, ModelVersion.family_id == ModelFamily.id)
        .where(ModelArtifact.id.in_(wanted))
    ).all()
    return {
        artifact.id: ArtifactRef(
            id=artifact.id,
            family=family,
            version=number,
            variant=artifact.variant.value,
            content_sha256=artifact.content_sha256,
            blob_sha256=artifact.blob_sha256,
            size_bytes=artifact.size_bytes,
        )
        for artifact, number, family in rows
    }


def stage_counts(session: Session, rollout_ids: Sequence[str]) -> dict[str, dict[int, StageCounts]]:
    """Per rollout, per stage index, the devices assigned and their outcomes so far."""
    raw: dict[str, dict[int, dict[str, int]]] = defaultdict(lambda: defaultdict(dict))
    if rollout_ids:
        rows = session.execute(
            select(
                DeviceUpdate.rollout_id, DeviceUpdate.stage_index, DeviceUpdate.state, func.count()
            )
            .where(DeviceUpdate.rollout_id.in_(rollout_ids))
            .group_by(DeviceUpdate.rollout_id, DeviceUpdate.stage_index, DeviceUpdate.state)
        ).all()
        for rollout_id, index, state, count in rows:
            fields = raw[rollout_id][index]
            fields["assigned"] = fields.get("assigned", 0) + count
            if state in _OUTCOME_FIELD:
                fields[_OUTCOME_FIELD[state]] = fields.get(_OUTCOME_FIELD[state], 0) + count
    return {
        rollout_id: {index: StageCounts(**fields) for index, fields in stages.items()}
        for rollout_id, stages in raw.items()
    }


def _bytes(session: Session, rollout_ids: Sequence[str]) -> dict[str, tuple[int, int]]:
    if not rollout_ids:
        return {}
    rows = session.execute(
        select(
            DeviceUpdate.rollout_id,
            func.sum(DeviceUpdate.bytes_received),
            func.sum(ModelArtifact.size_bytes),
        )
        .join(ModelArtifact, DeviceUpdate.to_artifact_id == ModelArtifact.id)
        .where(DeviceUpdate.rollout_id.in_(rollout_ids), DeviceUpdate.bytes_received > 0)
        .group_by(DeviceUpdate.rollout_id)
    ).all()
    return {rollout_id: (int(sent or 0), int(full or 0)) for rollout_id, sent, full in rows}


def outlook(rollout: Rollout, counts: dict[int, StageCounts]) -> str:
    """The policy's current reading of a running or paused rollout, for an operator."""
    if rollout.state not in (RolloutState.RUNNING, RolloutState.PAUSED):
        return ""
    fractions = [stage.fraction for stage in rollout.stages]
    per_stage = [counts.get(index, StageCounts()) for index in range(len(fractions))]
    decision = policy.decide(fractions, rollout.current_stage, per_stage, thresholds_of(rollout))
    paused = " (paused)" if rollout.state == RolloutState.PAUSED else ""
    return f"{decision.verdict.value}{paused}: {decision.reason}"


def thresholds_of(rollout: Rollout) -> Thresholds:
    return Thresholds(rollout.success_threshold, rollout.max_failure)


def rollout_views(session: Session, rollouts: Sequence[Rollout]) -> list[RolloutView]:
    """Views of these rollouts (stages loaded, counts in a few grouped queries)."""
    ids = [rollout.id for rollout in rollouts]
    counts = stage_counts(session, ids)
    sizes = _bytes(session, ids)
    names = dict(
        session.execute(
            select(Cohort.id, Cohort.name).where(
                Cohort.id.in_({rollout.cohort_id for rollout in rollouts})
            )
        ).all()
    )
    versions = {
        release_id: (family, number)
        for release_id, family, number in session.execute(
            select(Release.id, ModelFamily.name, ModelVersion.number)
            .join(ModelVersion, Release.version_id == ModelVersion.id)
            .join(ModelFamily, ModelVersion.family_id == ModelFamily.id)
            .where(Release.id.in_({rollout.release_id for rollout in rollouts}))
        ).all()
    }
    views = []
    for rollout in rollouts:
        per_stage = counts.get(rollout.id, {})
        family, number = versions[rollout.release_id]
        sent, full = sizes.get(rollout.id, (0, 0))
        views.append(
            RolloutView(
                id=rollout.id,
                release_id=rollout.release_id,
                family=family,
                version=number,
                cohort=names[rollout.cohort_id],
                state=rollout.state,
                thresholds=thresholds_of(rollout),
                current_stage=rollout.current_stage,
                stages=tuple(
                    StageView(
                        index=stage.index,
                        fraction=stage.fraction,
                        state=stage.state,
                        counts=per_stage.get(stage.index, StageCounts()),
                        started_at=stage.started_at,
                        finished_at=stage.finished_at,
                    )
                    for stage in rollout.stages
                ),
                reason=rollout.reason,
                outlook=outlook(rollout, per_stage),
                created_by=rollout.created_by,
                created_at=rollout.created_at,
                finished_at=rollout.finished_at,
                rolled_back_at=rollout.rolled_back_at,
                bytes_received=sent,
                full_bytes=full,
            )
        )
    return views


__all__ = [
    "ArtifactRef",
    "DeviceAssignment",
    "RolloutView",
    "StageView",
    "artifact_refs",
    "outlook",
    "rollout_views",
    "stage_counts",
    "thresholds_of",
]
