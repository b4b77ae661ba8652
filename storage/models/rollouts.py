"""Staged rollouts of a release to a cohort, and each device's update status."""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import (
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from fedota.storage.models.base import Base, str_enum
from fedota.storage.types import UTCDateTime, utcnow


class RolloutState(enum.StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    ABORTED = "aborted"


class StageState(enum.StrEnum):
    WAITING = "waiting"
    ACTIVE = "active"
    PASSED = "passed"
    FAILED = "failed"


class UpdateState(enum.StrEnum):
    """What a device reports while it takes an update (the Updates service's status report)."""

    ASSIGNED = "assigned"
    DOWNLOADING = "downloading"
    VERIFYING = "verifying"
    APPLYING = "applying"
    HEALTH_CHECKING = "health_checking"
    HEALTHY = "healthy"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"


class Rollout(Base):
    __tablename__ = "rollouts"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    release_id: Mapped[str] = mapped_column(ForeignKey("releases.id"), index=True)
    cohort_id: Mapped[str] = mapped_column(ForeignKey("cohorts.id"))
    state: Mapped[RolloutState] = mapped_column(
        str_enum(RolloutState), default=RolloutState.RUNNING
    )
    # Fractions in [0, 1]: a stage passes at success_threshold healthy, aborts over max_failure.
    success_threshold: Mapped[float] = mapped_column(Float, default=0.95)
    max_failure: Mapped[float] = mapped_column(Float, default=0.05)
    current_stage: Mapped[int] = mapped_column(Integer, default=0)
    reason: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str | None] = mapped_column(ForeignKey("operators.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # The cohort while the rollout runs or is paused, NULL once it completed or aborted. Unique
    # (NULLs never collide), so the database itself keeps one active rollout per cohort, even
    # when two replicas create rollouts for the same cohort at once.
    active_cohort_id: Mapped[str | None] = mapped_column(ForeignKey("cohorts.id"), unique=True)
    # Set when an operator sent the devices this rollout updated back to what they ran before.
    rolled_back_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    stages: Mapped[list[RolloutStage]] = relationship(
        back_populates="rollout", order_by="RolloutStage.index"
    )


class RolloutStage(Base):
    __tablename__ = "rollout_stages"
    __table_args__ = (UniqueConstraint("rollout_id", "index"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    rollout_id: Mapped[str] = mapped_column(ForeignKey("rollouts.id"))
    index: Mapped[int] = mapped_column(Integer)
    # Cumulative share of the cohort, in (0, 1].
    fraction: Mapped[float] = mapped_column(Float)
    state: Mapped[StageState] = mapped_column(str_enum(StageState), default=StageState.WAITING)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    rollout: Mapped[Rollout] = relationship(back_populates="stages")


class DeviceUpdate(Base):
    """One device's progress through one rollout."""

    __tablename__ = "device_updates"
    __table_args__ = (
        UniqueConstraint("rollout_id", "device_id"),
        Index("ix_device_updates_rollout_state", "rollout_id", "state"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    rollout_id: Mapped[str] = mapped_column(ForeignKey("rollouts.id"))
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"), index=True)
    stage_index: Mapped[int] = mapped_column(Integer)
    state: Mapped[UpdateState] = mapped_column(str_enum(UpdateState), default=UpdateState.ASSIGNED)
    reason: Mapped[str] = mapped_column(Text, default="")
    from_artifact_id: Mapped[str | None] = mapped_column(ForeignKey("model_artifacts.id"))
    to_artifact_id: Mapped[str] = mapped_column(ForeignKey("model_artifacts.id"))
    patch_id: Mapped[str | None] = mapped_column(ForeignKey("patches.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # True once the record tracks the way back to `from_artifact_id` (an operator's rollback).
    rollback: Mapped[bool] = mapped_column(default=False, server_default=false())
    # What the device last said it had fetched for the forward update (patch or full target).
    bytes_received: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))


__all__ = ["DeviceUpdate", "Rollout", "RolloutStage", "RolloutState", "StageState", "UpdateState"]
