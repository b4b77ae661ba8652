"""A signed update repository and an Updates service for device tests, over real mTLS sockets.

Like python-tuf's repository simulator, but one layer out: `SignedRepository` publishes real TUF
metadata with the coordinator's own `TufRepository` and keeps every file of TUF's layout in
memory; `UpdatesSim` is the Updates gRPC service over it, with the coordinator's contract (chunks
from an offset, NOT_FOUND, OUT_OF_RANGE, an assignment until an outcome is reported). It records
every fetch and report, and lets a test cut a stream, hold one mid-way (to kill the device), or
replace any file to play the attacker. `DeviceCredentials` makes an mTLS identity from the
fleet simulator's test CA; `write_models` real digits checkpoints, a patch between two and a
model that verifies but fails its health check.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import torch
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fleet_simulator import FakeCoordinator, FakeFleet, TestCA, utc_now

from fedota.client.config import DaemonConfig
from fedota.client.endpoint import Endpoint
from fedota.client.identity import Credentials
from fedota.client.transport import FleetConnection
from fedota.delta import diff, load, model_hash
from fedota.ml import digits
from fedota.ml.checkpoint import save_checkpoint
from fedota.protos.v1 import fleet_pb2, fleet_pb2_grpc, updates_pb2, updates_pb2_grpc
from fedota.server.releases import (
    ROLES,
    Publication,
    TargetSpec,
    TufRepository,
    artifact_target,
    generate_signer,
    patch_target,
)
from fedota.update_targets import ArtifactTarget

FAMILY = "digits"
CONFIG = {"inputs": 64, "hidden": [64], "classes": 10}
CHUNK = 4096
ROLLOUT = "ro_test1"
OUTCOME_CODES = (
    updates_pb2.UPDATE_STATUS_HEALTHY,
    updates_pb2.UPDATE_STATUS_FAILED,
    updates_pb2.UPDATE_STATUS_ROLLED_BACK,
)
STATUS_NAMES = {
    value: name.removeprefix("UPDATE_STATUS_").lower()
    for name, value in updates_pb2.UpdateStatus.items()
}


# -- models ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Model:
    """A released checkpoint: its file, bytes and signed artifact description."""

    path: Path
    target: ArtifactTarget

    @property
    def data(self) -> bytes:
        return self.path.read_bytes()


@dataclass(frozen=True)
class Models:
    v1: Model
    v2: Model  # v1 a fine-tune step away
    bad: Model  # v2 with a NaN weight: signed and hashed like any release, fails its health check
    patch: bytes  # v1 -> v2
    bad_patch: bytes  # v1 -> bad


def _module(step: float = 0.0, nan: bool = False) -> torch.nn.Module:
    torch.manual_seed(1)
    module = digits.build(CONFIG).eval()
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter += step * torch.randn(parameter.shape, generator=generator)
        if nan:
            module.layers[0].weight[3, 5] = float("nan")
    return module


def _save(path: Path, module: torch.nn.Module, version: int) -> Model:
    save_checkpoint(
        path, module.state_dict(), architecture=digits.ARCHITECTURE, config=CONFIG, variant="fp32"
    )
    return Model(path, ArtifactTarget(FAMILY, version, "fp32", model_hash(load(path))))


def write_models(directory: Path) -> Models:
    directory.mkdir(parents=True, exist_ok=True)
    v1 = _save(directory / "v1.safetensors", _module(), 1)
    v2 = _save(directory / "v2.safetensors", _module(step=0.01), 2)
    bad = _save(directory / "bad.safetensors", _module(step=0.01, nan=True), 3)

    def patch(base: Model, target: Model) -> bytes:
        return diff(load(base.path), load(target.path), lossless=True).to_bytes()

    return Models(v1, v2, bad, patch(v1, v2), patch(v1, bad))


# -- the signed repository -------------------------------------------------------------------


class SignedRepository:
    """TUF metadata signed by the coordinator's `TufRepository`, and the targets, in memory."""

    def __init__(self, now: dt.datetime | None = None) -> None:
        self.now = now or utc_now()
        signers = {role: generate_signer() for role in ROLES}
        publication = TufRepository.create(signers, self.now)
        self.repository = publication.repository
        self.first_root = publication.metadata[0].data
        self.files: dict[str, bytes] = {}
        self.lock = threading.Lock()
        self._publish(publication)

    def add_artifact(self, model: Model) -> TargetSpec:
        data = model.data
        info = model.target
        spec = artifact_target(
            info.family,
            info.version,
            info.variant,
            info.content_sha256,
            length=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
        )
        return self._add(spec, data)

    def add_patch(self, base: Model, target: Model, data: bytes) -> TargetSpec:
        spec = patch_target(
            base.target.content_sha256,
            target.target,
            length=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
        )
        return self._add(spec, data)

    def serve(self, path: str, data: bytes) -> None:
        """Replace (or add) a file: the attacker's move."""
        with self.lock:
            self.files[path] = data

    def target_file(self, spec: TargetSpec) -> str:
        return f"targets/{spec.served_path}"

    def _add(self, spec: TargetSpec, data: bytes) -> TargetSpec:
        self._publish(self.repository.update_targets(self.now, add=[spec]))
        self.serve(self.target_file(spec), data)
        return spec

    def _publish(self, publication: Publication) -> None:
        self.repository = publication.repository
        with self.lock:
            for md in publication.metadata:
                self.files[f"metadata/{md.filename}"] = md.data


