"""Patches as signed TUF targets, made the first time a device needs one.

`PatchTargets.signed_patch(base, target)` computes (or finds) the cached patch between two
artifacts and, when it is worth shipping, makes sure the targets role signs it under its
`patches/<family>/<variant>/<base>-<target>.patch` path. Devices asking for the same patch at the
same time wait for one computation: a lock per (base, target) in this process; across replicas
the patches table's unique constraint keeps one row and `MetadataStore.update` re-runs a
publication that lost a race (the second run finds the target signed and publishes nothing).
"""

from __future__ import annotations

import logging
import threading
import weakref
from dataclasses import dataclass

from tuf.api.metadata import Metadata, Targets

from fedota.server.audit import Actor
from fedota.server.registry.patches import patch_between, worth_shipping
from fedota.server.releases import TARGETS, TargetSpec, patch_target
from fedota.server.rollouts.views import ArtifactRef
from fedota.server.runtime import Runtime
from fedota.update_targets import ArtifactTarget

logger = logging.getLogger("fedota.server.updates")


@dataclass(frozen=True)
class SignedPatch:
    """A patch the targets role signs: its TUF path, and the cached row it was made from."""

    path: str
    patch_id: str
    size_bytes: int


class PatchTargets:
    """Signed patches between artifacts; one per coordinator process, shared by its threads."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._guard = threading.Lock()
        # Dropped once no thread holds or waits for them.
        self._locks: weakref.WeakValueDictionary[tuple[str, str], threading.Lock] = (
            weakref.WeakValueDictionary()
        )
        # (path, sha256) of patches seen signed: targets are never unsigned, so this stays true.
        self._signed: set[tuple[str, str]] = set()

    def signed_patch(self, base: ArtifactRef, target: ArtifactRef) -> SignedPatch | None:
        """The signed patch from `base` to `target`, or None when a full download is smaller.

        Raises:
            PatchUnavailable: no patch can go between these artifacts (see `patch_between`).
            DeltaError, BlobError, OSError: computing the patch failed.
            TufRepositoryError, ConcurrentPublish: signing it failed.
        """
        with self._lock_for(base.id, target.id):
            patch = patch_between(self._runtime, base.id, target.id)
            if not worth_shipping(patch, target):
                return None
            spec = patch_target(
                base.content_sha256,
                ArtifactTarget(
                    target.family, target.version, target.variant, target.content_sha256
                ),
                length=patch.size_bytes,
                sha256=patch.blob_sha256,
            )
            if (spec.path, spec.sha256) not in self._signed:
                self._sign(spec)
                self._signed.add((spec.path, spec.sha256))
            return SignedPatch(spec.path, patch.id, patch.size_bytes)

    def _lock_for(self, base_id: str, target_id: str) -> threading.Lock:
        with self._guard:
            lock = self._locks.get((base_id, target_id))
            if lock is None:
                lock = threading.Lock()
                self._locks[(base_id, target_id)] = lock
            return lock

    def _sign(self, spec: TargetSpec) -> None:
        if self._is_signed(spec):
            return
        now = self._runtime.clock()
        publication = self._runtime.tuf.update(
            lambda repo: repo.update_targets(now, add=[spec]), actor=Actor.system()
        )
        if not publication.empty:
            logger.info("signed patch target %s (%d bytes)", spec.path, spec.length)

    def _is_signed(self, spec: TargetSpec) -> bool:
        """Whether the latest targets metadata already signs exactly this patch (a cheap read,
        no keys unsealed)."""
        data = self._runtime.tuf.read(TARGETS)
        if data is None:
            return False
        signed = Metadata[Targets].from_bytes(data).signed
        known = signed.targets.get(spec.path)
        return (
            known is not None
            and known.length == spec.length
            and known.hashes.get("sha256") == spec.sha256
        )


__all__ = ["PatchTargets", "SignedPatch"]
