"""Federated training campaigns, their rounds and each device's part in a round."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from fedota.storage.models.base import Base, str_enum
from fedota.storage.types import JSONDocument, UTCDateTime, utcnow


class CampaignState(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class RoundState(enum.StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


class ParticipationStatus(enum.StrEnum):
    SELECTED = "selected"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    FAILED = "failed"


class TrainingCampaign(Base):
    __tablename__ = "training_campaigns"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(127))
    family_id: Mapped[str] = mapped_column(ForeignKey("model_families.id"))
    base_version_id: Mapped[str] = mapped_column(ForeignKey("model_versions.id"))
    state: Mapped[CampaignState] = mapped_column(
        str_enum(CampaignState), default=CampaignState.PENDING
    )
    num_rounds: Mapped[int] = mapped_column(Integer)
    strategy: Mapped[str] = mapped_column(String(32))
    # Cohort filter, min devices, local epochs, learning rate, LoRA rank, DP and SecAgg settings.
    config: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    flower_run_id: Mapped[int | None] = mapped_column(BigInteger)
    result_version_id: Mapped[str | None] = mapped_column(ForeignKey("model_versions.id"))
    error: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str | None] = mapped_column(ForeignKey("operators.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    rounds: Mapped[list[TrainingRound]] = relationship(
        back_populates="campaign", order_by="TrainingRound.number"
    )


class TrainingRound(Base):
    __tablename__ = "training_rounds"
    __table_args__ = (UniqueConstraint("campaign_id", "number"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("training_campaigns.id"))
    number: Mapped[int] = mapped_column(Integer)
    state: Mapped[RoundState] = mapped_column(str_enum(RoundState), default=RoundState.RUNNING)
    # Aggregated train/eval metrics, update norms, DP epsilon spent so far.
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    campaign: Mapped[TrainingCampaign] = relationship(back_populates="rounds")
    participations: Mapped[list[RoundParticipation]] = relationship(back_populates="round")


class RoundParticipation(Base):
    __tablename__ = "round_participations"
    __table_args__ = (UniqueConstraint("round_id", "device_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    round_id: Mapped[str] = mapped_column(ForeignKey("training_rounds.id"))
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"), index=True)
    status: Mapped[ParticipationStatus] = mapped_column(
        str_enum(ParticipationStatus), default=ParticipationStatus.SELECTED
    )
    num_examples: Mapped[int] = mapped_column(Integer, default=0)
    update_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)

    round: Mapped[TrainingRound] = relationship(back_populates="participations")


__all__ = [
    "CampaignState",
    "ParticipationStatus",
    "RoundParticipation",
    "RoundState",
    "TrainingCampaign",
    "TrainingRound",
]
