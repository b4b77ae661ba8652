"""The TUF repository as files: which blob a repository path names, for gRPC and HTTP alike.

Paths follow TUF's repository layout with consistent snapshots:
`metadata/<V>.<role>.json` (root, targets, snapshot), `metadata/timestamp.json` (the latest), and
`targets/<dir>/<sha256>.<name>`, where the SHA-256 is the file's own hash and so the key of its
blob. Only blobs that are an artifact or a patch are served as targets; metadata and target
bytes are public (their signatures, not secrecy, protect devices).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from fedota.storage.models import ModelArtifact, Patch, TufMetadata

MAX_PATH_CHARS = 1024
_VERSIONED = re.compile(
    r"metadata/(?P<version>[1-9][0-9]{0,9})\.(?P<role>root|targets|snapshot)\.json"
)
_TARGET = re.compile(r"targets/(?:[a-z0-9._-]+/)*(?P<sha256>[0-9a-f]{64})\.[A-Za-z0-9._-]+")


class UnknownFile(LookupError):
    """The path names no file of the repository."""


@dataclass(frozen=True)
class RepositoryFile:
    """A file of the repository: its blob, and whether it is metadata (small, changes often)."""

    blob_sha256: str
    is_metadata: bool


def resolve(session: Session, path: str) -> RepositoryFile:
    """The blob behind a repository path.

    Raises:
        UnknownFile: a malformed path, or one that names nothing published.
    """
    if len(path) > MAX_PATH_CHARS or ".." in path.split("/"):
        raise UnknownFile(f"{path[:80]!r} is not a path of the update repository")
    if path == "metadata/timestamp.json":
        row = session.scalars(
            select(TufMetadata)
            .where(TufMetadata.role == "timestamp")
            .order_by(TufMetadata.version.desc())
            .limit(1)
        ).one_or_none()
        return _metadata(row, path)
    match = _VERSIONED.fullmatch(path)
    if match is not None:
        row = session.scalars(
            select(TufMetadata).where(
                TufMetadata.role == match["role"], TufMetadata.version == int(match["version"])
            )
        ).one_or_none()
        return _metadata(row, path)
    match = _TARGET.fullmatch(path)
    if match is not None:
        key = match["sha256"]
        known = (
            session.scalars(
                select(ModelArtifact.id).where(ModelArtifact.blob_sha256 == key).limit(1)
            ).first()
            or session.scalars(select(Patch.id).where(Patch.blob_sha256 == key).limit(1)).first()
        )
        if known is not None:
            return RepositoryFile(key, is_metadata=False)
    raise UnknownFile(f"{path[:200]} is not a file of the update repository")


def _metadata(row: TufMetadata | None, path: str) -> RepositoryFile:
    if row is None:
        raise UnknownFile(f"{path} is not published")
    return RepositoryFile(row.blob_sha256, is_metadata=True)


__all__ = ["MAX_PATH_CHARS", "RepositoryFile", "UnknownFile", "resolve"]
