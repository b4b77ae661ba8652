"""An in-memory coordinator for device-daemon tests, over real TLS and mTLS sockets.

Like python-tuf's repository simulator: it implements the Fleet contract the daemon talks to
(a public TLS port for Enroll, a device port that requires a client certificate from the test
CA), records every request, and lets a test change what it answers (accept, revoke, ask for a
renewal, inject a failure) while a real daemon runs against it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import secrets
import socket
import threading
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from google.protobuf import timestamp_pb2

from fedota.protos.v1 import device_pb2, fleet_pb2, fleet_pb2_grpc
from fedota.trust import ENROLLMENT_KIND, new_token

PENDING = device_pb2.DEVICE_STATE_PENDING
ACCEPTED = device_pb2.DEVICE_STATE_ACCEPTED
REJECTED = device_pb2.DEVICE_STATE_REJECTED
REVOKED = device_pb2.DEVICE_STATE_REVOKED


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_sha256(public_key: Any) -> str:
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


class TestCA:
    """A fleet CA with a server certificate for 127.0.0.1, ::1 and localhost."""

    __test__ = False  # not a pytest test class

    def __init__(self, name: str = "fedota test fleet CA") -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = utc_now()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.pem = _pem(self.certificate)
        server_key = ec.generate_private_key(ec.SECP256R1())
        self.server_key_pem = server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        import ipaddress

        san = x509.SubjectAlternativeName(
            [
                x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                x509.IPAddress(ipaddress.ip_address("::1")),
            ]
        )
        server = self._issue(
            server_key.public_key(),
            "fedota test coordinator",
            now - dt.timedelta(hours=1),
            now + dt.timedelta(days=30),
            ExtendedKeyUsageOID.SERVER_AUTH,
            san,
        )
        self.server_chain_pem = _pem(server) + self.pem

    def issue(
        self, public_key: Any, device_id: str, not_before: dt.datetime, not_after: dt.datetime
    ) -> x509.Certificate:
        """A device (client) certificate naming `device_id`."""
        return self._issue(
            public_key, device_id, not_before, not_after, ExtendedKeyUsageOID.CLIENT_AUTH
        )

    def _issue(
        self,
        public_key: Any,
        common_name: str,
        not_before: dt.datetime,
        not_after: dt.datetime,
        usage: x509.ObjectIdentifier,
        san: x509.SubjectAlternativeName | None = None,
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.certificate.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if san is not None:
            builder = builder.add_extension(san, critical=False)
        return builder.sign(self.key, hashes.SHA256())


@dataclass
class FakeDevice:
    id: str
    key_sha256: str
    state: int
    serial: int
    labels: dict[str, str]
    hardware: device_pb2.HardwareProfile
    reason: str = ""
    renew_requested: bool = False


@dataclass
class FakeToken:
    uses_left: int
    auto_accept: bool = False
    expired: bool = False
    revoked: bool = False


@dataclass
class FakeFleet(fleet_pb2_grpc.FleetServicer):
    """The Fleet service's behaviour, in memory. Tests read and change its fields freely."""

    ca: TestCA
    device_port: int = 0
    heartbeat_interval: int = 1
    # Certificates run from now - cert_age to now - cert_age + cert_lifetime.
    cert_lifetime: dt.timedelta = dt.timedelta(days=30)
    cert_age: dt.timedelta = dt.timedelta(minutes=1)
    tokens: dict[str, FakeToken] = field(default_factory=dict)
    devices: dict[str, FakeDevice] = field(default_factory=dict)
    requests: list[tuple[str, Any]] = field(default_factory=list)
    # rpc name -> statuses to fail the next calls with, in order.
    failures: dict[str, list[tuple[grpc.StatusCode, str]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # A misbehaving coordinator: renewals certify this public key instead of the CSR's.
    renewal_key: Any = None

    def mint_token(self, uses: int = 1, *, auto_accept: bool = False) -> str:
        token = new_token(ENROLLMENT_KIND, self.ca.pem)
        self.tokens[token.secret] = FakeToken(uses, auto_accept)
        return str(token)

    def calls(self, rpc: str) -> list[Any]:
        with self.lock:
            return [request for name, request in self.requests if name == rpc]

    def fail_next(self, rpc: str, code: grpc.StatusCode, message: str, times: int = 1) -> None:
        with self.lock:
            self.failures.setdefault(rpc, []).extend([(code, message)] * times)

    def only_device(self) -> FakeDevice:
        (device,) = self.devices.values()
        return device

    # -- the service -----------------------------------------------------------------------

    def Enroll(self, request: fleet_pb2.EnrollRequest, context: grpc.ServicerContext) -> Any:
        self._begin("Enroll", request, context)
        secret = request.token.split(".")[1] if request.token.count(".") == 2 else request.token
        token = self.tokens.get(secret)
        if token is None:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "enrollment token unknown")
        for problem in ("expired", "revoked"):
            if getattr(token, problem):
                context.abort(grpc.StatusCode.UNAUTHENTICATED, f"enrollment token {problem}")
        if token.uses_left <= 0:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "enrollment token exhausted")
        try:
            csr = x509.load_pem_x509_csr(request.csr_pem)
        except ValueError:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "csr_pem is not a PEM PKCS#10 request")
        if not csr.is_signature_valid:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "csr_pem signature is invalid")
        fingerprint = key_sha256(csr.public_key())
        with self.lock:
            for device in self.devices.values():
                if device.key_sha256 == fingerprint:
                    context.abort(
                        grpc.StatusCode.ALREADY_EXISTS,
                        f"this key is already enrolled as device {device.id}",
                    )
            token.uses_left -= 1
            device = FakeDevice(
                id=f"dev_{secrets.token_hex(6)}",
                key_sha256=fingerprint,
                state=ACCEPTED if token.auto_accept else PENDING,
                serial=0,
                labels=dict(request.labels),
                hardware=request.hardware,
            )
            certificate = self._certify(device, csr.public_key())
            self.devices[device.id] = device
        return fleet_pb2.EnrollResponse(
            device_id=device.id,
            state=device.state,
            certificate_pem=_pem(certificate),
            ca_certificate_pem=self.ca.pem,
            certificate_expires_at=_timestamp(certificate.not_valid_after_utc),
            device_host="",
            device_port=self.device_port,
            heartbeat_interval_seconds=self.heartbeat_interval,
        )

    def Heartbeat(self, request: fleet_pb2.HeartbeatRequest, context: grpc.ServicerContext) -> Any:
        device, certificate = self._device("Heartbeat", request, context)
        return fleet_pb2.HeartbeatResponse(
            state=device.state,
            server_time=_timestamp(utc_now()),
            heartbeat_interval_seconds=self.heartbeat_interval,
            certificate_expires_at=_timestamp(certificate.not_valid_after_utc),
            renew_certificate=device.renew_requested,
        )

    def GetDevice(self, request: fleet_pb2.GetDeviceRequest, context: grpc.ServicerContext) -> Any:
        device, _ = self._device("GetDevice", request, context)
        if device.state != ACCEPTED:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"device {device.id} is pending")
        return device_pb2.Device(id=device.id, state=device.state)

    def RenewCertificate(
        self, request: fleet_pb2.RenewCertificateRequest, context: grpc.ServicerContext
    ) -> Any:
        device, _ = self._device("RenewCertificate", request, context)
        csr = x509.load_pem_x509_csr(request.csr_pem)
        if not csr.is_signature_valid:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "csr_pem signature is invalid")
        public_key = self.renewal_key or csr.public_key()
        with self.lock:
            device.key_sha256 = key_sha256(public_key)
            certificate = self._certify(device, public_key)
            device.renew_requested = False
        return fleet_pb2.RenewCertificateResponse(
            certificate_pem=_pem(certificate),
            certificate_expires_at=_timestamp(certificate.not_valid_after_utc),
        )

    # -- internals -------------------------------------------------------------------------

    def _begin(self, rpc: str, request: Any, context: grpc.ServicerContext) -> None:
        with self.lock:
            self.requests.append((rpc, request))
            queued = self.failures.get(rpc)
            failure = queued.pop(0) if queued else None
        if failure is not None:
            context.abort(*failure)

    def _device(
        self, rpc: str, request: Any, context: grpc.ServicerContext
    ) -> tuple[FakeDevice, x509.Certificate]:
        self._begin(rpc, request, context)
        (pem,) = context.auth_context()["x509_pem_cert"]
        certificate = x509.load_pem_x509_certificate(pem)
        with self.lock:
            device = next(
                (d for d in self.devices.values() if d.serial == certificate.serial_number), None
            )
        if device is None:
            context.abort(
                grpc.StatusCode.UNAUTHENTICATED, "device certificate superseded or unknown"
            )
        if device.state in (REJECTED, REVOKED):
            word = "revoked" if device.state == REVOKED else "rejected"
            context.abort(
                grpc.StatusCode.PERMISSION_DENIED, f"device {device.id} is {word}: {device.reason}"
            )
        return device, certificate

    def _certify(self, device: FakeDevice, public_key: Any) -> x509.Certificate:
        not_before = utc_now() - self.cert_age
        certificate = self.ca.issue(
            public_key, device.id, not_before, not_before + self.cert_lifetime
        )
        device.serial = certificate.serial_number
        return certificate


