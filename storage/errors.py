"""The storage layer's errors: one family per side that can be wrong (schema, blobs).

Each error carries the values a caller needs to act on it, and its message states the rule and
both values. Misuse by the caller (a negative size cap, a naive datetime) is a plain `ValueError`.
"""

from __future__ import annotations


class StorageError(Exception):
    """Base of every error the storage layer raises on purpose."""


class SchemaOutOfDate(StorageError):
    """The database's schema revision is not the one this code was written for.

    `current` is the revision the database is stamped with (None: no migration ever ran), `head`
    the newest revision this code knows.
    """

    def __init__(self, message: str, *, current: str | None, head: str) -> None:
        super().__init__(message)
        self.current = current
        self.head = head


class UnknownSchemaRevision(SchemaOutOfDate):
    """The database is stamped with a revision this code does not know: a newer fedota migrated it.

    Nothing is changed: running old code on a newer schema could corrupt it.
    """


class UnmanagedSchema(SchemaOutOfDate):
    """The database already holds fedota tables but no migration history: it was not made by us."""


class MigrationLockTimeout(StorageError):
    """Another process held the migration lock (or a table) longer than `timeout` seconds.

    The migration's transaction was rolled back: nothing changed.
    """

    def __init__(self, message: str, *, timeout: float) -> None:
        super().__init__(message)
        self.timeout = timeout


class BlobError(StorageError):
    """Base of the blob store's errors; `key` is the blob concerned (empty when not known yet)."""

    def __init__(self, message: str, *, key: str = "") -> None:
        super().__init__(message)
        self.key = key


class InvalidBlobKey(BlobError, ValueError):
    """A key is not 64 lowercase hexadecimal digits (a SHA-256); it never reaches the filesystem."""


class BlobNotFound(BlobError):
    """No blob is stored under the key."""


class BlobCorrupted(BlobError):
    """The stored bytes do not hash to their key: the medium or someone changed them."""

    def __init__(self, message: str, *, key: str, actual_sha256: str) -> None:
        super().__init__(message, key=key)
        self.actual_sha256 = actual_sha256


class BlobTooLarge(BlobError):
    """A put exceeded its size cap; nothing was stored."""

    def __init__(self, message: str, *, limit: int) -> None:
        super().__init__(message)
        self.limit = limit


class BlobHashMismatch(BlobError):
    """A put's content did not hash to the digest the caller expected; nothing was stored."""

    def __init__(self, message: str, *, expected: str, actual: str) -> None:
        super().__init__(message, key=actual)
        self.expected = expected
        self.actual = actual


class InvalidBlobRange(BlobError, ValueError):
    """A range read starts past the end of the blob, or has a negative offset or length."""

    def __init__(self, message: str, *, key: str, size: int) -> None:
        super().__init__(message, key=key)
        self.size = size


__all__ = [
    "BlobCorrupted",
    "BlobError",
    "BlobHashMismatch",
    "BlobNotFound",
    "BlobTooLarge",
    "InvalidBlobKey",
    "InvalidBlobRange",
    "MigrationLockTimeout",
    "SchemaOutOfDate",
    "StorageError",
    "UnknownSchemaRevision",
    "UnmanagedSchema",
]
