"""The coordinator's tables, for the whole domain of the design."""

from fedota.storage.models.access import ActorType, ApiToken, AuditEvent, Operator, Role
from fedota.storage.models.base import Base
from fedota.storage.models.fleet import (
    CertificateAuthority,
    Cohort,
    Device,
    DeviceCredential,
    DeviceState,
    EnrollmentToken,
    Fleet,
)
from fedota.storage.models.registry import (
    ModelArtifact,
    ModelFamily,
    ModelVersion,
    Patch,
    Release,
    ReleaseState,
    SigningKey,
    TufMetadata,
    Variant,
    VersionSource,
)
from fedota.storage.models.rollouts import (
    DeviceUpdate,
    Rollout,
    RolloutStage,
    RolloutState,
    StageState,
    UpdateState,
)
from fedota.storage.models.training import (
    CampaignState,
    ParticipationStatus,
    RoundParticipation,
    RoundState,
    TrainingCampaign,
    TrainingRound,
)

__all__ = [
    "ActorType",
    "ApiToken",
    "AuditEvent",
    "Base",
    "CampaignState",
    "CertificateAuthority",
    "Cohort",
    "Device",
    "DeviceCredential",
    "DeviceState",
    "DeviceUpdate",
    "EnrollmentToken",
    "Fleet",
    "ModelArtifact",
    "ModelFamily",
    "ModelVersion",
    "Operator",
    "ParticipationStatus",
    "Patch",
    "Release",
    "ReleaseState",
    "Role",
    "Rollout",
    "RolloutStage",
    "RolloutState",
    "RoundParticipation",
    "RoundState",
    "SigningKey",
    "StageState",
    "TrainingCampaign",
    "TrainingRound",
    "TufMetadata",
    "UpdateState",
    "Variant",
    "VersionSource",
]
