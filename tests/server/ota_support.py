"""What the update-delivery tests share: two small model versions, releases, accepted devices, the
Updates stub as a device, and a python-tuf fetcher over its Fetch stream."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import torch
from coordinator_support import TIMEOUT, AdminClient, EnrolledDevice, device_channel, enroll

from fedota.client.update import RemoteFileMissing, RepositoryFetcher, repository_path
from fedota.delta import load, model_hash
from fedota.ml import digits
from fedota.ml.checkpoint import save_checkpoint
from fedota.protos.v1 import admin_pb2, updates_pb2, updates_pb2_grpc
from fedota.protos.v1 import releases_pb2 as pb
from fedota.server import Coordinator

UPLOAD_CHUNK = 64 * 1024
NONE = updates_pb2.ASSIGNMENT_ACTION_NONE
INSTALL = updates_pb2.ASSIGNMENT_ACTION_INSTALL


def write_versions(directory: Path) -> tuple[Path, Path]:
    """Checkpoints of digits v1 and of v2, v1 with only its output layer changed (what a
    fine-tune of the head ships): a patch between them is far smaller than either."""
    model, _ = digits.train_digits(seed=0, epochs=1)
    v1 = _save(directory / "digits-v1.safetensors", model)
    with torch.no_grad():
        head = model.layers[-1]
        head.weight.add_(0.01 * torch.randn(head.weight.shape, generator=torch.manual_seed(1)))
        head.bias.add_(0.01)
    v2 = _save(directory / "digits-v2.safetensors", model)
    return v1, v2


def _save(path: Path, model: digits.DigitsMLP) -> Path:
    save_checkpoint(
        path,
        model.state_dict(),
        architecture=digits.ARCHITECTURE,
        config=digits.config_of(model),
        variant="fp32",
    )
    return path


def content_hash(path: Path) -> str:
    return model_hash(load(path))


def release(
    admin: AdminClient, checkpoint: Path, ref: str, variants: tuple[str, ...] = ("fp32",)
) -> pb.Release:
    """Import `checkpoint` as the next digits version and release it (`ref` is what it becomes)."""
    data = checkpoint.read_bytes()
    chunks = [
        pb.ImportModelChunk(header=pb.ImportModelHeader(family="digits", size_bytes=len(data)))
    ]
    chunks += [
        pb.ImportModelChunk(data=data[i : i + UPLOAD_CHUNK])
        for i in range(0, len(data), UPLOAD_CHUNK)
    ]
    imported = admin.ImportModel(iter(chunks))
    assert imported.ref == ref
    return admin.CreateRelease(pb.CreateReleaseRequest(version=ref, variants=list(variants)))


def accepted_device(
    coordinator: Coordinator, admin: AdminClient, hardware_class: str = "fp32", cohort: str = ""
) -> EnrolledDevice:
    """A new device enrolled with an auto-accepting token."""
    token = admin.CreateEnrollmentToken(
        admin_pb2.CreateEnrollmentTokenRequest(
            ttl_seconds=3600, max_uses=1, auto_accept=True, cohort=cohort
        )
    ).token
    return enroll(coordinator, token, hardware_class=hardware_class)


def rollout(
    admin: AdminClient, ref: str, stages: list[float], cohort: str = "default", **fields: object
) -> pb.Rollout:
    return admin.CreateRollout(
        pb.CreateRolloutRequest(release=ref, cohort=cohort, stage_percents=stages, **fields)  # type: ignore[arg-type]
    )


@contextmanager
def updates_as(
    coordinator: Coordinator, device: EnrolledDevice | None
) -> Iterator[updates_pb2_grpc.UpdatesStub]:
    """The Updates stub on the device port as `device` (no client certificate for None)."""
    key = device.key if device is not None else None
    certificate = device.certificate_pem if device is not None else None
    with device_channel(coordinator, key, certificate) as channel:
        yield updates_pb2_grpc.UpdatesStub(channel)


def assignment(stub: updates_pb2_grpc.UpdatesStub, content: str = "") -> updates_pb2.Assignment:
    return stub.GetAssignment(
        updates_pb2.GetAssignmentRequest(content_sha256=content), timeout=TIMEOUT
    )


def report(
    stub: updates_pb2_grpc.UpdatesStub,
    rollout_id: str,
    status: int,
    content: str = "",
    reason: str = "",
    bytes_received: int = 0,
) -> None:
    stub.ReportStatus(
        updates_pb2.ReportStatusRequest(
            rollout_id=rollout_id,
            status=status,  # type: ignore[arg-type]
            content_sha256=content,
            reason=reason,
            bytes_received=bytes_received,
        ),
        timeout=TIMEOUT,
    )


def fetch_bytes(stub: updates_pb2_grpc.UpdatesStub, path: str, offset: int = 0) -> bytes:
    chunks = stub.Fetch(updates_pb2.FetchRequest(path=path, offset=offset), timeout=TIMEOUT)
    return b"".join(chunk.data for chunk in chunks)


class UpdatesFetcher(RepositoryFetcher):
    """python-tuf's transport over Updates.Fetch: what a device's verifier reads through."""

    def __init__(self, stub: updates_pb2_grpc.UpdatesStub) -> None:
        self._stub = stub
        # Every repository path asked for, in order.
        self.requested: list[str] = []

    def _fetch(self, url: str) -> Iterator[bytes]:
        return self._fetch_from(url, 0)

    def _fetch_from(self, url: str, offset: int) -> Iterator[bytes]:
        path = repository_path(url)
        self.requested.append(path)
        try:
            chunks = list(
                self._stub.Fetch(
                    updates_pb2.FetchRequest(path=path, offset=offset), timeout=TIMEOUT
                )
            )
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise RemoteFileMissing(path) from None
            raise
        return iter([chunk.data for chunk in chunks])
