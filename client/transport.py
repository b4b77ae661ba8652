"""The one seam between the daemon and the coordinator: channels, stubs, deadlines, errors.

Everything above this module sees typed `ClientError`s, never a `grpc.RpcError`: the status code
of every failed call is mapped here, in `map_error`, and nowhere else.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc

from fedota.client.config import DaemonConfig
from fedota.client.endpoint import Endpoint
from fedota.client.errors import (
    AlreadyEnrolled,
    ClientError,
    CoordinatorFailed,
    CoordinatorUnavailable,
    CredentialRefused,
    DeviceRefused,
    EnrollmentRefused,
    RequestInvalid,
)
from fedota.client.identity import Credentials
from fedota.protos.v1 import fleet_pb2, fleet_pb2_grpc, updates_pb2, updates_pb2_grpc

_Response = TypeVar("_Response")
# A coordinator's error message is shown on one log line; a longer one is cut.
MAX_MESSAGE_CHARS = 500
_INVALID = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.OUT_OF_RANGE,
}


def map_error(error: grpc.RpcError, rpc: str, *, device_port: bool) -> ClientError:
    """The typed error for a failed call of `rpc` (e.g. "Heartbeat").

    UNAUTHENTICATED means a bad enrollment token on the public port and a superseded or unknown
    certificate on the device port, hence `device_port`.
    """
    code: grpc.StatusCode = error.code()  # type: ignore[attr-defined]
    message = " ".join(str(error.details() or code.name).split())  # type: ignore[attr-defined]
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[: MAX_MESSAGE_CHARS - 1] + "…"
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
        return CoordinatorUnavailable("coordinator unavailable", message)
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return CoordinatorUnavailable("coordinator did not answer in time", message)
    if code is grpc.StatusCode.UNAUTHENTICATED:
        if device_port:
            return CredentialRefused(code.name, message, f"device certificate refused: {message}")
        return EnrollmentRefused(code.name, message, f"enrollment refused: {message}")
    if code is grpc.StatusCode.PERMISSION_DENIED:
        return DeviceRefused(code.name, message, f"refused by the coordinator: {message}")
    if code is grpc.StatusCode.ALREADY_EXISTS:
        return AlreadyEnrolled(code.name, message, f"enrollment refused: {message}")
    if code in _INVALID:
        return RequestInvalid(code.name, message, f"{rpc} refused as invalid: {message}")
    return CoordinatorFailed(code.name, message, f"{rpc} failed ({code.name}): {message}")


class FleetConnection:
    """Channels to one coordinator: TLS to its public port, mTLS to its device port.

    Thread-safe `close()` cancels calls in flight, so a daemon can stop promptly.
    """

    def __init__(self, coordinator: Endpoint, ca_pem: bytes, config: DaemonConfig) -> None:
        self._coordinator = coordinator
        self._ca_pem = ca_pem
        self._config = config
        self._lock = threading.Lock()
        self._closed = False
        self._public: grpc.Channel | None = None
        self._device: grpc.Channel | None = None
        self._device_stub: fleet_pb2_grpc.FleetStub | None = None
        self._updates_stub: updates_pb2_grpc.UpdatesStub | None = None

    def enroll(self, request: fleet_pb2.EnrollRequest) -> fleet_pb2.EnrollResponse:
        """Call Fleet.Enroll on the public port (server-authenticated TLS).

        Raises:
            CoordinatorUnavailable, EnrollmentRefused, AlreadyEnrolled, RequestInvalid,
            CoordinatorFailed: as `map_error` maps the call's status.
        """
        credentials = grpc.ssl_channel_credentials(root_certificates=self._ca_pem)
        with self._lock:
            self._check_open()
            if self._public is None:
                self._public = self._open(str(self._coordinator), credentials)
            stub = fleet_pb2_grpc.FleetStub(self._public)
        return self._call("Enroll", stub.Enroll, request, device_port=False)

    def use_credentials(self, device_endpoint: Endpoint, credentials: Credentials) -> None:
        """(Re)open the mTLS channel to the device port with this key and certificate.

        Raises:
            CoordinatorUnavailable: the connection was closed.
        """
        channel_credentials = grpc.ssl_channel_credentials(
            root_certificates=credentials.ca_pem,
            private_key=credentials.key_pem,
            certificate_chain=credentials.certificate_pem,
        )
        with self._lock:
            self._check_open()
            old = self._device
            self._device = self._open(str(device_endpoint), channel_credentials)
            self._device_stub = fleet_pb2_grpc.FleetStub(self._device)
            self._updates_stub = updates_pb2_grpc.UpdatesStub(self._device)
        if old is not None:
            old.close()

    def heartbeat(self, request: fleet_pb2.HeartbeatRequest) -> fleet_pb2.HeartbeatResponse:
        """Call Fleet.Heartbeat on the device port.

        Raises:
            CoordinatorUnavailable, CredentialRefused, DeviceRefused, RequestInvalid,
            CoordinatorFailed: as `map_error` maps the call's status.
            RuntimeError: `use_credentials` was never called.
        """
        return self._call("Heartbeat", self._device_rpc("Heartbeat"), request, device_port=True)

    def renew_certificate(
        self, request: fleet_pb2.RenewCertificateRequest
    ) -> fleet_pb2.RenewCertificateResponse:
        """Call Fleet.RenewCertificate on the device port.

        Raises:
            as `heartbeat`.
        """
        rpc = self._device_rpc("RenewCertificate")
        return self._call("RenewCertificate", rpc, request, device_port=True)

    def get_assignment(self, request: updates_pb2.GetAssignmentRequest) -> updates_pb2.Assignment:
        """Call Updates.GetAssignment on the device port.

        Raises:
            as `heartbeat`.
        """
        rpc = self._device_rpc("GetAssignment", updates=True)
        return self._call("GetAssignment", rpc, request, device_port=True)

    def report_status(
        self, request: updates_pb2.ReportStatusRequest
    ) -> updates_pb2.ReportStatusResponse:
        """Call Updates.ReportStatus on the device port.

        Raises:
            as `heartbeat`.
        """
        rpc = self._device_rpc("ReportStatus", updates=True)
        return self._call("ReportStatus", rpc, request, device_port=True)

    def fetch(self, path: str, offset: int) -> Iterator[updates_pb2.FetchChunk]:
        """Stream Updates.Fetch of a repository file from `offset` (deadline: the download
        timeout, not the per-call one).

        Raises:
            as `heartbeat`, while iterating (a missing file is CoordinatorFailed with code
            NOT_FOUND).
        """
        rpc = self._device_rpc("Fetch", updates=True)
        request = updates_pb2.FetchRequest(path=path, offset=offset)
        try:
            yield from rpc(request, timeout=self._config.download_timeout)
        except grpc.RpcError as exc:
            raise map_error(exc, "Fetch", device_port=True) from exc
        except ValueError as exc:
            raise CoordinatorUnavailable("connection closed", str(exc)) from exc

    def close(self) -> None:
        """Close every channel, cancelling calls in flight; later calls fail as unavailable."""
        with self._lock:
            self._closed = True
            channels = [c for c in (self._public, self._device) if c is not None]
            self._public = self._device = None
            self._device_stub = None
            self._updates_stub = None
        for channel in channels:
            channel.close()

    # -- internals -------------------------------------------------------------------------

    def _open(self, target: str, credentials: grpc.ChannelCredentials) -> grpc.Channel:
        backoff_ms = int(self._config.reconnect_backoff_max * 1000)
        options = [
            ("grpc.max_reconnect_backoff_ms", backoff_ms),
            ("grpc.initial_reconnect_backoff_ms", min(1000, backoff_ms)),
            ("grpc.min_reconnect_backoff_ms", min(1000, backoff_ms)),
        ]
        return grpc.secure_channel(target, credentials, options=options)

    def _check_open(self) -> None:
        if self._closed:
            raise CoordinatorUnavailable("connection closed", "the daemon is stopping")

    def _device_rpc(self, name: str, *, updates: bool = False) -> Callable[..., Any]:
        with self._lock:
            self._check_open()
            stub = self._updates_stub if updates else self._device_stub
            if stub is None:
                raise RuntimeError("FleetConnection.use_credentials() was not called")
            return getattr(stub, name)  # type: ignore[no-any-return]

    def _call(
        self, rpc: str, method: Callable[..., _Response], request: Any, *, device_port: bool
    ) -> _Response:
        try:
            return method(request, timeout=self._config.rpc_timeout)
        except grpc.RpcError as exc:
            raise map_error(exc, rpc, device_port=device_port) from exc
        except ValueError as exc:
            # grpc raises ValueError for a call on a channel that close() just closed.
            raise CoordinatorUnavailable("connection closed", str(exc)) from exc


__all__ = ["FleetConnection", "map_error"]
