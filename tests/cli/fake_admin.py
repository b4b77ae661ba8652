"""An in-memory Admin service that behaves like the coordinator's, for testing the operator CLI.

It checks the bearer token, records every request it accepted, pages device listings with a
small page size, and can be told to fail a method with a given status or to stall.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.message import Message

from fedota.protos.v1 import admin_pb2, admin_pb2_grpc, device_pb2
from fedota.trust import ENROLLMENT_KIND, new_token

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def make_device(number: int, **overrides: Any) -> device_pb2.Device:
    """A device as the coordinator would describe it; overrides set fields by name."""
    device = device_pb2.Device(
        id=f"dev-{number:04d}",
        state=device_pb2.DEVICE_STATE_ACCEPTED,
        fleet="default",
        cohort="default",
        hardware_class="fp32",
        hardware=device_pb2.HardwareProfile(
            hardware_class="fp32",
            cpu_model="Test CPU",
            cpu_count=4,
            memory_bytes=8 * 1024**3,
            os="Linux",
            python_version="3.11.7",
            torch_version="2.13.0+cpu",
            daemon_version="0.1.0",
        ),
        certificate_serial=f"{number:x}",
        public_key_sha256="ab" * 32,
    )
    device.enrolled_at.FromDatetime(NOW - dt.timedelta(days=1))
    device.certificate_expires_at.FromDatetime(NOW + dt.timedelta(days=29, hours=12))
    for name, value in overrides.items():
        if isinstance(value, dt.datetime):
            getattr(device, name).FromDatetime(value)
        elif isinstance(value, dict):
            getattr(device, name).update(value)
        else:
            setattr(device, name, value)
    return device


@dataclass
class FakeAdmin(admin_pb2_grpc.AdminServicer):
    api_token: str
    ca_pem: bytes
    devices: list[device_pb2.Device] = field(default_factory=list)
    cohorts: dict[str, admin_pb2.Cohort] = field(default_factory=dict)
    tokens: dict[str, admin_pb2.EnrollmentToken] = field(default_factory=dict)
    max_page_size: int = 2
    # When set, every device page points on to this token (a coordinator stuck in a loop).
    stuck_page_token: str = ""
    # method -> (status, details): that method aborts with it.
    failures: dict[str, tuple[grpc.StatusCode, str]] = field(default_factory=dict)
    # method -> seconds: that method waits this long (or until `release` is set) before answering.
    stalls: dict[str, float] = field(default_factory=dict)
    release: threading.Event = field(default_factory=threading.Event)
    requests: list[tuple[str, Message]] = field(default_factory=list)
    authorizations: list[str] = field(default_factory=list)

    def _enter(self, method: str, request: Message, context: grpc.ServicerContext) -> None:
        metadata = dict(context.invocation_metadata())
        authorization = str(metadata.get("authorization", ""))
        self.authorizations.append(authorization)
        if authorization != f"Bearer {self.api_token}":
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "invalid or missing API token")
        if method in self.stalls:
            self.release.wait(self.stalls[method])
        if method in self.failures:
            context.abort(*self.failures[method])
        self.requests.append((method, request))

    def calls(self, method: str) -> list[Any]:
        """The requests `method` accepted, oldest first."""
        return [request for name, request in self.requests if name == method]

    def CreateCohort(self, request: Any, context: Any) -> admin_pb2.Cohort:
        self._enter("CreateCohort", request, context)
        if request.name in self.cohorts:
            context.abort(grpc.StatusCode.ALREADY_EXISTS, f"cohort {request.name!r} already exists")
        cohort = admin_pb2.Cohort(
            name=request.name, fleet="default", description=request.description
        )
        cohort.created_at.FromDatetime(NOW)
        self.cohorts[request.name] = cohort
        return cohort

    def ListCohorts(self, request: Any, context: Any) -> admin_pb2.ListCohortsResponse:
        self._enter("ListCohorts", request, context)
        return admin_pb2.ListCohortsResponse(cohorts=list(self.cohorts.values()))

    def CreateEnrollmentToken(
        self, request: Any, context: Any
    ) -> admin_pb2.CreateEnrollmentTokenResponse:
        self._enter("CreateEnrollmentToken", request, context)
        info = admin_pb2.EnrollmentToken(
            id=f"tok-{len(self.tokens) + 1}",
            fleet="default",
            cohort=request.cohort or "default",
            max_uses=request.max_uses,
            auto_accept=request.auto_accept,
            created_by="admin",
            labels=dict(request.labels),
        )
        info.created_at.FromDatetime(NOW)
        info.expires_at.FromDatetime(NOW + dt.timedelta(seconds=request.ttl_seconds))
        self.tokens[info.id] = info
        token = str(new_token(ENROLLMENT_KIND, self.ca_pem))
        return admin_pb2.CreateEnrollmentTokenResponse(token=token, info=info)

    def ListEnrollmentTokens(
        self, request: Any, context: Any
    ) -> admin_pb2.ListEnrollmentTokensResponse:
        self._enter("ListEnrollmentTokens", request, context)
        tokens = [t for t in self.tokens.values() if request.include_inactive or not t.revoked]
        return admin_pb2.ListEnrollmentTokensResponse(tokens=tokens)

    def RevokeEnrollmentToken(self, request: Any, context: Any) -> admin_pb2.EnrollmentToken:
        self._enter("RevokeEnrollmentToken", request, context)
        if request.id not in self.tokens:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no enrollment token {request.id!r}")
        self.tokens[request.id].revoked = True
        return self.tokens[request.id]

    def ListDevices(self, request: Any, context: Any) -> admin_pb2.ListDevicesResponse:
        self._enter("ListDevices", request, context)
        matching = [
            d
            for d in self.devices
            if request.state in (device_pb2.DEVICE_STATE_UNSPECIFIED, d.state)
            and request.cohort in ("", d.cohort)
        ]
        start = int(request.page_token or 0)
        size = min(request.page_size or 100, self.max_page_size)
        end = start + size
        next_token = self.stuck_page_token or (str(end) if end < len(matching) else "")
        return admin_pb2.ListDevicesResponse(
            devices=matching[start:end], next_page_token=next_token
        )

    def _device(self, device_id: str, context: Any) -> device_pb2.Device:
        for device in self.devices:
            if device.id == device_id:
                return device
        context.abort(grpc.StatusCode.NOT_FOUND, f"no device {device_id!r}")
        raise AssertionError("abort returns only by raising")

    def GetDevice(self, request: Any, context: Any) -> device_pb2.Device:
        self._enter("GetDevice", request, context)
        return self._device(request.id, context)

    def _change(self, method: str, state: int, request: Any, context: Any) -> device_pb2.Device:
        self._enter(method, request, context)
        device = self._device(request.id, context)
        device.state = state
        device.state_reason = request.reason
        return device

    def AcceptDevice(self, request: Any, context: Any) -> device_pb2.Device:
        return self._change("AcceptDevice", device_pb2.DEVICE_STATE_ACCEPTED, request, context)

    def RejectDevice(self, request: Any, context: Any) -> device_pb2.Device:
        return self._change("RejectDevice", device_pb2.DEVICE_STATE_REJECTED, request, context)

    def RevokeDevice(self, request: Any, context: Any) -> device_pb2.Device:
        return self._change("RevokeDevice", device_pb2.DEVICE_STATE_REVOKED, request, context)


@contextmanager
def serving(servicer: FakeAdmin, key_pem: bytes, chain_pem: bytes) -> Iterator[int]:
    """Serve `servicer` over TLS on 127.0.0.1 at a free port; yield the port, then stop."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    admin_pb2_grpc.add_AdminServicer_to_server(servicer, server)
    port = server.add_secure_port(
        "127.0.0.1:0", grpc.ssl_server_credentials([(key_pem, chain_pem)])
    )
    server.start()
    try:
        yield port
    finally:
        servicer.release.set()
        server.stop(grace=None).wait(timeout=10)
