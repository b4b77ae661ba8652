"""The model registry: families, immutable versions, per-variant artifacts, patches, releases."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from fedota.storage.models.base import Base, str_enum
from fedota.storage.types import JSONDocument, UTCDateTime, utcnow


class VersionSource(enum.StrEnum):
    IMPORT = "import"
    CAMPAIGN = "campaign"


class Variant(enum.StrEnum):
    """What a hardware class runs: the same version, stored at a given precision."""

    FP32 = "fp32"
    INT8 = "int8"
    INT4 = "int4"
    MCU_INT8 = "mcu-int8"


class ReleaseState(enum.StrEnum):
    BUILDING = "building"
    READY = "ready"
    FAILED = "failed"
    WITHDRAWN = "withdrawn"


class ModelFamily(Base):
    __tablename__ = "model_families"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    # Which `fedota.ml` architecture builds it, and its constructor arguments.
    architecture: Mapped[str] = mapped_column(String(63))
    architecture_config: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ModelVersion(Base):
    """Immutable once written; identified by the SHA-256 over its canonical fp32 tensors."""

    __tablename__ = "model_versions"
    __table_args__ = (
        UniqueConstraint("family_id", "number"),
        UniqueConstraint("family_id", "content_sha256"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    family_id: Mapped[str] = mapped_column(ForeignKey("model_families.id"))
    # 1, 2, 3 ... within the family: shown as `family@v3`.
    number: Mapped[int] = mapped_column(Integer)
    content_sha256: Mapped[str] = mapped_column(String(64))
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("model_versions.id"))
    source: Mapped[VersionSource] = mapped_column(str_enum(VersionSource))
    campaign_id: Mapped[str | None] = mapped_column(
        ForeignKey("training_campaigns.id", use_alter=True)
    )
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    parameter_count: Mapped[int] = mapped_column(BigInteger, default=0)
    created_by: Mapped[str | None] = mapped_column(ForeignKey("operators.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)

    family: Mapped[ModelFamily] = relationship()
    artifacts: Mapped[list[ModelArtifact]] = relationship(back_populates="version")


class ModelArtifact(Base):
    """One variant of a version as a safetensors blob in the blob store."""

    __tablename__ = "model_artifacts"
    __table_args__ = (UniqueConstraint("version_id", "variant"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    version_id: Mapped[str] = mapped_column(ForeignKey("model_versions.id"))
    variant: Mapped[Variant] = mapped_column(str_enum(Variant))
    # Key of the safetensors file in the blob store (SHA-256 of its bytes).
    blob_sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    # Canonical tensor hash of this variant: what a device verifies after applying a patch.
    content_sha256: Mapped[str] = mapped_column(String(64), index=True)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)

    version: Mapped[ModelVersion] = relationship(back_populates="artifacts")


class Patch(Base):
    """A differential patch from one artifact to another, computed on demand and cached."""

    __tablename__ = "patches"
    __table_args__ = (UniqueConstraint("base_artifact_id", "target_artifact_id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    base_artifact_id: Mapped[str] = mapped_column(ForeignKey("model_artifacts.id"))
    target_artifact_id: Mapped[str] = mapped_column(ForeignKey("model_artifacts.id"))
    blob_sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    # Codec per tensor and the settings that chose them.
    codec_summary: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Release(Base):
    """A version made shippable: its artifacts built and its update metadata signed."""

    __tablename__ = "releases"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    version_id: Mapped[str] = mapped_column(ForeignKey("model_versions.id"), index=True)
    state: Mapped[ReleaseState] = mapped_column(
        str_enum(ReleaseState), default=ReleaseState.BUILDING
    )
    # The TUF targets-role version that first listed this release's artifacts.
    targets_version: Mapped[int | None] = mapped_column(Integer)
    notes: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str | None] = mapped_column(ForeignKey("operators.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)

    version: Mapped[ModelVersion] = relationship()


class SigningKey(Base):
    """A TUF role key; the private half is encrypted at rest with the coordinator's key."""

    __tablename__ = "signing_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    role: Mapped[str] = mapped_column(String(16), index=True)
    keyid: Mapped[str] = mapped_column(String(64), unique=True)
    public_key: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    encrypted_private_key: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    retired_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class TufMetadata(Base):
    """Every signed TUF metadata file ever published, by role and version (served as is)."""

    __tablename__ = "tuf_metadata"
    __table_args__ = (UniqueConstraint("role", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    role: Mapped[str] = mapped_column(String(16))
    version: Mapped[int] = mapped_column(Integer)
    blob_sha256: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


__all__ = [
    "ModelArtifact",
    "ModelFamily",
    "ModelVersion",
    "Patch",
    "Release",
    "ReleaseState",
    "SigningKey",
    "TufMetadata",
    "Variant",
    "VersionSource",
]
