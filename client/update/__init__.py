"""fedota.client.update: how the device verifies, downloads and installs model updates.

Trust (`trust`, `fetcher`): python-tuf's ngclient verifies the coordinator's signed metadata
from the root the device got at enrollment, over any transport that implements
`RepositoryFetcher._fetch`; a target is downloaded capped at its signed length, resumably, and
kept only if it hashes to the signed value. Never imports the coordinator or its storage.

Install (`slots`, `install`, `health`): A/B slots in the state directory; a verified model is
written into the inactive slot, the pointer flips atomically, a health check runs, and a failed
check rolls back. `recover` finishes or discards what a crash interrupted.
"""

from fedota.client.update.apply_errors import (
    ContentMismatch,
    HealthCheckFailed,
    ModelFileInvalid,
    PatchRejected,
    SlotError,
    SlotsBusy,
    UpdateRejected,
    WrongBase,
)
from fedota.client.update.fetcher import (
    DEFAULT_REPOSITORY_URL,
    ByteSink,
    RemoteFileMissing,
    RepositoryFetcher,
    repository_path,
)
from fedota.client.update.health import (
    PROBES_FILE,
    ClassifierProbes,
    GenerationProbes,
    HealthCheck,
    load_probes,
)
from fedota.client.update.install import (
    InstallResult,
    StatusReport,
    Step,
    Update,
    UpdateStatus,
    install,
    recover,
)
from fedota.client.update.slots import Pointer, Slot, SlotStore
from fedota.client.update.target_download import PARTIAL_SUFFIX, partial_path
from fedota.client.update.trust import (
    SignedTarget,
    TrustConfig,
    TrustedUpdates,
    install_trust_root,
)
from fedota.client.update.trust_errors import (
    HashMismatch,
    MalformedMetadata,
    MetadataExpired,
    OversizedData,
    RepositoryRejected,
    RepositoryUnavailable,
    SignatureRejected,
    TargetInfoInvalid,
    TargetNotSigned,
    TrustStateError,
    VersionRejected,
)

__all__ = [
    "DEFAULT_REPOSITORY_URL",
    "PARTIAL_SUFFIX",
    "PROBES_FILE",
    "ByteSink",
    "ClassifierProbes",
    "ContentMismatch",
    "GenerationProbes",
    "HashMismatch",
    "HealthCheck",
    "HealthCheckFailed",
    "InstallResult",
    "MalformedMetadata",
    "MetadataExpired",
    "ModelFileInvalid",
    "OversizedData",
    "PatchRejected",
    "Pointer",
    "RemoteFileMissing",
    "RepositoryFetcher",
    "RepositoryRejected",
    "RepositoryUnavailable",
    "SignatureRejected",
    "SignedTarget",
    "Slot",
    "SlotError",
    "SlotStore",
    "SlotsBusy",
    "StatusReport",
    "Step",
    "TargetInfoInvalid",
    "TargetNotSigned",
    "TrustConfig",
    "TrustStateError",
    "TrustedUpdates",
    "Update",
    "UpdateRejected",
    "UpdateStatus",
    "VersionRejected",
    "WrongBase",
    "install",
    "install_trust_root",
    "load_probes",
    "partial_path",
    "recover",
    "repository_path",
]