# -- the Updates service ---------------------------------------------------------------------


@dataclass
class Hold:
    """Stop a stream of `path` after `after` bytes until `release` is set; `reached` is set then."""

    after: int
    reached: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)


@dataclass
class UpdatesSim(updates_pb2_grpc.UpdatesServicer):
    """The Updates contract over a `SignedRepository`; tests read and change its fields."""

    repository: SignedRepository
    chunk_size: int = CHUNK
    assignment: updates_pb2.Assignment = field(
        default_factory=lambda: updates_pb2.Assignment(action=updates_pb2.ASSIGNMENT_ACTION_NONE)
    )
    target_content: str = ""
    fetches: list[tuple[str, int]] = field(default_factory=list)
    reports: list[updates_pb2.ReportStatusRequest] = field(default_factory=list)
    # path -> bytes after which the stream fails UNAVAILABLE (once).
    cut_after: dict[str, int] = field(default_factory=dict)
    holds: dict[str, Hold] = field(default_factory=dict)
    # ReportStatus answers UNAVAILABLE while this many calls remain.
    failing_reports: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def assign(
        self,
        target: TargetSpec,
        patch: TargetSpec | None = None,
        rollout: str = ROLLOUT,
        content_sha256: str = "",
    ) -> None:
        """Assign `target` (by `patch` when given) until the device reports an outcome."""
        with self.lock:
            self.assignment = updates_pb2.Assignment(
                action=updates_pb2.ASSIGNMENT_ACTION_INSTALL,
                rollout_id=rollout,
                target_path=target.path,
                patch_path=patch.path if patch is not None else "",
            )
            self.target_content = content_sha256 or target.info.content_sha256  # type: ignore[union-attr]

    def statuses(self) -> list[str]:
        with self.lock:
            return [STATUS_NAMES[report.status] for report in self.reports]

    def outcomes(self) -> list[updates_pb2.ReportStatusRequest]:
        with self.lock:
            return self._outcomes()

    def target_fetches(self) -> list[tuple[str, int]]:
        with self.lock:
            return [(path, offset) for path, offset in self.fetches if path.startswith("targets/")]

    # -- the service -------------------------------------------------------------------------

    def Fetch(
        self, request: updates_pb2.FetchRequest, context: grpc.ServicerContext
    ) -> Iterator[updates_pb2.FetchChunk]:
        with self.lock:
            self.fetches.append((request.path, request.offset))
            data = self.repository.files.get(request.path)
            cut = self.cut_after.pop(request.path, None)
            hold = self.holds.pop(request.path, None)
        if data is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"{request.path} is not in the repository")
        if request.offset > len(data):
            context.abort(grpc.StatusCode.OUT_OF_RANGE, f"offset {request.offset} is past the end")
        position = request.offset
        while position < len(data):
            end = min(position + self.chunk_size, len(data))
            if hold is not None and end > hold.after:
                hold.reached.set()
                hold.release.wait(60)
                context.abort(grpc.StatusCode.UNAVAILABLE, "held stream released")
            if cut is not None and end > cut:
                if cut > position:
                    yield updates_pb2.FetchChunk(data=data[position:cut], total_length=len(data))
                context.abort(grpc.StatusCode.UNAVAILABLE, "the simulated connection dropped")
            yield updates_pb2.FetchChunk(data=data[position:end], total_length=len(data))
            position = end

    def GetAssignment(
        self, request: updates_pb2.GetAssignmentRequest, context: grpc.ServicerContext
    ) -> updates_pb2.Assignment:
        with self.lock:
            assignment = updates_pb2.Assignment()
            assignment.CopyFrom(self.assignment)
            done = any(report.rollout_id == assignment.rollout_id for report in self._outcomes())
            if done or (self.target_content and request.content_sha256 == self.target_content):
                return updates_pb2.Assignment(
                    action=updates_pb2.ASSIGNMENT_ACTION_NONE, rollout_id=assignment.rollout_id
                )
            return assignment

    def ReportStatus(
        self, request: updates_pb2.ReportStatusRequest, context: grpc.ServicerContext
    ) -> updates_pb2.ReportStatusResponse:
        with self.lock:
            if self.failing_reports > 0:
                self.failing_reports -= 1
                context.abort(grpc.StatusCode.UNAVAILABLE, "the coordinator is restarting")
            self.reports.append(request)
        return updates_pb2.ReportStatusResponse()

    def _outcomes(self) -> list[updates_pb2.ReportStatusRequest]:
        """The outcome reports (the caller holds the lock)."""
        return [report for report in self.reports if report.status in OUTCOME_CODES]


