"""Operators, their API tokens and roles, and the audit log."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from fedota.storage.models.base import Base, str_enum
from fedota.storage.types import JSONDocument, UTCDateTime, utcnow


class Role(enum.StrEnum):
    """viewer reads; operator also changes the fleet; admin also manages operators and keys."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"


class ActorType(enum.StrEnum):
    OPERATOR = "operator"
    DEVICE = "device"
    SYSTEM = "system"


class Operator(Base):
    __tablename__ = "operators"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    role: Mapped[Role] = mapped_column(str_enum(Role))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    disabled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    tokens: Mapped[list[ApiToken]] = relationship(back_populates="operator")


class ApiToken(Base):
    """Only the SHA-256 of the token is stored; the token is shown once."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    operator_id: Mapped[str] = mapped_column(ForeignKey("operators.id"), index=True)
    secret_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(63), default="")
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)

    operator: Mapped[Operator] = relationship(back_populates="tokens")


class AuditEvent(Base):
    """One row per state change an operator, a device or the coordinator causes."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_target", "target_type", "target_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    actor_type: Mapped[ActorType] = mapped_column(str_enum(ActorType))
    actor_id: Mapped[str] = mapped_column(String(40), default="")
    # Dotted verb, e.g. `device.enroll`, `device.accept`, `enrollment_token.create`.
    action: Mapped[str] = mapped_column(String(63))
    target_type: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[str] = mapped_column(String(40))
    details: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)


__all__ = ["ActorType", "ApiToken", "AuditEvent", "Operator", "Role"]
