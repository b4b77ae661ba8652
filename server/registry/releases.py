"""Releases: build every variant's artifact of a version, store them, sign them into TUF targets.

Building (quantizing, measuring retention) happens before any row is written; the artifacts and
the release become visible in the same transaction that stores the new targets, snapshot and
timestamp metadata, so a device never sees a signed target without its blob or the reverse.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from fedota.delta import load as load_tensors
from fedota.delta import model_hash
from fedota.ml.checkpoint import load_checkpoint
from fedota.ml.variants import MCU_VARIANT, build_variant, variants_of
from fedota.protos.v1 import releases_pb2
from fedota.server import audit, validation
from fedota.server.convert import timestamp
from fedota.server.errors import FailedPrecondition, InvalidArgument
from fedota.server.registry.blob_files import blob_to_file
from fedota.server.registry.refs import find_version, format_ref
from fedota.server.releases import TARGETS, Publication, artifact_target
from fedota.server.runtime import Runtime
from fedota.storage.models import ModelArtifact, ModelVersion, Release, ReleaseState, Variant
from fedota.storage.types import new_id
from fedota.update_targets import artifact_path


@dataclass(frozen=True)
class _Built:
    variant: str
    blob_sha256: str
    size_bytes: int
    content_sha256: str
    metrics: dict[str, float]


def create_release(
    runtime: Runtime, actor: audit.Actor, request: releases_pb2.CreateReleaseRequest
) -> releases_pb2.Release:
    """Build, store and sign a release of `request.version` (`release.create` audited).

    Raises:
        InvalidArgument: a malformed version, an unknown or repeated variant, over-long notes.
        NotFound: the version does not exist.
        FailedPrecondition: the version has no fp32 artifact to build from.
    """
    notes = validation.text(
        "notes", request.notes, runtime.limits.max_description_chars, multiline=True
    )
    with runtime.database.session() as session:
        version = find_version(session, "version", request.version)
        family, number = version.family.name, version.number
        architecture = version.family.architecture
        existing = {a.variant.value: a for a in version.artifacts}
        version_id = version.id
    wanted = _variants(request.variants, architecture)
    source = existing.get("fp32")
    if source is None:
        raise FailedPrecondition(f"{request.version} has no fp32 artifact to build from")
    built = _build(runtime, source.blob_sha256, [v for v in wanted if v not in existing])
    reused = [
        _Built(v, a.blob_sha256, a.size_bytes, a.content_sha256, dict(a.metrics))
        for v, a in existing.items()
        if v in wanted
    ]
    artifacts = sorted(reused + built, key=lambda b: wanted.index(b.variant))
    specs = [
        artifact_target(
            family, number, b.variant, b.content_sha256, length=b.size_bytes, sha256=b.blob_sha256
        )
        for b in artifacts
    ]
    now = runtime.clock()
    release_id = new_id("rel")

    def record(session: Session, publication: Publication) -> None:
        for item in built:
            session.add(
                ModelArtifact(
                    id=new_id("art"),
                    version_id=version_id,
                    variant=Variant(item.variant),
                    blob_sha256=item.blob_sha256,
                    size_bytes=item.size_bytes,
                    content_sha256=item.content_sha256,
                    metrics=item.metrics,
                    created_at=now,
                )
            )
        targets_version = _targets_version(publication)
        session.add(
            Release(
                id=release_id,
                version_id=version_id,
                state=ReleaseState.READY,
                targets_version=targets_version,
                notes=notes,
                created_by=actor.id if actor.type.value == "operator" else None,
                created_at=now,
            )
        )
        audit.record(
            session,
            actor,
            "release.create",
            "release",
            release_id,
            {
                "version": format_ref(family, number),
                "variants": wanted,
                "targets_version": targets_version,
            },
        )

    runtime.tuf.update(lambda repo: repo.update_targets(now, add=specs), actor=actor, also=record)
    with runtime.database.session() as session:
        release = session.get(Release, release_id)
        assert release is not None
        return release_message(session, release)


def list_releases(runtime: Runtime) -> releases_pb2.ListReleasesResponse:
    """Every release, newest first."""
    with runtime.database.session() as session:
        rows = session.scalars(
            select(Release)
            .options(selectinload(Release.version).selectinload(ModelVersion.artifacts))
            .order_by(Release.created_at.desc(), Release.id)
        ).all()
        return releases_pb2.ListReleasesResponse(
            releases=[release_message(session, r) for r in rows]
        )


def release_message(session: Session, release: Release) -> releases_pb2.Release:
    version = release.version
    family = version.family.name
    return releases_pb2.Release(
        id=release.id,
        version=format_ref(family, version.number),
        state=release.state.value,
        targets_version=release.targets_version or 0,
        artifacts=[
            releases_pb2.ModelArtifact(
                variant=a.variant.value,
                size_bytes=a.size_bytes,
                content_sha256=a.content_sha256,
                target_path=artifact_path(family, version.number, a.variant.value),
                metrics={k: float(v) for k, v in a.metrics.items()},
            )
            for a in sorted(version.artifacts, key=lambda a: a.variant.value)
        ],
        notes=release.notes,
        created_at=timestamp(release.created_at),
        created_by=release.created_by or "",
    )


def _variants(requested: Sequence[str], architecture: str) -> list[str]:
    available = variants_of(architecture)
    if not requested:
        return list(available)
    chosen: list[str] = []
    for variant in requested:
        if variant not in available:
            raise InvalidArgument(
                "variants", f"{variant!r} is not one of {', '.join(available)} for {architecture}"
            )
        if variant in chosen:
            raise InvalidArgument("variants", f"{variant} is named twice")
        chosen.append(variant)
    return chosen


def _build(runtime: Runtime, source_blob: str, variants: Sequence[str]) -> list[_Built]:
    if not variants:
        return []
    with tempfile.TemporaryDirectory(dir=runtime.work_dir, prefix="release-") as scratch:
        source = Path(scratch) / "fp32.safetensors"
        blob_to_file(runtime.blobs, source_blob, source)
        checkpoint = load_checkpoint(source)
        built = []
        for variant in variants:
            out = Path(scratch) / f"{variant}.out"
            report = build_variant(checkpoint, variant, out)
            with out.open("rb") as handle:
                blob = runtime.blobs.put_file(handle, max_size=runtime.limits.max_model_bytes)
            built.append(
                _Built(variant, blob.key, blob.size, _content_hash(out, variant), report.metrics)
            )
    return built


def _content_hash(path: Path, variant: str) -> str:
    """The canonical tensor hash; for the mcu-int8 export (no tensors), its bytes' SHA-256."""
    if variant == MCU_VARIANT:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    return model_hash(load_tensors(path))


def _targets_version(publication: Publication) -> int | None:
    versions = [md.version for md in publication.metadata if md.role == TARGETS]
    return versions[-1] if versions else None


__all__ = ["create_release", "list_releases", "release_message"]
