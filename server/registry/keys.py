"""The update-signing keys an operator sees and rotates (one Ed25519 key per TUF role)."""

from __future__ import annotations

from sqlalchemy import select

from fedota.protos.v1 import releases_pb2
from fedota.server import audit
from fedota.server.convert import timestamp
from fedota.server.errors import InvalidArgument
from fedota.server.releases import ROLES, generate_signer
from fedota.server.runtime import Runtime
from fedota.storage.models import SigningKey


def list_keys(runtime: Runtime) -> releases_pb2.ListKeysResponse:
    """The key each role signs with now, and the current root version."""
    repository = runtime.tuf.load()
    root = repository.root()
    return releases_pb2.ListKeysResponse(
        keys=[_key_info(runtime, role, root.roles[role].keyids[0]) for role in ROLES],
        root_version=root.version,
    )


def rotate_key(
    runtime: Runtime, actor: audit.Actor, request: releases_pb2.RotateKeyRequest
) -> releases_pb2.RotateKeyResponse:
    """A new key for `request.role`, listed in a new root (for root: signed by old and new).

    The metadata store records the `tuf_repository.rotate_key` audit row with the publication.

    Raises:
        InvalidArgument: not a TUF role name.
    """
    if request.role not in ROLES:
        raise InvalidArgument("role", f"{request.role[:40]!r} is not one of {', '.join(ROLES)}")
    before = runtime.tuf.load().root().roles[request.role].keyids[0]
    publication = runtime.tuf.update(
        lambda repo: repo.rotate_key(request.role, generate_signer(), runtime.clock()),
        actor=actor,
    )
    root = publication.repository.root()
    after = root.roles[request.role].keyids[0]
    return releases_pb2.RotateKeyResponse(
        old_key=_key_info(runtime, request.role, before),
        new_key=_key_info(runtime, request.role, after),
        root_version=root.version,
    )


def _key_info(runtime: Runtime, role: str, keyid: str) -> releases_pb2.SigningKeyInfo:
    with runtime.database.session() as session:
        row = session.scalars(select(SigningKey).where(SigningKey.keyid == keyid)).one_or_none()
    info = releases_pb2.SigningKeyInfo(role=role, keyid=keyid)
    if row is not None:
        info.created_at.CopyFrom(timestamp(row.created_at))
    return info


__all__ = ["list_keys", "rotate_key"]
