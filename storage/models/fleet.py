"""Fleets, cohorts, devices, enrollment tokens and device credentials."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from fedota.storage.models.base import Base, str_enum
from fedota.storage.types import JSONDocument, UTCDateTime, utcnow


class DeviceState(enum.StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    REVOKED = "revoked"


class Fleet(Base):
    """One coordinator's fleet; cohorts partition it for tokens, campaigns and rollouts."""

    __tablename__ = "fleets"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)

    cohorts: Mapped[list[Cohort]] = relationship(back_populates="fleet")


class Cohort(Base):
    __tablename__ = "cohorts"
    __table_args__ = (UniqueConstraint("fleet_id", "name"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    fleet_id: Mapped[str] = mapped_column(ForeignKey("fleets.id"))
    name: Mapped[str] = mapped_column(String(63))
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)

    fleet: Mapped[Fleet] = relationship(back_populates="cohorts")


class Device(Base):
    __tablename__ = "devices"
    __table_args__ = (Index("ix_devices_fleet_state", "fleet_id", "state"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    fleet_id: Mapped[str] = mapped_column(ForeignKey("fleets.id"))
    cohort_id: Mapped[str] = mapped_column(ForeignKey("cohorts.id"), index=True)
    state: Mapped[DeviceState] = mapped_column(str_enum(DeviceState), default=DeviceState.PENDING)
    state_reason: Mapped[str] = mapped_column(Text, default="")
    hardware_class: Mapped[str] = mapped_column(String(32))
    # The whole profile the daemon reported (cpu, memory, os, python/torch versions, ...).
    hardware_profile: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    labels: Mapped[dict[str, str]] = mapped_column(JSONDocument, default=dict)
    # SHA-256 (hex) of the current key's DER SubjectPublicKeyInfo; one device per key.
    public_key_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    public_key_pem: Mapped[str] = mapped_column(Text)
    enrollment_token_id: Mapped[str | None] = mapped_column(ForeignKey("enrollment_tokens.id"))
    enrolled_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_seen_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # What the device last reported it runs.
    current_model_version_id: Mapped[str | None] = mapped_column(ForeignKey("model_versions.id"))
    current_variant: Mapped[str | None] = mapped_column(String(32))
    # Set when the device is registered with the Flower SuperLink (training issue).
    flower_node_id: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)

    cohort: Mapped[Cohort] = relationship()
    credentials: Mapped[list[DeviceCredential]] = relationship(
        back_populates="device", order_by="DeviceCredential.not_after"
    )


class EnrollmentToken(Base):
    """Only the SHA-256 of the token's secret is stored; the secret is shown once."""

    __tablename__ = "enrollment_tokens"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    secret_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    fleet_id: Mapped[str] = mapped_column(ForeignKey("fleets.id"))
    cohort_id: Mapped[str] = mapped_column(ForeignKey("cohorts.id"))
    labels: Mapped[dict[str, str]] = mapped_column(JSONDocument, default=dict)
    auto_accept: Mapped[bool] = mapped_column(default=False)
    max_uses: Mapped[int] = mapped_column(Integer)
    uses: Mapped[int] = mapped_column(Integer, default=0)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    created_by: Mapped[str | None] = mapped_column(ForeignKey("operators.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)

    cohort: Mapped[Cohort] = relationship()


class DeviceCredential(Base):
    """An X.509 certificate the fleet CA issued to a device (one row per issue or renewal)."""

    __tablename__ = "device_credentials"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"), index=True)
    serial: Mapped[str] = mapped_column(String(40), unique=True)
    # SHA-256 (hex) of the certificate DER: how an mTLS peer is looked up.
    certificate_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    certificate_pem: Mapped[str] = mapped_column(Text)
    public_key_sha256: Mapped[str] = mapped_column(String(64))
    not_before: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    not_after: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    # Set when a renewal replaced it or the device was revoked.
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)

    device: Mapped[Device] = relationship(back_populates="credentials")


class CertificateAuthority(Base):
    """The fleet CA's certificate (its key stays on the coordinator's disk, 0600)."""

    __tablename__ = "certificate_authorities"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    fleet_id: Mapped[str] = mapped_column(ForeignKey("fleets.id"))
    certificate_pem: Mapped[str] = mapped_column(Text)
    certificate_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    not_after: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    retired_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


__all__ = [
    "CertificateAuthority",
    "Cohort",
    "Device",
    "DeviceCredential",
    "DeviceState",
    "EnrollmentToken",
    "Fleet",
]
