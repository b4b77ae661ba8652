"""Differential patches between artifacts, computed on demand and cached as blobs.

A patch is lossless (`fedota.delta`, default mode): applying it to the device's artifact gives
the signed target artifact bit for bit, so what a device runs is always a registry artifact.
A patch no smaller than the full artifact is kept in the cache (so it is not computed again)
but never shipped: `worth_shipping` says so and the device downloads the full artifact.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from fedota.delta import diff
from fedota.delta import load as load_tensors
from fedota.delta.codecs import by_id
from fedota.server.registry.blob_files import blob_to_file
from fedota.server.runtime import Runtime
from fedota.storage.blobs import BlobStore
from fedota.storage.models import ModelArtifact, Patch, Variant
from fedota.storage.types import new_id


class PatchUnavailable(Exception):
    """No patch can be made between these artifacts (another variant, or a non-checkpoint)."""


def patch_between(runtime: Runtime, base_id: str, target_id: str) -> Patch:
    """The cached patch from artifact `base_id` to `target_id`, computed now if missing.

    Raises:
        PatchUnavailable: the artifacts are of different variants, or the mcu-int8 export.
        LookupError: an artifact id does not exist.
    """
    with runtime.database.session() as session:
        cached = _cached(session, base_id, target_id)
        if cached is not None:
            return cached
        base = session.get(ModelArtifact, base_id)
        target = session.get(ModelArtifact, target_id)
        if base is None or target is None:
            raise LookupError(f"no artifact {base_id if base is None else target_id}")
        if base.variant != target.variant or target.variant == Variant.MCU_INT8:
            raise PatchUnavailable(
                f"no patch from a {base.variant.value} to a {target.variant.value} artifact"
            )
        base_blob, target_blob = base.blob_sha256, target.blob_sha256
    data, summary = _compute(runtime.blobs, runtime.work_dir, base_blob, target_blob)
    blob = runtime.blobs.put_bytes(data)
    row = Patch(
        id=new_id("pat"),
        base_artifact_id=base_id,
        target_artifact_id=target_id,
        blob_sha256=blob.key,
        size_bytes=blob.size,
        codec_summary=summary,
        created_at=runtime.clock(),
    )
    try:
        with runtime.database.transaction() as session:
            session.add(row)
    except IntegrityError:  # another replica computed the same patch first
        with runtime.database.session() as session:
            cached = _cached(session, base_id, target_id)
            if cached is None:
                raise
            return cached
    return row


class _Sized(Protocol):
    @property
    def size_bytes(self) -> int: ...


def worth_shipping(patch: _Sized, target: _Sized) -> bool:
    """Whether the patch (a Patch row) is smaller than downloading the target (a ModelArtifact
    row or an ArtifactRef) whole."""
    return patch.size_bytes < target.size_bytes


def _cached(session: object, base_id: str, target_id: str) -> Patch | None:
    return session.scalars(  # type: ignore[attr-defined, no-any-return]
        select(Patch).where(
            Patch.base_artifact_id == base_id, Patch.target_artifact_id == target_id
        )
    ).one_or_none()


def _compute(
    blobs: BlobStore, work_dir: Path, base_key: str, target_key: str
) -> tuple[bytes, dict[str, object]]:
    with tempfile.TemporaryDirectory(dir=work_dir, prefix="patch-") as scratch:
        base_path = Path(scratch) / "base.safetensors"
        target_path = Path(scratch) / "target.safetensors"
        blob_to_file(blobs, base_key, base_path)
        blob_to_file(blobs, target_key, target_path)
        patch = diff(load_tensors(base_path), load_tensors(target_path))
    data = patch.to_bytes()
    codecs = Counter(_codec_name(e.codec_id) for e in patch.entries if e.has_payload)
    return data, {"mode": "lossless", "codecs": dict(codecs), "tensors": len(patch.entries)}


def _codec_name(codec_id: int) -> str:
    known = by_id(codec_id)
    return known.name if known is not None else f"codec-{codec_id}"


__all__ = ["PatchUnavailable", "patch_between", "worth_shipping"]