# -- identities and servers --------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceCredentials:
    """A device key and certificate from the test CA, as PEM and as the daemon's Credentials."""

    key_pem: bytes
    certificate_pem: bytes
    ca_pem: bytes

    @classmethod
    def issue(cls, ca: TestCA, device_id: str = "dev_ota") -> DeviceCredentials:
        key = ec.generate_private_key(ec.SECP256R1())
        now = utc_now()
        certificate = ca.issue(
            key.public_key(), device_id, now - dt.timedelta(minutes=1), now + dt.timedelta(days=1)
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return cls(key_pem, certificate.public_bytes(serialization.Encoding.PEM), ca.pem)

    def credentials(self) -> Credentials:
        return Credentials.from_pem(self.key_pem, self.certificate_pem, self.ca_pem)

    def write(self, directory: Path) -> Path:
        """key.pem, cert.pem and ca.pem in `directory` (for a device in another process)."""
        directory.mkdir(parents=True, exist_ok=True)
        for name, data in (
            ("key", self.key_pem),
            ("cert", self.certificate_pem),
            ("ca", self.ca_pem),
        ):
            (directory / f"{name}.pem").write_bytes(data)
        return directory


def connect(port: int, device: DeviceCredentials, config: DaemonConfig) -> FleetConnection:
    """A daemon's connection to the device port at 127.0.0.1:`port`, over mTLS."""
    endpoint = Endpoint("127.0.0.1", port)
    connection = FleetConnection(endpoint, device.ca_pem, config)
    connection.use_credentials(endpoint, device.credentials())
    return connection


class UpdatesServer:
    """`UpdatesSim` alone on an mTLS port of 127.0.0.1 (the device port without Fleet)."""

    def __init__(self, ca: TestCA, updates: UpdatesSim) -> None:
        self.updates = updates
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        updates_pb2_grpc.add_UpdatesServicer_to_server(updates, self._server)
        credentials = grpc.ssl_server_credentials(
            [(ca.server_key_pem, ca.server_chain_pem)],
            root_certificates=ca.pem,
            require_client_auth=True,
        )
        self.port = self._server.add_secure_port("127.0.0.1:0", credentials)
        self._server.start()

    def stop(self) -> None:
        for hold in list(self.updates.holds.values()):
            hold.release.set()
        self._server.stop(grace=None).wait(5)


@dataclass
class OtaFleet(FakeFleet):
    """The fake Fleet service, sending the repository's root with every enrollment (or none)."""

    update_root: bytes = b""

    def Enroll(self, request: fleet_pb2.EnrollRequest, context: grpc.ServicerContext) -> Any:
        response = super().Enroll(request, context)
        response.update_root_json = self.update_root
        return response


class OtaCoordinator(FakeCoordinator):
    """The fake coordinator with the Updates service on its device port."""

    def __init__(self, fleet: FakeFleet, updates: UpdatesSim) -> None:
        super().__init__(fleet)
        self.updates = updates

    def _serve(self, credentials: grpc.ServerCredentials, port: int) -> int:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        fleet_pb2_grpc.add_FleetServicer_to_server(self.fleet, server)
        updates_pb2_grpc.add_UpdatesServicer_to_server(self.updates, server)
        bound = server.add_secure_port(f"127.0.0.1:{port}", credentials)
        if not bound:
            raise RuntimeError(f"cannot bind 127.0.0.1:{port}")
        server.start()
        self._servers.append(server)
        return bound

    def stop(self) -> None:
        for hold in list(self.updates.holds.values()):
            hold.release.set()
        super().stop()