def _timestamp(when: dt.datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(when)
    return stamp


@dataclass(frozen=True)
class CliResult:
    """What one in-process `fedota ...` run produced."""

    code: int
    out: str
    err: str
    log: str


def snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under `directory` with its bytes and mode: to prove nothing changed."""
    if not directory.exists():
        return {}
    return {
        str(path.relative_to(directory)): (path.read_bytes(), os.stat(path).st_mode & 0o777)
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def free_port() -> int:
    """A port that was free a moment ago (for a coordinator that starts later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FakeCoordinator:
    """Serves a FakeFleet on a public TLS port and a device mTLS port of 127.0.0.1."""

    def __init__(self, fleet: FakeFleet, public_port: int = 0, device_port: int = 0) -> None:
        self.fleet = fleet
        self.public_port = public_port
        self.device_port = device_port
        self._servers: list[grpc.Server] = []

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.public_port}"

    def start(self) -> None:
        ca = self.fleet.ca
        identity = [(ca.server_key_pem, ca.server_chain_pem)]
        self.public_port = self._serve(grpc.ssl_server_credentials(identity), self.public_port)
        device_credentials = grpc.ssl_server_credentials(
            identity, root_certificates=ca.pem, require_client_auth=True
        )
        self.device_port = self._serve(device_credentials, self.device_port)
        self.fleet.device_port = self.device_port

    def stop(self) -> None:
        for server in self._servers:
            server.stop(grace=None).wait(5)
        self._servers = []

    def _serve(self, credentials: grpc.ServerCredentials, port: int) -> int:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        fleet_pb2_grpc.add_FleetServicer_to_server(self.fleet, server)
        bound = server.add_secure_port(f"127.0.0.1:{port}", credentials)
        if not bound:
            raise RuntimeError(f"cannot bind 127.0.0.1:{port}")
        server.start()
        self._servers.append(server)
        return bound


@contextmanager
def running(coordinator: FakeCoordinator) -> Iterator[FakeCoordinator]:
    coordinator.start()
    try:
        yield coordinator
    finally:
        coordinator.stop()
