"""Real clients for a real coordinator: TLS channels, device identities, database snapshots."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID
from sqlalchemy import select

from fedota.protos.v1 import admin_pb2_grpc, device_pb2, fleet_pb2, fleet_pb2_grpc
from fedota.server import Address, Coordinator, Limits, Settings
from fedota.server.bootstrap import create_operator_token
from fedota.storage.db import Database
from fedota.storage.models import AuditEvent, Base, Operator, Role
from fedota.storage.types import new_id

TIMEOUT = 10.0
LOOPBACK_ANY_PORT = Address("127.0.0.1", 0)
# Small pools: two CPU cores are shared with other test runs.
TEST_THREADS = 8
# Each test channel gets its own connections, so a new certificate really means a new handshake.
CHANNEL_OPTIONS = [("grpc.use_local_subchannel_pool", 1)]


def coordinator_settings(data_dir: Path, db_url: str, **limits: Any) -> Settings:
    """A coordinator on loopback ephemeral ports with a small thread pool."""
    return Settings(
        data_dir=data_dir,
        db_url=db_url,
        listen=LOOPBACK_ANY_PORT,
        device_listen=LOOPBACK_ANY_PORT,
        limits=Limits(**{"thread_pool_size": TEST_THREADS, **limits}),
    )


def new_key(curve: ec.EllipticCurve | None = None) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(curve or ec.SECP256R1())


def key_pem(key: Any) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_csr(key: Any, common_name: str = "device") -> bytes:
    """A PEM CSR signed by `key` (EC, RSA or Ed25519)."""
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .sign(key, algorithm)
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def hardware(hardware_class: str = "fp32", **fields: Any) -> device_pb2.HardwareProfile:
    return device_pb2.HardwareProfile(
        hardware_class=hardware_class,
        cpu_model="test cpu",
        cpu_count=2,
        memory_bytes=1 << 30,
        python_version="3.11",
        **fields,
    )


@contextmanager
def public_channel(coordinator: Coordinator) -> Iterator[grpc.Channel]:
    credentials = grpc.ssl_channel_credentials(root_certificates=coordinator.ca_certificate_pem)
    with grpc.secure_channel(
        f"127.0.0.1:{coordinator.public.port}", credentials, options=CHANNEL_OPTIONS
    ) as channel:
        yield channel


@contextmanager
def device_channel(
    coordinator: Coordinator,
    key: Any | None = None,
    certificate_pem: bytes | None = None,
    root_pem: bytes | None = None,
) -> Iterator[grpc.Channel]:
    """An mTLS channel to the device port (no client certificate when `key` is None)."""
    credentials = grpc.ssl_channel_credentials(
        root_certificates=root_pem or coordinator.ca_certificate_pem,
        private_key=key_pem(key) if key is not None else None,
        certificate_chain=certificate_pem,
    )
    with grpc.secure_channel(
        f"127.0.0.1:{coordinator.device.port}", credentials, options=CHANNEL_OPTIONS
    ) as channel:
        yield channel


class AdminClient:
    """The Admin stub with an API token on every call: `admin.ListDevices(request)`."""

    def __init__(self, channel: grpc.Channel, token: str | None) -> None:
        self._stub = admin_pb2_grpc.AdminStub(channel)
        self._metadata = [("authorization", f"Bearer {token}")] if token is not None else []

    def __getattr__(self, name: str) -> Callable[[Any], Any]:
        method = getattr(self._stub, name)

        def call(request: Any) -> Any:
            return method(request, metadata=self._metadata, timeout=TIMEOUT)

        return call


@dataclass
class EnrolledDevice:
    """A device identity as a daemon would hold it after enrolling."""

    key: Any
    response: fleet_pb2.EnrollResponse
    certificate_pem: bytes = field(init=False)

    def __post_init__(self) -> None:
        self.certificate_pem = self.response.certificate_pem

    @property
    def id(self) -> str:
        return self.response.device_id


def enroll(
    coordinator: Coordinator,
    token: str,
    key: Any | None = None,
    hardware_class: str = "fp32",
    labels: dict[str, str] | None = None,
) -> EnrolledDevice:
    """Enroll over the public port; raises grpc.RpcError when refused."""
    key = key or new_key()
    with public_channel(coordinator) as channel:
        response = fleet_pb2_grpc.FleetStub(channel).Enroll(
            fleet_pb2.EnrollRequest(
                token=token,
                csr_pem=make_csr(key),
                hardware=hardware(hardware_class),
                labels=labels or {},
            ),
            timeout=TIMEOUT,
        )
    return EnrolledDevice(key, response)


@contextmanager
def fleet_as(
    coordinator: Coordinator, device: EnrolledDevice
) -> Iterator[fleet_pb2_grpc.FleetStub]:
    """The Fleet stub on the device port, authenticated by the device's current certificate."""
    with device_channel(coordinator, device.key, device.certificate_pem) as channel:
        yield fleet_pb2_grpc.FleetStub(channel)


def add_operator(database: Database, ca_pem: bytes, role: Role, name: str | None = None) -> str:
    """A new operator with `role`; returns its API token."""
    with database.transaction() as session:
        operator = Operator(id=new_id("op"), name=name or f"{role.value}-{new_id('x')}", role=role)
        session.add(operator)
        session.flush()
        return create_operator_token(session, operator, ca_pem)


def snapshot(
    database: Database, skip: frozenset[str] = frozenset()
) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table (but `skip`), in primary-key order; API token use times are
    bookkeeping and left out."""
    rows: dict[str, list[tuple[Any, ...]]] = {}
    with database.session() as session:
        for table in Base.metadata.sorted_tables:
            if table.name in skip:
                continue
            columns = [c for c in table.columns if c.name != "last_used_at"]
            query = select(*columns).order_by(*table.primary_key.columns)
            rows[table.name] = [tuple(row) for row in session.execute(query)]
    return rows


def audit_actions(database: Database) -> list[tuple[str, str, str]]:
    """(action, actor_type, target_id) of every audit row, oldest first."""
    with database.session() as session:
        return [
            (e.action, e.actor_type.value, e.target_id)
            for e in session.scalars(select(AuditEvent).order_by(AuditEvent.id))
        ]


def rpc_error(call: Callable[[], Any]) -> grpc.RpcError:
    """The RpcError `call` raises (fails the test if it succeeds)."""
    try:
        call()
    except grpc.RpcError as exc:
        return exc
    raise AssertionError("the call succeeded but was expected to be refused")
