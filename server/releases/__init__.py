"""fedota.server.releases: the coordinator's signed update metadata (TUF) and its keys.

`TufRepository` is the I/O-free core (sign, chain, rotate, refresh); `signing_keys` seals the
role keys at rest under the coordinator secret; `MetadataStore` keeps both in the database and
blob store, one transaction per publication.
"""

from fedota.server.releases.errors import (
    ConcurrentPublish,
    CoordinatorSecretError,
    InvalidTarget,
    KeyMismatch,
    RepositoryAlreadyInitialized,
    RepositoryCorrupt,
    RepositoryNotInitialized,
    SealedKeyTampered,
    SigningKeyError,
    TufRepositoryError,
    UnknownTarget,
    WrongCoordinatorSecret,
)
from fedota.server.releases.metadata_store import MetadataStore
from fedota.server.releases.signed_metadata import SignedMetadata
from fedota.server.releases.signing_keys import (
    SECRET_FILE,
    CoordinatorSecret,
    SealedKey,
    generate_signer,
)
from fedota.server.releases.tuf_config import ROLES, ROOT, SNAPSHOT, TARGETS, TIMESTAMP, TufConfig
from fedota.server.releases.tuf_repository import Publication, RoleKey, TufRepository
from fedota.server.releases.tuf_targets import (
    TargetSpec,
    artifact_target,
    parse_served_path,
    patch_target,
    served_path,
)

__all__ = [
    "ROLES",
    "ROOT",
    "SECRET_FILE",
    "SNAPSHOT",
    "TARGETS",
    "TIMESTAMP",
    "ConcurrentPublish",
    "CoordinatorSecret",
    "CoordinatorSecretError",
    "InvalidTarget",
    "KeyMismatch",
    "MetadataStore",
    "Publication",
    "RepositoryAlreadyInitialized",
    "RepositoryCorrupt",
    "RepositoryNotInitialized",
    "RoleKey",
    "SealedKey",
    "SealedKeyTampered",
    "SignedMetadata",
    "SigningKeyError",
    "TargetSpec",
    "TufConfig",
    "TufRepository",
    "TufRepositoryError",
    "UnknownTarget",
    "WrongCoordinatorSecret",
    "artifact_target",
    "generate_signer",
    "parse_served_path",
    "patch_target",
    "served_path",
]
