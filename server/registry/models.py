"""Model versions: imported from checkpoint files (campaigns add theirs), immutable, listed."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from fedota.delta import PatchError, model_hash
from fedota.delta import load as load_tensors
from fedota.ml.architectures import (
    InvalidArchitectureConfig,
    UnknownArchitecture,
    build_model,
)
from fedota.ml.checkpoint import CheckpointError, load_checkpoint
from fedota.protos.v1 import releases_pb2
from fedota.server import audit
from fedota.server.convert import timestamp
from fedota.server.errors import AlreadyExists, FailedPrecondition, InvalidArgument
from fedota.server.registry.refs import family_name, find_version, format_ref
from fedota.server.registry.upload import received_file
from fedota.server.runtime import Runtime
from fedota.storage.models import (
    ActorType,
    ModelArtifact,
    ModelFamily,
    ModelVersion,
    Variant,
    VersionSource,
)
from fedota.storage.types import new_id
from fedota.update_targets import artifact_path

MAX_METRICS = 32


def import_model(
    runtime: Runtime, actor: audit.Actor, chunks: Iterator[releases_pb2.ImportModelChunk]
) -> releases_pb2.ModelVersion:
    """Store an uploaded fp32 checkpoint as the family's next version (`model.import` audited).

    Raises:
        InvalidArgument: a bad header or stream (see `received_file`), a file that is not a
            fedota fp32 checkpoint of a known architecture, bad metrics or parent.
        FailedPrecondition: the family exists with another architecture.
        AlreadyExists: the family already has a version with exactly these weights.
        NotFound: the named parent does not exist.
    """
    with received_file(chunks, runtime.work_dir, runtime.limits.max_model_bytes) as (
        header,
        path,
    ):
        family = family_name("header.family", header.family)
        metrics = _metrics(header.metrics)
        architecture, config, content, parameters = _inspect(path)
        with path.open("rb") as handle:
            blob = runtime.blobs.put_file(handle, max_size=runtime.limits.max_model_bytes)
    now = runtime.clock()
    with runtime.database.transaction() as session:
        row = _family(session, family, architecture, config, now)
        clash = session.scalars(
            select(ModelVersion).where(
                ModelVersion.family_id == row.id, ModelVersion.content_sha256 == content
            )
        ).one_or_none()
        if clash is not None:
            raise AlreadyExists(
                f"{format_ref(family, clash.number)} already holds exactly these weights"
            )
        parent = _parent(session, row, header.parent)
        number = (
            session.scalar(
                select(func.max(ModelVersion.number)).where(ModelVersion.family_id == row.id)
            )
            or 0
        ) + 1
        version = ModelVersion(
            id=new_id("mv"),
            family_id=row.id,
            number=number,
            content_sha256=content,
            parent_id=None if parent is None else parent.id,
            source=VersionSource.IMPORT,
            metrics=metrics,
            parameter_count=parameters,
            created_by=actor.id if actor.type == ActorType.OPERATOR else None,
            created_at=now,
        )
        session.add(version)
        session.add(
            ModelArtifact(
                id=new_id("art"),
                version_id=version.id,
                variant=Variant.FP32,
                blob_sha256=blob.key,
                size_bytes=blob.size,
                content_sha256=content,
                metrics={},
                created_at=now,
            )
        )
        ref = format_ref(family, number)
        audit.record(
            session,
            actor,
            "model.import",
            "model_version",
            version.id,
            {"ref": ref, "content_sha256": content, "size_bytes": blob.size},
        )
        session.flush()
        return version_message(session, version)


def list_models(
    runtime: Runtime, request: releases_pb2.ListModelsRequest
) -> releases_pb2.ListModelsResponse:
    """Every version (of one family when named), oldest first.

    Raises:
        InvalidArgument: a malformed family name.
    """
    query = (
        select(ModelVersion)
        .join(ModelFamily, ModelVersion.family_id == ModelFamily.id)
        .order_by(ModelFamily.name, ModelVersion.number)
    )
    if request.family:
        query = query.where(ModelFamily.name == family_name("family", request.family))
    with runtime.database.session() as session:
        versions = session.scalars(query.options(selectinload(ModelVersion.artifacts))).all()
        return releases_pb2.ListModelsResponse(
            versions=[version_message(session, v) for v in versions]
        )


def get_model(runtime: Runtime, request: releases_pb2.ModelRef) -> releases_pb2.ModelVersion:
    """Raises:
    InvalidArgument, NotFound: see `find_version`.
    """
    with runtime.database.session() as session:
        return version_message(session, find_version(session, "ref", request.ref))


def version_message(session: Session, version: ModelVersion) -> releases_pb2.ModelVersion:
    """The wire form of a version, its artifacts and their signed target paths included."""
    family = version.family
    parent = session.get(ModelVersion, version.parent_id) if version.parent_id else None
    return releases_pb2.ModelVersion(
        ref=format_ref(family.name, version.number),
        family=family.name,
        number=version.number,
        content_sha256=version.content_sha256,
        parent="" if parent is None else format_ref(parent.family.name, parent.number),
        source=version.source.value,
        parameter_count=version.parameter_count,
        architecture=family.architecture,
        metrics={k: float(v) for k, v in version.metrics.items()},
        artifacts=[
            releases_pb2.ModelArtifact(
                variant=a.variant.value,
                size_bytes=a.size_bytes,
                content_sha256=a.content_sha256,
                target_path=artifact_path(family.name, version.number, a.variant.value),
                metrics={k: float(v) for k, v in a.metrics.items()},
            )
            for a in sorted(version.artifacts, key=lambda a: a.variant.value)
        ],
        created_at=timestamp(version.created_at),
        created_by=version.created_by or "",
    )


def _inspect(path: Path) -> tuple[str, dict[str, object], str, int]:
    """(architecture, config, canonical content hash, parameter count) of an fp32 checkpoint."""
    try:
        checkpoint = load_checkpoint(path)
        content = model_hash(load_tensors(path))
    except (CheckpointError, PatchError) as exc:
        # The message names the coordinator's temp file: say "the file" instead.
        reason = _short(exc).replace(f"{path}: ", "").replace(str(path), "the file")
        raise InvalidArgument("data", f"not a fedota checkpoint: {reason}") from None
    if checkpoint.variant != "fp32":
        raise InvalidArgument(
            "data", f"import takes fp32 weights (releases build the rest), got {checkpoint.variant}"
        )
    try:
        model = build_model(checkpoint.architecture, checkpoint.config)
        model.load_state_dict(checkpoint.tensors, strict=True)
    except (UnknownArchitecture, InvalidArchitectureConfig) as exc:
        raise InvalidArgument("data", str(exc)) from None
    except RuntimeError as exc:
        raise InvalidArgument(
            "data", f"the weights do not fit {checkpoint.architecture}: {_short(exc)}"
        ) from None
    parameters = sum(t.numel() for t in checkpoint.tensors.values())
    return checkpoint.architecture, checkpoint.config, content, parameters


def _family(
    session: Session, name: str, architecture: str, config: dict[str, object], now: object
) -> ModelFamily:
    row = session.scalars(select(ModelFamily).where(ModelFamily.name == name)).one_or_none()
    if row is None:
        row = ModelFamily(
            id=new_id("fam"),
            name=name,
            architecture=architecture,
            architecture_config=config,
            created_at=now,
        )
        session.add(row)
        session.flush()
    elif row.architecture != architecture or row.architecture_config != config:
        raise FailedPrecondition(
            f"family {name} holds {row.architecture} models of another shape; "
            "import this file under a new family"
        )
    return row


def _parent(session: Session, family: ModelFamily, ref: str) -> ModelVersion | None:
    if ref:
        parent = find_version(session, "header.parent", ref)
        if parent.family_id != family.id:
            raise InvalidArgument("header.parent", f"{ref} is not a version of {family.name}")
        return parent
    return session.scalars(
        select(ModelVersion)
        .where(ModelVersion.family_id == family.id)
        .order_by(ModelVersion.number.desc())
        .limit(1)
    ).one_or_none()


def _metrics(values: Mapping[str, float]) -> dict[str, float]:
    if len(values) > MAX_METRICS:
        raise InvalidArgument("header.metrics", f"at most {MAX_METRICS} metrics")
    for key, value in values.items():
        if not 0 < len(key) <= 63 or not key.isprintable():
            raise InvalidArgument("header.metrics", f"{key[:80]!r} is not a metric name")
        if not math.isfinite(value):
            raise InvalidArgument("header.metrics", f"{key} must be a finite number")
    return dict(values)


def _short(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) <= 300 else text[:297] + "..."


__all__ = ["get_model", "import_model", "list_models", "version_message"]
