"""One signed TUF metadata file as published: its exact bytes, role, version and expiry.

The bytes are what is served and hashed into the role above it (snapshot into timestamp, targets
into snapshot); they are never re-serialised, because another serialisation of the same metadata
would hash differently. `check_consistent` verifies a whole top-level set against its root.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from securesystemslib.signer import Signer
from tuf.api.exceptions import RepositoryError
from tuf.api.metadata import Metadata, MetaFile, Root, Signed, Snapshot, Timestamp
from tuf.api.serialization import DeserializationError

from fedota.server.releases.errors import KeyMismatch, RepositoryCorrupt
from fedota.server.releases.tuf_config import ROLES, ROOT, SNAPSHOT, TARGETS, TIMESTAMP

ED25519 = "ed25519"


@dataclass(frozen=True)
class SignedMetadata:
    """A published metadata file; `parse` and `sign` build one that is what it says it is."""

    role: str
    version: int
    expires: dt.datetime
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def length(self) -> int:
        return len(self.data)

    @property
    def filename(self) -> str:
        """Its name under `metadata/`: `timestamp.json`, else `<version>.<role>.json`."""
        return f"{TIMESTAMP}.json" if self.role == TIMESTAMP else f"{self.version}.{self.role}.json"

    def meta_file(self) -> MetaFile:
        """How the role above names this file: version, length and SHA-256 of these bytes."""
        return MetaFile(self.version, self.length, {"sha256": self.sha256})

    def open(self) -> Metadata[Signed]:
        """A new, mutable Metadata parsed from the bytes (editing it changes nothing here)."""
        return Metadata.from_bytes(self.data)

    @classmethod
    def parse(cls, role: str, data: bytes) -> SignedMetadata:
        """Read stored bytes as metadata of `role` (signatures are checked by `check_consistent`).

        Raises:
            RepositoryCorrupt: the bytes are not TUF metadata of that role.
        """
        try:
            signed = Metadata.from_bytes(data).signed
        except (DeserializationError, ValueError, KeyError, TypeError) as e:
            raise RepositoryCorrupt(f"stored {role} metadata does not parse: {e}") from None
        if signed.type != role:
            raise RepositoryCorrupt(f"stored {role} metadata holds a {signed.type!r} role")
        return cls(role, signed.version, signed.expires, bytes(data))


def sign(md: Metadata[Signed], signers: Sequence[Signer]) -> SignedMetadata:
    """Replace `md`'s signatures with one by each signer and serialise it.

    Raises:
        tuf.api.exceptions.UnsignedMetadataError: a signer failed.
    """
    md.signatures.clear()
    for signer in signers:
        md.sign(signer, append=True)
    return SignedMetadata(md.signed.type, md.signed.version, md.signed.expires, md.to_bytes())


def check_consistent(files: Mapping[str, SignedMetadata], signers: Mapping[str, Signer]) -> Root:
    """Check a top-level set: every file verifies against the root, versions and hashes chain
    (timestamp names this snapshot, snapshot names this targets), and each signer is the one key
    the root lists for its role, with threshold 1. Returns the root.

    Raises:
        RepositoryCorrupt: a role is missing, a signature or a chain link does not verify.
        KeyMismatch: a signer is missing, not Ed25519, or not the key its role lists.
    """
    missing = [role for role in ROLES if role not in files]
    if missing:
        raise RepositoryCorrupt(f"the repository has no {', '.join(missing)} metadata")
    for role in ROLES:
        if files[role].role != role:
            raise RepositoryCorrupt(f"{role} slot holds {files[role].role} metadata")
    try:
        root_md = files[ROOT].open()
        root = root_md.signed
        if not isinstance(root, Root):
            raise RepositoryCorrupt(f"the root slot holds a {root.type!r} role")
        root.verify_delegate(ROOT, root_md.signed_bytes, root_md.signatures)
        opened = {role: files[role].open() for role in (TARGETS, SNAPSHOT, TIMESTAMP)}
        for role, md in opened.items():
            root.verify_delegate(role, md.signed_bytes, md.signatures)
        snapshot = opened[SNAPSHOT].signed
        timestamp = opened[TIMESTAMP].signed
        if not isinstance(snapshot, Snapshot) or not isinstance(timestamp, Timestamp):
            raise RepositoryCorrupt("the snapshot or timestamp slot holds another role")
        targets_meta = snapshot.meta[f"{TARGETS}.json"]
    except (RepositoryError, ValueError, KeyError, TypeError) as e:
        raise RepositoryCorrupt(f"the stored metadata does not verify: {e}") from None
    _check_link(timestamp.snapshot_meta, files[SNAPSHOT], "timestamp")
    _check_link(targets_meta, files[TARGETS], "snapshot")
    _check_signers(root, signers)
    return root


def _check_link(named: MetaFile, file: SignedMetadata, by: str) -> None:
    if named.version != file.version:
        raise RepositoryCorrupt(
            f"{by} names {file.role} v{named.version} but the latest is v{file.version}"
        )
    try:
        named.verify_length_and_hashes(file.data)
    except RepositoryError as e:
        raise RepositoryCorrupt(f"{by} names other {file.role} bytes than stored: {e}") from None


def _check_signers(root: Root, signers: Mapping[str, Signer]) -> None:
    for role in ROLES:
        signer = signers.get(role)
        if signer is None:
            raise KeyMismatch(f"no signing key for the {role} role")
        check_ed25519(role, signer)
        listed = root.roles[role]
        if listed.threshold != 1 or listed.keyids != [signer.public_key.keyid]:
            raise KeyMismatch(
                f"root v{root.version} lists {role} keys {listed.keyids} (threshold "
                f"{listed.threshold}), not the one signing key {signer.public_key.keyid}"
            )


def check_ed25519(role: str, signer: Signer) -> None:
    """Raises: KeyMismatch when `signer` is not an Ed25519 key."""
    key = signer.public_key
    if key.keytype != ED25519 or key.scheme != ED25519:
        raise KeyMismatch(f"{role} keys are Ed25519, got {key.keytype}/{key.scheme}")


__all__ = ["SignedMetadata", "check_consistent", "check_ed25519", "sign"]
