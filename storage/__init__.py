"""fedota.storage: the coordinator's database (models, migrations, audit log) and blob store."""

from fedota.storage import models
from fedota.storage.audit import record as record_audit
from fedota.storage.blobs import BlobInfo, BlobLimits, BlobStore, BlobWriter, validate_key
from fedota.storage.db import Database, default_url
from fedota.storage.errors import (
    BlobCorrupted,
    BlobError,
    BlobHashMismatch,
    BlobNotFound,
    BlobTooLarge,
    InvalidBlobKey,
    InvalidBlobRange,
    MigrationLockTimeout,
    SchemaOutOfDate,
    StorageError,
    UnknownSchemaRevision,
    UnmanagedSchema,
)
from fedota.storage.local_blobs import LocalBlobStore
from fedota.storage.migrate import (
    current_revision,
    downgrade,
    head_revision,
    is_up_to_date,
    require_up_to_date,
    upgrade,
)

__all__ = [
    "BlobCorrupted",
    "BlobError",
    "BlobHashMismatch",
    "BlobInfo",
    "BlobLimits",
    "BlobNotFound",
    "BlobStore",
    "BlobTooLarge",
    "BlobWriter",
    "Database",
    "InvalidBlobKey",
    "InvalidBlobRange",
    "LocalBlobStore",
    "MigrationLockTimeout",
    "SchemaOutOfDate",
    "StorageError",
    "UnknownSchemaRevision",
    "UnmanagedSchema",
    "current_revision",
    "default_url",
    "downgrade",
    "head_revision",
    "is_up_to_date",
    "models",
    "record_audit",
    "require_up_to_date",
    "upgrade",
    "validate_key",
]
