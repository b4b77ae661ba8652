"""The Updates gRPC service: repository files, assignments and status reports, for devices.

Every call is authenticated by the device's mTLS certificate and served to accepted devices
only: a pending, rejected or revoked device is PERMISSION_DENIED, a call without a certificate
(the public port) UNAUTHENTICATED.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from fedota.protos.v1 import updates_pb2
from fedota.server import rollouts
from fedota.server.auth import authenticate_device, peer_certificate_pem
from fedota.server.errors import InvalidArgument
from fedota.server.releases.tuf_targets import MAX_TARGET_LENGTH
from fedota.server.runtime import Runtime
from fedota.server.updates.assignments import get_assignment
from fedota.server.updates.fetch import fetch
from fedota.server.updates.patch_targets import PatchTargets
from fedota.storage.models import UpdateState

_REPORTED = {
    updates_pb2.UPDATE_STATUS_DOWNLOADING: UpdateState.DOWNLOADING,
    updates_pb2.UPDATE_STATUS_VERIFYING: UpdateState.VERIFYING,
    updates_pb2.UPDATE_STATUS_APPLYING: UpdateState.APPLYING,
    updates_pb2.UPDATE_STATUS_HEALTH_CHECKING: UpdateState.HEALTH_CHECKING,
    updates_pb2.UPDATE_STATUS_HEALTHY: UpdateState.HEALTHY,
    updates_pb2.UPDATE_STATUS_FAILED: UpdateState.FAILED,
    updates_pb2.UPDATE_STATUS_ROLLED_BACK: UpdateState.ROLLED_BACK,
}


class UpdatesService:
    """Binds fedota.v1.Updates to the update logic (see `rpc.add_service`)."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._patches = PatchTargets(runtime)

    def _device_id(self, context: grpc.ServicerContext) -> str:
        """Raises: Unauthenticated, PermissionDenied (see `authenticate_device`)."""
        with self._runtime.database.session() as session:
            device, _ = authenticate_device(
                session, peer_certificate_pem(context), self._runtime.clock(), allow_pending=False
            )
            return device.id

    def Fetch(
        self, request: updates_pb2.FetchRequest, context: grpc.ServicerContext
    ) -> Iterator[updates_pb2.FetchChunk]:
        self._device_id(context)
        yield from fetch(self._runtime, request)

    def GetAssignment(
        self, request: updates_pb2.GetAssignmentRequest, context: grpc.ServicerContext
    ) -> updates_pb2.Assignment:
        device_id = self._device_id(context)
        return get_assignment(
            self._runtime,
            self._patches,
            device_id,
            request.content_sha256,
            self._runtime.clock(),
        )

    def ReportStatus(
        self, request: updates_pb2.ReportStatusRequest, context: grpc.ServicerContext
    ) -> updates_pb2.ReportStatusResponse:
        device_id = self._device_id(context)
        status = _REPORTED.get(request.status)
        if status is None:
            raise InvalidArgument(
                "status", f"must be one of {', '.join(s.value for s in _REPORTED.values())}"
            )
        if request.bytes_received > MAX_TARGET_LENGTH:
            raise InvalidArgument(
                "bytes_received",
                f"must be at most {MAX_TARGET_LENGTH} (got {request.bytes_received})",
            )
        rollouts.report_status(
            self._runtime.database,
            device_id,
            request.rollout_id,
            status,
            request.reason,
            self._runtime.clock(),
            content_sha256=request.content_sha256,
            bytes_received=request.bytes_received,
        )
        return updates_pb2.ReportStatusResponse()


__all__ = ["UpdatesService"]
