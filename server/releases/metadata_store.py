"""The TUF repository in the coordinator's database and blob store.

Every published metadata file is a blob (keyed by its SHA-256) and a `tuf_metadata` row naming
its role, version and expiry; signing keys are `signing_keys` rows with the private half sealed
under the coordinator secret. A publication (its rows, its new keys, the retirement of old keys
and its audit row) is one transaction. Blobs are written before it: content-addressed and
immutable, a blob whose transaction failed is only unreferenced garbage.

Concurrent publishers (coordinator replicas, an operator command racing the refresh timer) are
serialised by the unique (role, version) constraint: every publication writes the next version
of each role it touches, so two built on the same state collide on at least one row. The loser
gets `ConcurrentPublish` and nothing of it is stored; `update` reloads and runs it again.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable

from securesystemslib.signer import CryptoSigner
from sqlalchemy import and_, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from tuf.api.metadata import Root

from fedota.server import audit
from fedota.server.audit import Actor
from fedota.server.releases.errors import (
    ConcurrentPublish,
    RepositoryAlreadyInitialized,
    RepositoryCorrupt,
    RepositoryNotInitialized,
)
from fedota.server.releases.signed_metadata import SignedMetadata
from fedota.server.releases.signing_keys import CoordinatorSecret, SealedKey, generate_signer
from fedota.server.releases.tuf_config import ROLES, ROOT, TIMESTAMP, TufConfig
from fedota.server.releases.tuf_repository import Publication, TufRepository
from fedota.storage.blobs import BlobStore
from fedota.storage.db import Database
from fedota.storage.errors import BlobError
from fedota.storage.models import SigningKey, TufMetadata
from fedota.storage.types import new_id, utcnow

AUDIT_TARGET_TYPE = "tuf_repository"
_VERSIONED_NAME = re.compile(r"(?P<version>[1-9][0-9]{0,9})\.(?P<role>root|targets|snapshot)\.json")
DEFAULT_ATTEMPTS = 5

# Runs inside the publication's transaction, e.g. to mark a release with its targets version.
AlsoInTransaction = Callable[[Session, Publication], None]


class MetadataStore:
    """Loads and publishes the repository; safe to share between threads and replicas."""

    def __init__(
        self,
        database: Database,
        blobs: BlobStore,
        secret: CoordinatorSecret,
        config: TufConfig | None = None,
    ) -> None:
        self._database = database
        self._blobs = blobs
        self._secret = secret
        self.config = config or TufConfig()

    # -- the repository ------------------------------------------------------------------------

    def load(self) -> TufRepository:
        """The latest version of every role, with its signing keys unsealed.

        Raises:
            RepositoryNotInitialized: nothing was ever published.
            RepositoryCorrupt: a role is missing, a blob is gone or changed, a file does not
                verify, or a key the root lists is not stored.
            WrongCoordinatorSecret: the keys were sealed under another secret.
            SealedKeyTampered: a stored key was changed.
        """
        latest = (
            select(TufMetadata.role, func.max(TufMetadata.version).label("version"))
            .group_by(TufMetadata.role)
            .subquery()
        )
        is_latest = and_(TufMetadata.role == latest.c.role, TufMetadata.version == latest.c.version)
        with self._database.session() as session:
            # One statement, so a publication committing meanwhile is seen whole or not at all.
            rows = session.scalars(select(TufMetadata).join(latest, is_latest)).all()
            if not rows:
                raise RepositoryNotInitialized(
                    "the TUF repository has no metadata yet: initialise it first"
                )
            files = {row.role: self._parse(row) for row in rows}
            if ROOT not in files:
                raise RepositoryCorrupt("the stored TUF metadata has no root")
            root = files[ROOT].open().signed
            if not isinstance(root, Root):
                raise RepositoryCorrupt(f"the stored root holds a {root.type!r} role")
            wanted = {keyid: role for role in ROLES for keyid in root.roles[role].keyids}
            keys = session.scalars(select(SigningKey).where(SigningKey.keyid.in_(wanted))).all()
        by_keyid = {key.keyid: key for key in keys}
        signers = {}
        for keyid, role in wanted.items():
            key = by_keyid.get(keyid)
            if key is None or key.role != role:
                raise RepositoryCorrupt(
                    f"root v{root.version} lists {role} key {keyid}, which is not stored"
                )
            signers[role] = self._secret.unseal(
                SealedKey(key.role, key.keyid, key.public_key, key.encrypted_private_key)
            )
        return TufRepository(files, signers, self.config)

    def initialize(self, now: dt.datetime, actor: Actor | None = None) -> TufRepository:
        """Create the repository: a new Ed25519 key per role and the first version of each role.

        Raises:
            RepositoryAlreadyInitialized: a root is already stored (or another publisher stored
                one first).
            ValueError: `now` is naive.
        """
        if self.latest_version(ROOT) is not None:
            raise RepositoryAlreadyInitialized("the TUF repository already has a root")
        signers = {role: generate_signer() for role in ROLES}
        publication = TufRepository.create(signers, now, self.config)
        try:
            self.publish(publication, actor=actor)
        except ConcurrentPublish:
            raise RepositoryAlreadyInitialized(
                "another coordinator initialised the TUF repository first"
            ) from None
        return publication.repository

    def load_or_initialize(self, now: dt.datetime, actor: Actor | None = None) -> TufRepository:
        """The stored repository, created first if there is none (what a coordinator start does).

        Raises:
            As `load`.
        """
        try:
            return self.load()
        except RepositoryNotInitialized:
            pass
        try:
            return self.initialize(now, actor)
        except RepositoryAlreadyInitialized:
            return self.load()

    def publish(
        self,
        publication: Publication,
        *,
        actor: Actor | None = None,
        also: AlsoInTransaction | None = None,
    ) -> None:
        """Store a publication's files and keys, retire the keys it replaced, and record one audit
        row, in one transaction (`also` joins it). An empty publication stores nothing.

        Raises:
            ConcurrentPublish: a role version in it is already stored (nothing was stored).
            ValueError: a new key is not a CryptoSigner holding an Ed25519 key.
            BlobError, OSError: the blob store failed (nothing was stored in the database).
        """
        if publication.empty:
            return
        for md in publication.metadata:
            self._blobs.put_bytes(md.data, expected_sha256=md.sha256)
        sealed = []
        for key in publication.new_keys:
            if not isinstance(key.signer, CryptoSigner):
                raise ValueError(f"new {key.role} key must be a CryptoSigner to be sealed")
            sealed.append(self._secret.seal(key.role, key.signer))
        try:
            with self._database.transaction() as session:
                self._insert(session, publication, sealed, actor or Actor.system())
                if also is not None:
                    also(session, publication)
                session.flush()
        except IntegrityError as e:
            # Only the (role, version) constraint means a lost race; `also`'s own are its own.
            if TufMetadata.__tablename__ not in str(e.orig):
                raise
            role, version = self._taken(publication)
            raise ConcurrentPublish(
                f"another publisher stored {role} v{version} first; reload the repository and "
                "try again",
                role=role,
                version=version,
            ) from None

    def update(
        self,
        change: Callable[[TufRepository], Publication],
        *,
        actor: Actor | None = None,
        also: AlsoInTransaction | None = None,
        attempts: int = DEFAULT_ATTEMPTS,
    ) -> Publication:
        """Load the repository, apply `change`, publish; on a lost race, again from the fresh
        state, up to `attempts` times. Returns what was published (maybe empty).

        Raises:
            ConcurrentPublish: lost `attempts` races in a row.
            As `load`, `publish`, and whatever `change` raises.
        """
        if attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {attempts}")
        for attempt in range(1, attempts + 1):
            publication = change(self.load())
            try:
                self.publish(publication, actor=actor, also=also)
            except ConcurrentPublish:
                if attempt == attempts:
                    raise
                continue
            return publication
        raise AssertionError("unreachable")  # pragma: no cover

    # -- serving -------------------------------------------------------------------------------

    def latest_version(self, role: str) -> int | None:
        """The newest stored version of `role`, None when there is none."""
        with self._database.session() as session:
            return session.scalar(
                select(func.max(TufMetadata.version)).where(TufMetadata.role == role)
            )

    def read(self, role: str, version: int | None = None) -> bytes | None:
        """The stored bytes of `role` at `version` (default: the latest), None when there is none.

        Raises:
            RepositoryCorrupt: the row's blob is missing or changed.
        """
        query = select(TufMetadata).where(TufMetadata.role == role)
        if version is not None:
            query = query.where(TufMetadata.version == version)
        with self._database.session() as session:
            row = session.scalars(query.order_by(TufMetadata.version.desc()).limit(1)).first()
        return None if row is None else self._blob(row)

    def read_file(self, name: str) -> bytes | None:
        """A file of TUF's `metadata/` layout: `timestamp.json` (the latest) or
        `<version>.<role>.json` for root, snapshot and targets; None for any other name or a
        version never published.

        Raises:
            RepositoryCorrupt: the row's blob is missing or changed.
        """
        if name == f"{TIMESTAMP}.json":
            return self.read(TIMESTAMP)
        match = _VERSIONED_NAME.fullmatch(name)
        if match is None:
            return None
        return self.read(match["role"], int(match["version"]))

    # -- internals -----------------------------------------------------------------------------

    def _taken(self, publication: Publication) -> tuple[str, int]:
        """The first (role, version) of `publication` that another publisher stored."""
        with self._database.session() as session:
            for md in publication.metadata:
                found = session.scalar(
                    select(TufMetadata.id).where(
                        TufMetadata.role == md.role, TufMetadata.version == md.version
                    )
                )
                if found is not None:
                    return md.role, md.version
        first = publication.metadata[0]
        return first.role, first.version

    def _blob(self, row: TufMetadata) -> bytes:
        try:
            return self._blobs.read_bytes(row.blob_sha256)
        except BlobError as e:
            raise RepositoryCorrupt(
                f"{row.role} v{row.version}: its blob is unusable: {e}"
            ) from None

    def _parse(self, row: TufMetadata) -> SignedMetadata:
        signed = SignedMetadata.parse(row.role, self._blob(row))
        if signed.version != row.version:
            raise RepositoryCorrupt(
                f"the row for {row.role} v{row.version} holds version {signed.version}"
            )
        return signed

    def _insert(
        self, session: Session, publication: Publication, sealed: list[SealedKey], actor: Actor
    ) -> None:
        now = utcnow()
        for md in publication.metadata:
            session.add(
                TufMetadata(
                    role=md.role, version=md.version, blob_sha256=md.sha256, expires_at=md.expires
                )
            )
        for key in sealed:
            session.add(
                SigningKey(
                    id=new_id("key"),
                    role=key.role,
                    keyid=key.keyid,
                    public_key=key.public_key,
                    encrypted_private_key=key.encrypted_private_key,
                    created_at=now,
                )
            )
        if publication.retired_keyids:
            session.execute(
                update(SigningKey)
                .where(
                    SigningKey.keyid.in_(publication.retired_keyids),
                    SigningKey.retired_at.is_(None),
                )
                .values(retired_at=now)
            )
        audit.record(
            session,
            actor,
            f"tuf.{publication.action}",
            AUDIT_TARGET_TYPE,
            publication.metadata[0].role,
            {
                "published": {md.role: md.version for md in publication.metadata},
                "new_keys": {key.role: key.keyid for key in sealed},
                "retired_keys": list(publication.retired_keyids),
            },
        )


__all__ = ["AUDIT_TARGET_TYPE", "AlsoInTransaction", "MetadataStore"]
