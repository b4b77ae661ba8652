"""An update repository in memory, through the device's own fetcher interface.

`SimulatedRepository` is a `RepositoryFetcher`: it serves the files a real `TufRepository`
published (TUF's layout, consistent snapshots) from a dict, records every request, can cut a
stream after some bytes, and lets a test replace any file to play the attacker. `Coordinator`
holds the signing side: the repository value, a clock, and `publish` to move both forward.
`forge` re-signs edited metadata with any keys (real ones for a compromised-key attack, fresh
ones for an outsider). `disk_state` reads a directory whole, to prove an attack left it as it was.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from securesystemslib.signer import Signer
from tuf.api.metadata import Metadata, MetaFile, Root, Signed, Snapshot, Timestamp

from fedota.client.update import RemoteFileMissing, RepositoryFetcher, repository_path
from fedota.server.releases import (
    Publication,
    SignedMetadata,
    TargetSpec,
    TufConfig,
    TufRepository,
    artifact_target,
    generate_signer,
)

ROLES = ("root", "targets", "snapshot", "timestamp")


@dataclass
class SimulatedRepository(RepositoryFetcher):
    """Serves `files` (repository path -> bytes) and records `requests` as (path, offset)."""

    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[tuple[str, int]] = field(default_factory=list)
    chunk_size: int = 1000
    # path -> how many bytes of it to send before the connection "drops" (once).
    cut_after: dict[str, int] = field(default_factory=dict)
    resumable: bool = True

    def publish(self, publication: Publication) -> None:
        for md in publication.metadata:
            self.files[f"metadata/{md.filename}"] = md.data

    def add_target(self, spec: TargetSpec, data: bytes) -> None:
        self.files[f"targets/{spec.served_path}"] = data

    def serve(self, path: str, data: bytes) -> None:
        """Replace (or add) a file: the attacker's move."""
        self.files[path] = data

    def metadata_requests(self) -> list[str]:
        return [path for path, _ in self.requests if path.startswith("metadata/")]

    def target_requests(self) -> list[tuple[str, int]]:
        return [(path, offset) for path, offset in self.requests if path.startswith("targets/")]

    def _fetch(self, url: str) -> Iterator[bytes]:
        return self._serve(url, 0)

    def _fetch_from(self, url: str, offset: int) -> Iterator[bytes]:
        if not self.resumable:
            return super()._fetch_from(url, offset)
        return self._serve(url, offset)

    def _serve(self, url: str, offset: int) -> Iterator[bytes]:
        path = repository_path(url)
        self.requests.append((path, offset))
        if path not in self.files:
            raise RemoteFileMissing(path)
        data = self.files[path]
        cut = self.cut_after.pop(path, None)
        return self._chunks(data, offset, cut)

    def _chunks(self, data: bytes, offset: int, cut: int | None) -> Iterator[bytes]:
        position = offset
        while position < len(data):
            end = min(position + self.chunk_size, len(data))
            if cut is not None and end > cut:
                if cut > position:
                    yield data[position:cut]
                raise ConnectionResetError("the simulated connection dropped")
            yield data[position:end]
            position = end


@dataclass
class Coordinator:
    """The signing side of a test: the repository value, its clock, and what it serves."""

    repository: TufRepository
    server: SimulatedRepository
    now: dt.datetime
    first_root: bytes

    @classmethod
    def start(cls, now: dt.datetime | None = None, config: TufConfig | None = None) -> Coordinator:
        now = now or dt.datetime.now(dt.UTC)
        signers = {role: generate_signer() for role in ROLES}
        publication = TufRepository.create(signers, now, config)
        server = SimulatedRepository()
        server.publish(publication)
        return cls(publication.repository, server, now, publication.metadata[0].data)

    def publish(self, publication: Publication) -> Publication:
        self.server.publish(publication)
        self.repository = publication.repository
        return publication

    def change(self, operation: Callable[[TufRepository], Publication]) -> Publication:
        return self.publish(operation(self.repository))

    def add_artifact(self, data: bytes, version: int = 1, variant: str = "fp32") -> TargetSpec:
        """Sign and serve a full artifact of family `digits` holding `data`."""
        spec = artifact_target(
            "digits",
            version,
            variant,
            content_sha256=hashlib.sha256(b"content" + data).hexdigest(),
            length=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
        )
        self.change(lambda repo: repo.update_targets(self.now, add=[spec]))
        self.server.add_target(spec, data)
        return spec

    def signer(self, role: str) -> Signer:
        return self.repository.signer(role)

    def latest(self, role: str) -> SignedMetadata:
        return self.repository.metadata(role)


def forge(
    source: SignedMetadata | bytes,
    edit: Callable[[Signed], None],
    signers: Sequence[Signer],
) -> bytes:
    """Edited metadata signed by exactly `signers` (no signature at all when empty)."""
    data = source.data if isinstance(source, SignedMetadata) else source
    md: Metadata[Signed] = Metadata.from_bytes(data)
    edit(md.signed)
    md.signatures.clear()
    for signer in signers:
        md.sign(signer, append=True)
    return md.to_bytes()


def meta_file(data: bytes) -> MetaFile:
    """How the role above would name these bytes."""
    version = Metadata.from_bytes(data).signed.version
    return MetaFile(version, len(data), {"sha256": hashlib.sha256(data).hexdigest()})


def forged_chain(
    publisher: Coordinator, *, targets: bytes | None = None, snapshot: bytes | None = None
) -> dict[str, bytes]:
    """Files that put `targets` (or `snapshot`) in front of devices the way a holder of the real
    snapshot and timestamp keys would: a new snapshot naming the targets, a new timestamp naming
    the snapshot, both signed by the publisher's keys. Returns repository path -> bytes."""
    files: dict[str, bytes] = {}
    if targets is not None:
        named = meta_file(targets)
        files[f"metadata/{named.version}.targets.json"] = targets

        def name_targets(signed: Signed) -> None:
            assert isinstance(signed, Snapshot)
            signed.version += 1
            signed.meta["targets.json"] = named

        snapshot = forge(publisher.latest("snapshot"), name_targets, [publisher.signer("snapshot")])
    if snapshot is not None:
        named_snapshot = meta_file(snapshot)
        files[f"metadata/{named_snapshot.version}.snapshot.json"] = snapshot

        def name_snapshot(signed: Signed) -> None:
            assert isinstance(signed, Timestamp)
            signed.version += 1
            signed.snapshot_meta = named_snapshot

        files["metadata/timestamp.json"] = forge(
            publisher.latest("timestamp"), name_snapshot, [publisher.signer("timestamp")]
        )
    return files


def set_role_keys(root: Root, role: str, signers: Sequence[Signer], threshold: int) -> None:
    """Make `signers` the keys of `role` in `root`, with `threshold`."""
    for keyid in list(root.roles[role].keyids):
        root.revoke_key(keyid, role)
    for signer in signers:
        root.add_key(signer.public_key, role)
    root.roles[role].threshold = threshold


def disk_state(directory: Path) -> dict[str, bytes]:
    """Every file under `directory` (symlinks followed) by relative path."""
    return {
        str(path.relative_to(directory)): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }
