"""A campaign's storage operations: each one transaction and one audit row, on SQLite and
PostgreSQL alike.

    campaign_id = create_campaign(db, name="digits-tune", base_version_id=v1, spec=spec, actor=op)
    attach_run(db, campaign_id, run_id)                   # the runner started a Flower run
    plan = claim(db, campaign_id, run_id)                 # the ServerApp: spec, base, resume point
    record_round(db, campaign_id, run_id, record)         # a completed round and its version
    finish_campaign(db, campaign_id, run_id)              # or fail_campaign(db, id, reason)

A campaign belongs to one Flower run at a time (`flower_run_id`): every write of the ServerApp
names its run and is refused (`StaleRun`) once the campaign moved to another, so a ServerApp
presumed dead can never record a round beside its successor. A round is recorded whole (its
row, every device's part, the aggregate as a new model version with its fp32 artifact) or not
at all, so the resume point, the last completed round, never names half a round.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fedota.server import audit
from fedota.server.campaigns.errors import CampaignNotFound, CampaignStateError, StaleRun
from fedota.server.campaigns.spec import CampaignSpec
from fedota.server.campaigns.weights import StoredCheckpoint
from fedota.server.errors import InvalidArgument, NotFound
from fedota.storage.db import Database
from fedota.storage.models import (
    ActorType,
    CampaignState,
    Cohort,
    Device,
    DeviceState,
    ModelArtifact,
    ModelVersion,
    ParticipationStatus,
    RoundParticipation,
    RoundState,
    TrainingCampaign,
    TrainingRound,
    Variant,
    VersionSource,
)
from fedota.storage.types import new_id, utcnow

MAX_REASON = 2000
_UINT64 = 1 << 64
_FINISHED = (CampaignState.COMPLETED, CampaignState.FAILED, CampaignState.CANCELLED)


@dataclass(frozen=True)
class ResumePoint:
    """Where a run starts: after `completed` rounds, from that round's version and arrays
    (`version_id` is the base version and the keys None before the first round)."""

    completed: int
    version_id: str
    trainable_key: str | None = None
    strategy_state_key: str | None = None


@dataclass(frozen=True)
class CampaignPlan:
    """What the ServerApp needs to run its campaign."""

    campaign_id: str
    spec: CampaignSpec
    family_id: str
    family_name: str
    base_version_id: str
    base_number: int
    base_blob_key: str
    resume: ResumePoint


@dataclass(frozen=True)
class Participation:
    """One selected device's part in a round. `status`: accepted, rejected (with the
    validation reason) or failed (dropped: no reply, an error reply, revoked meanwhile)."""

    device_id: str
    status: ParticipationStatus
    examples: int = 0
    uplink_bytes: int = 0
    reason: str = ""
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class RoundRecord:
    """A completed round as the ServerApp reports it."""

    number: int
    started_at: dt.datetime
    participations: Sequence[Participation]
    metrics: dict[str, Any]
    trainable_key: str
    strategy_state_key: str | None
    checkpoint: StoredCheckpoint
    version_metrics: dict[str, float] = field(default_factory=dict)


def create_campaign(
    database: Database,
    *,
    name: str,
    base_version_id: str,
    spec: CampaignSpec,
    actor: audit.Actor,
    now: dt.datetime | None = None,
) -> str:
    """A pending campaign training `base_version_id`; its id (`campaign.create` audited).

    Raises:
        InvalidArgument: an empty or over-long name.
        NotFound: no such version, no fp32 artifact for it, or no such cohort.
    """
    if not 0 < len(name) <= 127 or not name.isprintable():
        raise InvalidArgument("name", "must be 1..127 printable characters")
    now = now or utcnow()
    with database.transaction() as session:
        version = session.get(ModelVersion, base_version_id)
        if version is None:
            raise NotFound(f"no model version {base_version_id}")
        _fp32_artifact(session, version)
        if spec.cohort_id is not None and session.get(Cohort, spec.cohort_id) is None:
            raise NotFound(f"no cohort {spec.cohort_id}")
        campaign = TrainingCampaign(
            id=new_id("cmp"),
            name=name,
            family_id=version.family_id,
            base_version_id=version.id,
            state=CampaignState.PENDING,
            num_rounds=spec.rounds,
            strategy=spec.settings.strategy,
            config={"spec": spec.to_json(), "resumes": 0},
            created_by=actor.id if actor.type == ActorType.OPERATOR else None,
            created_at=now,
        )
        session.add(campaign)
        audit.record(
            session,
            actor,
            "campaign.create",
            "training_campaign",
            campaign.id,
            {"base_version_id": version.id, "rounds": spec.rounds, "strategy": campaign.strategy},
        )
        return campaign.id


def attach_run(
    database: Database,
    campaign_id: str,
    run_id: int,
    *,
    resume: bool = False,
    now: dt.datetime | None = None,
) -> None:
    """Hand the campaign to Flower run `run_id` (pending -> running, or a resumed run taking
    over a running campaign); `campaign.run` audited.

    Raises:
        CampaignNotFound.
        CampaignStateError: a fresh run of a campaign that is not pending, or a resume of one
            that is not running.
    """
    now = now or utcnow()
    with database.transaction() as session:
        campaign = _locked(session, campaign_id)
        wanted = CampaignState.RUNNING if resume else CampaignState.PENDING
        if campaign.state != wanted:
            verb = "resumed" if resume else "started"
            raise CampaignStateError(
                f"campaign {campaign_id} is {campaign.state.value}; it cannot be {verb}"
            )
        config = dict(campaign.config)
        if resume:
            config["resumes"] = int(config.get("resumes", 0)) + 1
        campaign.config = config
        campaign.flower_run_id = _signed(run_id)
        campaign.state = CampaignState.RUNNING
        campaign.started_at = campaign.started_at or now
        audit.record(
            session,
            audit.Actor.system(),
            "campaign.run",
            "training_campaign",
            campaign_id,
            {"flower_run_id": run_id, "resume": resume},
        )


def claim(database: Database, campaign_id: str, run_id: int) -> CampaignPlan:
    """What run `run_id` must do for its campaign (read only).

    Raises:
        CampaignNotFound.
        StaleRun: the campaign belongs to another run (or none yet).
        CampaignStateError: the campaign is not running, or its spec is unreadable.
        NotFound: the base version lost its fp32 artifact.
    """
    with database.session() as session:
        campaign = _running(session, campaign_id, run_id)
        try:
            spec = CampaignSpec.from_json(campaign.config.get("spec"))
        except ValueError as exc:
            raise CampaignStateError(f"campaign {campaign_id}: {exc}") from None
        base = session.get(ModelVersion, campaign.base_version_id)
        assert base is not None  # a foreign key
        artifact = _fp32_artifact(session, base)
        return CampaignPlan(
            campaign_id,
            spec,
            campaign.family_id,
            base.family.name,
            base.id,
            base.number,
            artifact.blob_sha256,
            _resume_point(session, campaign),
        )


def resume_point(database: Database, campaign_id: str) -> ResumePoint:
    """The last completed round (0 and the base version before any).

    Raises:
        CampaignNotFound.
    """
    with database.session() as session:
        return _resume_point(session, _get(session, campaign_id))


def eligible_devices(database: Database, cohort_id: str | None) -> set[str]:
    """Ids of the accepted devices of the cohort (of the whole fleet when None)."""
    query = select(Device.id).where(Device.state == DeviceState.ACCEPTED)
    if cohort_id is not None:
        query = query.where(Device.cohort_id == cohort_id)
    with database.session() as session:
        return set(session.scalars(query))


def record_round(
    database: Database,
    campaign_id: str,
    run_id: int,
    record: RoundRecord,
    *,
    now: dt.datetime | None = None,
) -> str:
    """Store a completed round: its row, every device's part, and its aggregate as the family's
    next model version (source campaign, parent the previous round's version, fp32 artifact).
    Returns the version id; `campaign.round` audited.

    Raises:
        CampaignNotFound, StaleRun, CampaignStateError (not running, or the round is not the
            one after the last completed).
    """
    now = now or utcnow()
    with database.transaction() as session:
        campaign = _running(session, campaign_id, run_id, lock=True)
        point = _resume_point(session, campaign)
        if record.number != point.completed + 1 or record.number > campaign.num_rounds:
            raise CampaignStateError(
                f"campaign {campaign_id} expects round {point.completed + 1} of "
                f"{campaign.num_rounds}, not round {record.number}"
            )
        version = _round_version(session, campaign, point.version_id, record, now)
        round_row = TrainingRound(
            id=new_id("rnd"),
            campaign_id=campaign_id,
            number=record.number,
            state=RoundState.COMPLETED,
            metrics={
                **record.metrics,
                "version_id": version.id,
                "flower_run_id": run_id,
                "trainable_key": record.trainable_key,
                "strategy_state_key": record.strategy_state_key,
            },
            started_at=record.started_at,
            finished_at=now,
        )
        session.add(round_row)
        session.flush()
        for part in record.participations:
            session.add(
                RoundParticipation(
                    round_id=round_row.id,
                    device_id=part.device_id,
                    status=part.status,
                    num_examples=part.examples,
                    update_bytes=part.uplink_bytes,
                    metrics=dict(part.metrics),
                    reason=part.reason[:MAX_REASON],
                    created_at=now,
                )
            )
        audit.record(
            session,
            audit.Actor.system(),
            "campaign.round",
            "training_campaign",
            campaign_id,
            {"round": record.number, "version_id": version.id, "flower_run_id": run_id},
        )
        return version.id


def finish_campaign(
    database: Database, campaign_id: str, run_id: int, *, now: dt.datetime | None = None
) -> str:
    """Mark the campaign completed with its last round's version as the result; its id.

    Raises:
        CampaignNotFound, StaleRun, CampaignStateError (not running, or rounds missing).
    """
    now = now or utcnow()
    with database.transaction() as session:
        campaign = _running(session, campaign_id, run_id, lock=True)
        point = _resume_point(session, campaign)
        if point.completed != campaign.num_rounds:
            raise CampaignStateError(
                f"campaign {campaign_id} completed {point.completed} of "
                f"{campaign.num_rounds} rounds; it cannot finish"
            )
        campaign.state = CampaignState.COMPLETED
        campaign.result_version_id = point.version_id
        campaign.finished_at = now
        audit.record(
            session,
            audit.Actor.system(),
            "campaign.complete",
            "training_campaign",
            campaign_id,
            {"result_version_id": point.version_id, "flower_run_id": run_id},
        )
        return point.version_id


def fail_campaign(
    database: Database,
    campaign_id: str,
    reason: str,
    *,
    run_id: int | None = None,
    cancel: bool = False,
    actor: audit.Actor | None = None,
    now: dt.datetime | None = None,
) -> bool:
    """End an unfinished campaign as failed (or cancelled) with `reason`; completed rounds stay.
    With `run_id`, only while the campaign still belongs to that run. Returns whether it
    changed anything (a finished campaign is left as it is).

    Raises:
        CampaignNotFound.
    """
    now = now or utcnow()
    with database.transaction() as session:
        campaign = _locked(session, campaign_id)
        if campaign.state in _FINISHED:
            return False
        if run_id is not None and campaign.flower_run_id != _signed(run_id):
            return False
        campaign.state = CampaignState.CANCELLED if cancel else CampaignState.FAILED
        campaign.error = reason[:MAX_REASON]
        campaign.finished_at = now
        audit.record(
            session,
            actor or audit.Actor.system(),
            "campaign.cancel" if cancel else "campaign.fail",
            "training_campaign",
            campaign_id,
            {"reason": reason[:200], "flower_run_id": flower_run_id(campaign)},
        )
        return True


def running_campaigns(database: Database) -> list[tuple[str, int | None]]:
    """(campaign id, Flower run id) of every running campaign, oldest first."""
    query = (
        select(TrainingCampaign.id, TrainingCampaign.flower_run_id)
        .where(TrainingCampaign.state == CampaignState.RUNNING)
        .order_by(TrainingCampaign.created_at)
    )
    with database.session() as session:
        return [(cid, _unsigned(run_id)) for cid, run_id in session.execute(query).all()]


def flower_run_id(campaign: TrainingCampaign) -> int | None:
    """The campaign's Flower run id as Flower names it (an unsigned 64-bit number)."""
    return _unsigned(campaign.flower_run_id)


def _signed(run_id: int) -> int:
    # Flower's run ids are unsigned 64-bit; the column is a signed BIGINT (as Flower stores
    # them in its own database).
    if not 0 <= run_id < _UINT64:
        raise ValueError(f"a Flower run id is an unsigned 64-bit number, got {run_id}")
    return run_id - _UINT64 if run_id >= _UINT64 >> 1 else run_id


def _unsigned(value: int | None) -> int | None:
    return None if value is None else value + _UINT64 if value < 0 else value


def _get(session: Session, campaign_id: str) -> TrainingCampaign:
    campaign = session.get(TrainingCampaign, campaign_id)
    if campaign is None:
        raise CampaignNotFound(campaign_id)
    return campaign


def _locked(session: Session, campaign_id: str) -> TrainingCampaign:
    # FOR UPDATE on PostgreSQL serialises the writers of one campaign; SQLite has one writer.
    campaign = session.get(TrainingCampaign, campaign_id, with_for_update=True)
    if campaign is None:
        raise CampaignNotFound(campaign_id)
    return campaign


def _running(
    session: Session, campaign_id: str, run_id: int, *, lock: bool = False
) -> TrainingCampaign:
    campaign = _locked(session, campaign_id) if lock else _get(session, campaign_id)
    if campaign.state != CampaignState.RUNNING:
        raise CampaignStateError(f"campaign {campaign_id} is {campaign.state.value}, not running")
    if campaign.flower_run_id != _signed(run_id):
        raise StaleRun(campaign_id, run_id, flower_run_id(campaign))
    return campaign


def _resume_point(session: Session, campaign: TrainingCampaign) -> ResumePoint:
    last = session.scalars(
        select(TrainingRound)
        .where(
            TrainingRound.campaign_id == campaign.id,
            TrainingRound.state == RoundState.COMPLETED,
        )
        .order_by(TrainingRound.number.desc())
        .limit(1)
    ).one_or_none()
    if last is None:
        return ResumePoint(0, campaign.base_version_id)
    return ResumePoint(
        last.number,
        last.metrics["version_id"],
        last.metrics.get("trainable_key"),
        last.metrics.get("strategy_state_key"),
    )


def _fp32_artifact(session: Session, version: ModelVersion) -> ModelArtifact:
    artifact = session.scalars(
        select(ModelArtifact).where(
            ModelArtifact.version_id == version.id, ModelArtifact.variant == Variant.FP32
        )
    ).one_or_none()
    if artifact is None:
        raise NotFound(f"model version {version.id} has no fp32 artifact to train from")
    return artifact


def _round_version(
    session: Session,
    campaign: TrainingCampaign,
    parent_id: str,
    record: RoundRecord,
    now: dt.datetime,
) -> ModelVersion:
    checkpoint = record.checkpoint
    same = session.scalars(
        select(ModelVersion).where(
            ModelVersion.family_id == campaign.family_id,
            ModelVersion.content_sha256 == checkpoint.content_sha256,
        )
    ).one_or_none()
    if same is not None:  # the round changed nothing: its version is the one that exists
        return same
    number = (
        session.scalar(
            select(func.max(ModelVersion.number)).where(
                ModelVersion.family_id == campaign.family_id
            )
        )
        or 0
    ) + 1
    version = ModelVersion(
        id=new_id("mv"),
        family_id=campaign.family_id,
        number=number,
        content_sha256=checkpoint.content_sha256,
        parent_id=parent_id,
        source=VersionSource.CAMPAIGN,
        campaign_id=campaign.id,
        metrics={**record.version_metrics, "round": float(record.number)},
        parameter_count=checkpoint.parameter_count,
        created_at=now,
    )
    session.add(version)
    session.flush()
    session.add(
        ModelArtifact(
            id=new_id("art"),
            version_id=version.id,
            variant=Variant.FP32,
            blob_sha256=checkpoint.blob_key,
            size_bytes=checkpoint.size_bytes,
            content_sha256=checkpoint.content_sha256,
            metrics={},
            created_at=now,
        )
    )
    return version


__all__ = [
    "CampaignPlan",
    "Participation",
    "ResumePoint",
    "RoundRecord",
    "attach_run",
    "claim",
    "create_campaign",
    "eligible_devices",
    "fail_campaign",
    "finish_campaign",
    "flower_run_id",
    "record_round",
    "resume_point",
    "running_campaigns",
]
