"""The coordinator's TUF repository as a value: the latest signed top-level metadata and its keys.

No I/O and no clock: every operation takes `now` and returns a `Publication` (the new repository
and the files to publish, in publication order) while the repository it was called on stays as
it was. Versions only ever go up by one per publication; a publisher that lost a race reloads the
state and runs the operation again (see `metadata_store`).

One Ed25519 key per role, threshold 1, consistent snapshots on. The timestamp names the snapshot
and the snapshot names the targets by version, length and SHA-256, so a device detects a mixed
set (mix-and-match) from the hashes alone. A key rotation publishes a new root listing the new
key, signed by the root key; a root key rotation is signed by the old and the new root keys
(TUF specification, client workflow 5.3.4: a new root must meet the threshold of both).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from securesystemslib.signer import Signer
from tuf.api.metadata import Metadata, Root, Signed, Snapshot, Targets, Timestamp

from fedota.server.releases.errors import InvalidTarget, KeyMismatch, UnknownTarget
from fedota.server.releases.signed_metadata import (
    SignedMetadata,
    check_consistent,
    check_ed25519,
    sign,
)
from fedota.server.releases.tuf_config import ROLES, ROOT, SNAPSHOT, TARGETS, TIMESTAMP, TufConfig
from fedota.server.releases.tuf_targets import TargetSpec


@dataclass(frozen=True)
class RoleKey:
    """A signing key and the role it signs for."""

    role: str
    signer: Signer


@dataclass(frozen=True)
class Publication:
    """What an operation produced: the repository after it and the new files, root first and
    timestamp last. Empty `metadata` means nothing needed publishing."""

    action: str
    repository: TufRepository
    metadata: tuple[SignedMetadata, ...] = ()
    new_keys: tuple[RoleKey, ...] = ()
    retired_keyids: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.metadata


@dataclass
class _Draft:
    """Files and keys being changed by one operation (private, never escapes a call)."""

    files: dict[str, SignedMetadata]
    signers: dict[str, Signer]
    now: dt.datetime
    config: TufConfig
    published: list[SignedMetadata] = field(default_factory=list)

    def next_version(
        self, role: str, edit: Callable[[Signed], None], extra_signers: Sequence[Signer] = ()
    ) -> None:
        md = self.files[role].open()
        md.signed.version += 1
        md.signed.expires = self.now + self.config.expiry(role)
        edit(md.signed)
        self._store(sign(md, [self.signers[role], *extra_signers]))

    def chain_snapshot(self) -> None:
        """A new snapshot naming the current targets, then a new timestamp naming it."""

        def name_targets(signed: Signed) -> None:
            assert isinstance(signed, Snapshot)
            signed.meta[f"{TARGETS}.json"] = self.files[TARGETS].meta_file()

        self.next_version(SNAPSHOT, name_targets)
        self.chain_timestamp()

    def chain_timestamp(self) -> None:
        def name_snapshot(signed: Signed) -> None:
            assert isinstance(signed, Timestamp)
            signed.snapshot_meta = self.files[SNAPSHOT].meta_file()

        self.next_version(TIMESTAMP, name_snapshot)

    def _store(self, signed: SignedMetadata) -> None:
        self.files[signed.role] = signed
        self.published.append(signed)


def _utc(now: dt.datetime) -> dt.datetime:
    if now.tzinfo is None:
        raise ValueError(f"naive datetime {now!r}: pass a timezone-aware time")
    # TUF expiry has whole seconds; dropping the microseconds here keeps `now + lifetime` exact.
    return now.astimezone(dt.UTC).replace(microsecond=0)


def _unchanged(_signed: Signed) -> None:
    """An edit that only bumps version and expiry."""


class TufRepository:
    """The latest root, targets, snapshot and timestamp, and the signer of each role.

    Raises (on construction):
        RepositoryCorrupt: the files do not verify or do not chain.
        KeyMismatch: a signer is not the key the root lists for its role.
    """

    def __init__(
        self,
        files: Mapping[str, SignedMetadata],
        signers: Mapping[str, Signer],
        config: TufConfig | None = None,
    ) -> None:
        self._files = {role: files[role] for role in ROLES if role in files}
        self._signers = {role: signers[role] for role in ROLES if role in signers}
        self.config = config or TufConfig()
        check_consistent(self._files, self._signers)

    # -- creating ------------------------------------------------------------------------------

    @classmethod
    def create(
        cls, signers: Mapping[str, Signer], now: dt.datetime, config: TufConfig | None = None
    ) -> Publication:
        """A new repository: root v1 listing one key per role, an empty targets v1, snapshot v1
        and timestamp v1.

        Raises:
            KeyMismatch: a role has no signer, a key is not Ed25519, or two roles share a key.
            ValueError: `now` is naive.
        """
        config = config or TufConfig()
        now = _utc(now)
        for role in ROLES:
            if role not in signers:
                raise KeyMismatch(f"no signing key for the {role} role")
            check_ed25519(role, signers[role])
        if len({signers[role].public_key.keyid for role in ROLES}) != len(ROLES):
            raise KeyMismatch("every role needs a key of its own; two roles share one")
        root = Root(version=1, expires=now + config.expiry(ROOT), consistent_snapshot=True)
        for role in ROLES:
            root.add_key(signers[role].public_key, role)
        files: dict[str, SignedMetadata] = {}
        files[ROOT] = sign(Metadata(root), [signers[ROOT]])
        targets = Targets(version=1, expires=now + config.expiry(TARGETS))
        files[TARGETS] = sign(Metadata(targets), [signers[TARGETS]])
        snapshot = Snapshot(
            version=1,
            expires=now + config.expiry(SNAPSHOT),
            meta={f"{TARGETS}.json": files[TARGETS].meta_file()},
        )
        files[SNAPSHOT] = sign(Metadata(snapshot), [signers[SNAPSHOT]])
        timestamp = Timestamp(
            version=1,
            expires=now + config.expiry(TIMESTAMP),
            snapshot_meta=files[SNAPSHOT].meta_file(),
        )
        files[TIMESTAMP] = sign(Metadata(timestamp), [signers[TIMESTAMP]])
        repository = cls(files, signers, config)
        return Publication(
            action="initialize",
            repository=repository,
            metadata=tuple(files[role] for role in ROLES),
            new_keys=tuple(RoleKey(role, signers[role]) for role in ROLES),
        )

    # -- reading -------------------------------------------------------------------------------

    def metadata(self, role: str) -> SignedMetadata:
        """The latest signed file of `role`. Raises: ValueError for an unknown role."""
        if role not in self._files:
            raise ValueError(f"unknown TUF role {role!r}; expected one of {', '.join(ROLES)}")
        return self._files[role]

    def signer(self, role: str) -> Signer:
        """The current signing key of `role`. Raises: ValueError for an unknown role."""
        if role not in self._signers:
            raise ValueError(f"unknown TUF role {role!r}; expected one of {', '.join(ROLES)}")
        return self._signers[role]

    def root(self) -> Root:
        """A fresh copy of the current root (editing it changes nothing here)."""
        root = self._files[ROOT].open().signed
        assert isinstance(root, Root)
        return root

    def targets(self) -> dict[str, TargetSpec]:
        """Every signed target by path (a new dict each call).

        Raises:
            InvalidTarget: a signed entry is not a fedota target (not written by this class).
        """
        signed = self._files[TARGETS].open().signed
        assert isinstance(signed, Targets)
        return {path: TargetSpec.from_target_file(t) for path, t in signed.targets.items()}

    def next_refresh_at(self) -> dt.datetime:
        """The earliest time a role is due to be re-signed (see `refresh_expiring`)."""
        return min(self.config.refresh_at(role, self._files[role].expires) for role in ROLES)

    # -- changing ------------------------------------------------------------------------------

    def update_targets(
        self, now: dt.datetime, add: Sequence[TargetSpec] = (), remove: Iterable[str] = ()
    ) -> Publication:
        """Add or replace the `add` targets and drop the `remove` paths, then chain a snapshot and
        a timestamp. Nothing is published when the signed targets would not change.

        Raises:
            InvalidTarget: two specs for one path, or a path both added and removed.
            UnknownTarget: a path to remove is not signed.
            ValueError: `now` is naive.
        """
        now = _utc(now)
        removed = list(remove)
        by_path: dict[str, TargetSpec] = {}
        for spec in add:
            if by_path.get(spec.path, spec) != spec:
                raise InvalidTarget(f"{spec.path}: two different targets for one path")
            by_path[spec.path] = spec
        both = sorted(set(by_path) & set(removed))
        if both:
            raise InvalidTarget(f"{both[0]}: a path cannot be both added and removed")
        current = self._files[TARGETS].open().signed
        assert isinstance(current, Targets)
        for path in removed:
            if path not in current.targets:
                raise UnknownTarget(path)
        wanted = dict(current.targets)
        for path in removed:
            del wanted[path]
        wanted.update({path: spec.target_file() for path, spec in by_path.items()})
        if wanted == current.targets:
            return Publication("targets", self)

        def set_targets(signed: Signed) -> None:
            assert isinstance(signed, Targets)
            signed.targets = wanted

        draft = self._draft(now)
        draft.next_version(TARGETS, set_targets)
        draft.chain_snapshot()
        return self._publish("targets", draft)

    def bump_snapshot(self, now: dt.datetime) -> Publication:
        """A new snapshot version (fresh expiry) and a timestamp naming it.

        Raises:
            ValueError: `now` is naive.
        """
        draft = self._draft(_utc(now))
        draft.chain_snapshot()
        return self._publish("snapshot", draft)

    def bump_timestamp(self, now: dt.datetime) -> Publication:
        """A new timestamp version (fresh expiry) naming the same snapshot.

        Raises:
            ValueError: `now` is naive.
        """
        draft = self._draft(_utc(now))
        draft.chain_timestamp()
        return self._publish("timestamp", draft)

    def refresh_expiring(self, now: dt.datetime) -> Publication:
        """Re-sign every role due for refresh (less than `config.refresh_fraction` of its lifetime
        left, or expired), with the roles below it that must name the new version. Nothing is
        published when no role is due.

        Raises:
            ValueError: `now` is naive.
        """
        now = _utc(now)
        due = {
            role for role in ROLES if now >= self.config.refresh_at(role, self._files[role].expires)
        }
        draft = self._draft(now)
        if ROOT in due:
            draft.next_version(ROOT, _unchanged)
        if TARGETS in due:
            draft.next_version(TARGETS, _unchanged)
        if due & {TARGETS, SNAPSHOT}:
            draft.chain_snapshot()
        elif TIMESTAMP in due:
            draft.chain_timestamp()
        return self._publish("refresh", draft)

    def rotate_key(self, role: str, new_signer: Signer, now: dt.datetime) -> Publication:
        """Replace the key of `role` with `new_signer`.

        A new root lists the new key instead of the old one. For the root role it is signed by
        the old and the new root keys; for another role by the root key, and then the role
        publishes a new version signed by its new key (with the snapshot and timestamp above it),
        so devices never hold metadata signed only by a retired key.

        Raises:
            KeyMismatch: the new key is not Ed25519, or is a key some role already uses.
            ValueError: an unknown role, or `now` is naive.
        """
        now = _utc(now)
        old_signer = self.signer(role)
        check_ed25519(role, new_signer)
        new_keyid = new_signer.public_key.keyid
        if any(s.public_key.keyid == new_keyid for s in self._signers.values()):
            raise KeyMismatch(f"key {new_keyid} already signs for a role; rotate to a new key")
        old_keyid = old_signer.public_key.keyid

        def swap_key(signed: Signed) -> None:
            assert isinstance(signed, Root)
            signed.revoke_key(old_keyid, role)
            signed.add_key(new_signer.public_key, role)

        draft = self._draft(now)
        if role == ROOT:
            # Old key first: sign() uses draft.signers[ROOT], then the extra (new) signer.
            draft.next_version(ROOT, swap_key, extra_signers=[new_signer])
            draft.signers[ROOT] = new_signer
        else:
            draft.next_version(ROOT, swap_key)
            draft.signers[role] = new_signer
            if role == TARGETS:
                draft.next_version(TARGETS, _unchanged)
            if role in (TARGETS, SNAPSHOT):
                draft.chain_snapshot()
            else:
                draft.chain_timestamp()
        return self._publish(
            "rotate_key",
            draft,
            new_keys=(RoleKey(role, new_signer),),
            retired_keyids=(old_keyid,),
        )

    # -- internals -----------------------------------------------------------------------------

    def _draft(self, now: dt.datetime) -> _Draft:
        return _Draft(dict(self._files), dict(self._signers), now, self.config)

    def _publish(
        self,
        action: str,
        draft: _Draft,
        new_keys: tuple[RoleKey, ...] = (),
        retired_keyids: tuple[str, ...] = (),
    ) -> Publication:
        if not draft.published:
            return Publication(action, self)
        repository = TufRepository(draft.files, draft.signers, self.config)
        return Publication(action, repository, tuple(draft.published), new_keys, retired_keyids)


__all__ = ["Publication", "RoleKey", "TufRepository"]
