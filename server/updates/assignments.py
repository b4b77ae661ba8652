"""GetAssignment: what a device should run now, as TUF target paths (the patch when worth it).

The rollout engine decides *what* (`rollouts.assignment_for`); this module names *how*: the
target artifact's path, and the path of a signed patch from the model the device runs when one
exists and is smaller than the full artifact. Making a patch may fail (no base on the server, an
undecodable checkpoint, a signing race lost too often); the device then downloads the full
target, which is always signed, so a patch failure never fails the call.
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import or_, select, update

from fedota.protos.v1 import updates_pb2
from fedota.server import rollouts
from fedota.server.rollouts.views import ArtifactRef, DeviceAssignment, artifact_refs
from fedota.server.runtime import Runtime
from fedota.server.updates.patch_targets import PatchTargets
from fedota.storage.models import DeviceUpdate, ModelArtifact, ModelFamily, ModelVersion
from fedota.update_targets import artifact_path

logger = logging.getLogger("fedota.server.updates")
_NONE = updates_pb2.ASSIGNMENT_ACTION_NONE
_INSTALL = updates_pb2.ASSIGNMENT_ACTION_INSTALL
# The flash export is one opaque file: `fedota.delta` patches tensors, not it.
_UNPATCHABLE = frozenset({"mcu-int8"})


def get_assignment(
    runtime: Runtime, patches: PatchTargets, device_id: str, content_sha256: str, now: dt.datetime
) -> updates_pb2.Assignment:
    """The device's assignment under its cohort's newest rollout.

    Raises:
        InvalidArgument: a malformed content hash.
        DeviceNotFound: no such device.
    """
    found = rollouts.assignment_for(runtime.database, device_id, content_sha256, now)
    if found is None:
        return updates_pb2.Assignment(action=_NONE)
    target = found.target
    if target.content_sha256 == content_sha256:
        return updates_pb2.Assignment(action=_NONE, rollout_id=found.rollout_id)
    return updates_pb2.Assignment(
        action=_INSTALL,
        rollout_id=found.rollout_id,
        target_path=artifact_path(target.family, target.version, target.variant),
        patch_path=_patch_path(runtime, patches, device_id, found, content_sha256),
        rollback=found.rollback,
    )


def _patch_path(
    runtime: Runtime,
    patches: PatchTargets,
    device_id: str,
    found: DeviceAssignment,
    content_sha256: str,
) -> str:
    """The signed patch from what the device runs to the target, "" for a full download."""
    target = found.target
    if not content_sha256 or target.variant in _UNPATCHABLE:
        return ""
    base = found.current
    if base is None or base.content_sha256 != content_sha256 or base.variant != target.variant:
        base = _artifact_with_content(runtime, target, content_sha256)
    if base is None:
        return ""
    try:
        signed = patches.signed_patch(base, target)
    except Exception:  # any failure: the full target is signed and always works
        logger.warning(
            "no patch %s -> %s for device %s; it downloads the full artifact",
            base.id,
            target.id,
            device_id,
            exc_info=True,
        )
        return ""
    if signed is None:
        return ""
    _note_patch(runtime, found.rollout_id, device_id, signed.patch_id)
    return signed.path


def _artifact_with_content(
    runtime: Runtime, target: ArtifactRef, content_sha256: str
) -> ArtifactRef | None:
    """The artifact of the target's family and variant whose content hash the device reports."""
    with runtime.database.session() as session:
        artifact_id = session.scalars(
            select(ModelArtifact.id)
            .join(ModelVersion, ModelArtifact.version_id == ModelVersion.id)
            .join(ModelFamily, ModelVersion.family_id == ModelFamily.id)
            .where(
                ModelFamily.name == target.family,
                ModelArtifact.variant == target.variant,
                ModelArtifact.content_sha256 == content_sha256,
            )
            .limit(1)
        ).first()
        if artifact_id is None:
            return None
        return artifact_refs(session, [artifact_id])[artifact_id]


def _note_patch(runtime: Runtime, rollout_id: str, device_id: str, patch_id: str) -> None:
    """Record on the device's update which patch it was offered (bookkeeping: no audit row)."""
    with runtime.database.transaction() as session:
        session.execute(
            update(DeviceUpdate)
            .where(
                DeviceUpdate.rollout_id == rollout_id,
                DeviceUpdate.device_id == device_id,
                or_(DeviceUpdate.patch_id.is_(None), DeviceUpdate.patch_id != patch_id),
            )
            .values(patch_id=patch_id)
            .execution_options(synchronize_session=False)
        )


__all__ = ["get_assignment"]
