"""What `campaigns list` and `campaigns show` display: a campaign and its per-round table."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from fedota.server.campaigns.errors import CampaignNotFound
from fedota.server.campaigns.store import flower_run_id
from fedota.server.registry.refs import format_ref
from fedota.storage.db import Database
from fedota.storage.models import (
    Cohort,
    ModelVersion,
    ParticipationStatus,
    TrainingCampaign,
    TrainingRound,
)


@dataclass(frozen=True)
class RoundView:
    """One row of `campaigns show`: who took part, who was refused and why, what it cost."""

    number: int
    state: str
    version: str
    version_id: str
    selected: int
    accepted: int
    rejected: tuple[tuple[str, str], ...]  # (device id, reason)
    dropped: tuple[tuple[str, str], ...]
    uplink_bytes: int
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CampaignView:
    id: str
    name: str
    state: str
    base_version: str
    result_version: str
    strategy: str
    num_rounds: int
    completed_rounds: int
    error: str
    config: dict[str, Any]
    # The cohort's name ("" for the whole fleet).
    cohort: str
    flower_run_id: int | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    rounds: tuple[RoundView, ...] = ()


def get_campaign(database: Database, campaign_id: str) -> CampaignView:
    """A campaign with its rounds and their participations.

    Raises:
        CampaignNotFound.
    """
    with database.session() as session:
        campaign = session.scalars(
            select(TrainingCampaign)
            .where(TrainingCampaign.id == campaign_id)
            .options(
                selectinload(TrainingCampaign.rounds).selectinload(TrainingRound.participations)
            )
        ).one_or_none()
        if campaign is None:
            raise CampaignNotFound(campaign_id)
        return _view(session, campaign, with_rounds=True)


def list_campaigns(database: Database, limit: int = 100) -> list[CampaignView]:
    """The newest campaigns first, without their rounds."""
    with database.session() as session:
        campaigns = session.scalars(
            select(TrainingCampaign)
            .order_by(TrainingCampaign.created_at.desc())
            .limit(limit)
            .options(selectinload(TrainingCampaign.rounds))
        ).all()
        return [_view(session, c, with_rounds=False) for c in campaigns]


def _view(session: Session, campaign: TrainingCampaign, *, with_rounds: bool) -> CampaignView:
    refs: dict[str, str] = {}

    def ref(version_id: str | None) -> str:
        if not version_id:
            return ""
        if version_id not in refs:
            version = session.get(ModelVersion, version_id)
            refs[version_id] = (
                version_id if version is None else format_ref(version.family.name, version.number)
            )
        return refs[version_id]

    rounds = tuple(_round(r, ref) for r in campaign.rounds) if with_rounds else ()
    return CampaignView(
        id=campaign.id,
        name=campaign.name,
        state=campaign.state.value,
        base_version=ref(campaign.base_version_id),
        result_version=ref(campaign.result_version_id),
        strategy=campaign.strategy,
        num_rounds=campaign.num_rounds,
        completed_rounds=sum(r.state.value == "completed" for r in campaign.rounds),
        error=campaign.error,
        config=dict(campaign.config),
        cohort=_cohort_name(session, campaign.config),
        flower_run_id=flower_run_id(campaign),
        created_at=campaign.created_at,
        started_at=campaign.started_at,
        finished_at=campaign.finished_at,
        rounds=rounds,
    )


def _cohort_name(session: Session, config: dict[str, Any]) -> str:
    spec = config.get("spec")
    cohort_id = spec.get("cohort_id") if isinstance(spec, dict) else None
    if not cohort_id:
        return ""
    cohort = session.get(Cohort, cohort_id)
    return cohort_id if cohort is None else cohort.name


def _round(row: TrainingRound, ref: Any) -> RoundView:
    parts = row.participations
    metrics = {
        k: v
        for k, v in row.metrics.items()
        if k not in ("version_id", "trainable_key", "strategy_state_key")
    }
    return RoundView(
        number=row.number,
        state=row.state.value,
        version=ref(row.metrics.get("version_id")),
        version_id=row.metrics.get("version_id", ""),
        selected=len(parts),
        accepted=sum(p.status is ParticipationStatus.ACCEPTED for p in parts),
        rejected=_reasons(parts, ParticipationStatus.REJECTED),
        dropped=_reasons(parts, ParticipationStatus.FAILED),
        uplink_bytes=sum(p.update_bytes for p in parts),
        metrics=metrics,
    )


def _reasons(parts: Any, status: ParticipationStatus) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((p.device_id, p.reason) for p in parts if p.status is status))


__all__ = ["CampaignView", "RoundView", "get_campaign", "list_campaigns"]
