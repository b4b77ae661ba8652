"""Bad input on every RPC of fleet.proto and admin.proto: a fitting status, a readable message
naming the field, and a database exactly as it was."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from campaigns_bad_input import CAMPAIGN_CASES
from coordinator_support import (
    TIMEOUT,
    AdminClient,
    EnrolledDevice,
    coordinator_settings,
    device_channel,
    enroll,
    hardware,
    make_csr,
    new_key,
    public_channel,
    snapshot,
)
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from registry_bad_input import REGISTRY_CASES
from rollouts_bad_input import ROLLOUT_CASES

from fedota.protos.v1 import admin_pb2, device_pb2, fleet_pb2
from fedota.server import Coordinator
from fedota.storage.db import Database
from fedota.trust import API_KIND, new_token

INVALID = grpc.StatusCode.INVALID_ARGUMENT
# Length-delimited field 1 announcing 5 bytes but carrying 2: no message type can decode it.
TRUNCATED = b"\x0a\x05ab"
# Field 1 as a string holding invalid UTF-8: proto3 refuses to decode it.
BAD_UTF8 = b"\x0a\x02\xff\xfe"
PUBLIC_FLEET = {"Enroll"}


@dataclass
class World:
    """What the bad requests refer to: a valid token, an accepted and a pending device."""

    coordinator: Coordinator
    token: str
    accepted: EnrolledDevice
    pending: EnrolledDevice


@pytest.fixture(scope="module")
def world(module_db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One coordinator for the whole module: every case proves it leaves the database as it found
    it, so sharing one cannot hide a change."""
    data_dir = tmp_path_factory.mktemp("bad-input")
    coordinator = Coordinator.start(coordinator_settings(data_dir, module_db_url))
    try:
        with public_channel(coordinator) as channel:
            admin = AdminClient(channel, coordinator.admin_token)

            def token(**fields: Any) -> str:
                request = admin_pb2.CreateEnrollmentTokenRequest(
                    ttl_seconds=3600, max_uses=3, **fields
                )
                return str(admin.CreateEnrollmentToken(request).token)

            accepted = enroll(coordinator, token(auto_accept=True))
            pending = enroll(coordinator, token())
            spare = token()
        yield World(coordinator, spare, accepted, pending)
    finally:
        coordinator.stop(grace=0)


@pytest.fixture(scope="module")
def database(module_db_url: str) -> Iterator[Database]:
    db = Database(module_db_url)
    try:
        yield db
    finally:
        db.dispose()


def _tampered_csr() -> bytes:
    """A CSR whose ECDSA signature no longer matches: the last DER byte is part of `s`."""
    csr = x509.load_pem_x509_csr(make_csr(new_key()))
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01
    body = base64.encodebytes(bytes(der))
    return b"-----BEGIN CERTIFICATE REQUEST-----\n" + body + b"-----END CERTIFICATE REQUEST-----\n"


def _enroll(w: World, **fields: Any) -> fleet_pb2.EnrollRequest:
    base: dict[str, Any] = {
        "token": w.token,
        "csr_pem": make_csr(new_key()),
        "hardware": hardware(),
    }
    return fleet_pb2.EnrollRequest(**{**base, **fields})


def _ref(device_id: str) -> admin_pb2.DeviceRef:
    return admin_pb2.DeviceRef(id=device_id)


Case = tuple[str, str, Callable[[World], Any], grpc.StatusCode, str]

CASES: list[Case] = [
    # Fleet.Enroll
    ("Fleet", "Enroll", lambda w: fleet_pb2.EnrollRequest(), INVALID, "token: is required"),
    (
        "Fleet",
        "Enroll",
        lambda w: _enroll(w, token="x" * 201),
        INVALID,
        "token: must be at most 200",
    ),
    ("Fleet", "Enroll", lambda w: _enroll(w, token="hello"), INVALID, "token: not a fedota token"),
    (
        "Fleet",
        "Enroll",
        lambda w: _enroll(w, token=str(new_token(API_KIND, w.coordinator.ca_certificate_pem))),
        INVALID,
        "token: this is not an enrollment token",
    ),
    ("Fleet", "Enroll", lambda w: _enroll(w, token="a\x00b"), INVALID, "token: must not contain"),
    ("Fleet", "Enroll", lambda w: _enroll(w, csr_pem=b""), INVALID, "csr_pem: is required"),
    (
        "Fleet",
        "Enroll",
        lambda w: _enroll(w, csr_pem=b"-" * (16 * 1024 + 1)),
        INVALID,
        "csr_pem: must be at most 16384 bytes",
    ),
    ("Fleet", "Enroll", lambda w: _enroll(w, csr_pem=b"hello"), INVALID, "csr_pem: is not a PEM"),
    (
        "Fleet",
        "Enroll",
        lambda w: _enroll(
            w,
            csr_pem=b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n"
            b"-----END CERTIFICATE REQUEST-----\n",
        ),
        INVALID,
        "csr_pem: is not a valid certificate signing request",
    ),
    (
        "Fleet",
        "Enroll",
        lambda w: _enroll(w, csr_pem=make_csr(rsa.generate_private_key(65537, 2048))),
        INVALID,
        "csr_pem: the key must be EC on P-256, P-384 or P-521 (got RSA-2048)",
    ),
    (
        "Fleet",
        "Enroll",
        lambda w: _enroll(w, csr_pem=make_csr(ed25519.Ed25519PrivateKey.generate())),
        INVALID,
        "(got Ed25519)",
    ),
    (
        "Fleet",
        "Enroll",
        lambda w: _enroll(w, csr_pem=make_csr(new_key(ec.SECP256K1()))),
        INVALID,
        "(got EC secp256k1)",
    ),
    (
        "Fleet",
        "Enroll",
        lambda w: _enroll(w, csr_pem=_tampered_csr()),
        INVALID,
        "csr_pem: its signature does not verify with its own key",
    ),
    (
        "Fleet",
        "Enroll",
        lambda w: _enroll(w, hardware=device_pb2.HardwareProfile()),
        INVALID,
        "hardware.hardware_class: must be one of fp32, int8, int4, mcu-int8 (got '')",
    ),
    (
        "Fleet",
        "Enroll",
        lambda w: _enroll(w, hardware=hardware("gpu")),
        INVALID,
        "hardware.hardware_class: must be one of",
    ),
    (
        "Fleet",
        "Enroll",
        lambda w: _enroll(
            w, hardware=device_pb2.HardwareProfile(hardware_class="int8", os="x" * 256)
        ),
        INVALID,
        "hardware.os: must be at most 255 characters",
    ),
    (
        "Fleet",
        "Enroll",
        lambda w: _enroll(w, labels={f"k{i}": "v" for i in range(33)}),
        INVALID,
        "labels: at most 32 labels",
    ),
    ("Fleet", "Enroll", lambda w: _enroll(w, labels={"Site": "a"}), INVALID, "label key 'Site'"),
    ("Fleet", "Enroll", lambda w: _enroll(w, labels={"": "a"}), INVALID, "label key ''"),
    ("Fleet", "Enroll", lambda w: _enroll(w, labels={"k" * 64: "a"}), INVALID, "must be 1 to 63"),
    (
        "Fleet",
        "Enroll",
        lambda w: _enroll(w, labels={"site": "v" * 256}),
        INVALID,
        "labels[site]: must be at most 255 characters",
    ),
    (
        "Fleet",
        "Enroll",
        lambda w: _enroll(w, labels={"site": "a\x00"}),
        INVALID,
        "labels[site]: must not contain control characters",
    ),
    ("Fleet", "Enroll", lambda w: BAD_UTF8, INVALID, "not a valid fedota.v1.EnrollRequest"),
    # Fleet.Heartbeat
    (
        "Fleet",
        "Heartbeat",
        lambda w: fleet_pb2.HeartbeatRequest(model_version="m" * 256),
        INVALID,
        "model_version: must be at most 255 characters",
    ),
    (
        "Fleet",
        "Heartbeat",
        lambda w: fleet_pb2.HeartbeatRequest(model_version="m\x00"),
        INVALID,
        "model_version: must not contain control characters",
    ),
    ("Fleet", "Heartbeat", lambda w: TRUNCATED, INVALID, "not a valid fedota.v1.HeartbeatRequest"),
    # Fleet.GetDevice
    ("Fleet", "GetDevice", lambda w: TRUNCATED, INVALID, "not a valid fedota.v1.GetDeviceRequest"),
    # Fleet.RenewCertificate
    (
        "Fleet",
        "RenewCertificate",
        lambda w: fleet_pb2.RenewCertificateRequest(),
        INVALID,
        "csr_pem: is required",
    ),
    (
        "Fleet",
        "RenewCertificate",
        lambda w: fleet_pb2.RenewCertificateRequest(csr_pem=b"-" * (16 * 1024 + 1)),
        INVALID,
        "csr_pem: must be at most",
    ),
    (
        "Fleet",
        "RenewCertificate",
        lambda w: fleet_pb2.RenewCertificateRequest(
            csr_pem=make_csr(rsa.generate_private_key(65537, 2048))
        ),
        INVALID,
        "(got RSA-2048)",
    ),
    (
        "Fleet",
        "RenewCertificate",
        lambda w: fleet_pb2.RenewCertificateRequest(csr_pem=_tampered_csr()),
        INVALID,
        "csr_pem: its signature does not verify",
    ),
    ("Fleet", "RenewCertificate", lambda w: TRUNCATED, INVALID, "RenewCertificateRequest"),
    # Admin.CreateCohort
    (
        "Admin",
        "CreateCohort",
        lambda w: admin_pb2.CreateCohortRequest(),
        INVALID,
        "name: '' is not",
    ),
    (
        "Admin",
        "CreateCohort",
        lambda w: admin_pb2.CreateCohortRequest(name="Lab"),
        INVALID,
        "name: 'Lab' is not a cohort name",
    ),
    (
        "Admin",
        "CreateCohort",
        lambda w: admin_pb2.CreateCohortRequest(name="a" * 64),
        INVALID,
        "is not a cohort name (1 to 63",
    ),
    (
        "Admin",
        "CreateCohort",
        lambda w: admin_pb2.CreateCohortRequest(name="lab", description="d" * 501),
        INVALID,
        "description: must be at most 500 characters",
    ),
    (
        "Admin",
        "CreateCohort",
        lambda w: admin_pb2.CreateCohortRequest(name="lab", description="\x00"),
        INVALID,
        "description: must not contain control characters",
    ),
    (
        "Admin",
        "CreateCohort",
        lambda w: admin_pb2.CreateCohortRequest(name="default"),
        grpc.StatusCode.ALREADY_EXISTS,
        "cohort default already exists",
    ),
    ("Admin", "CreateCohort", lambda w: BAD_UTF8, INVALID, "CreateCohortRequest"),
    # Admin.ListCohorts
    ("Admin", "ListCohorts", lambda w: TRUNCATED, INVALID, "ListCohortsRequest"),
    # Admin.CreateEnrollmentToken
    (
        "Admin",
        "CreateEnrollmentToken",
        lambda w: admin_pb2.CreateEnrollmentTokenRequest(),
        INVALID,
        "ttl_seconds: must be between 60 and 31536000 seconds (got 0)",
    ),
    (
        "Admin",
        "CreateEnrollmentToken",
        lambda w: admin_pb2.CreateEnrollmentTokenRequest(ttl_seconds=59, max_uses=1),
        INVALID,
        "(got 59)",
    ),
    (
        "Admin",
        "CreateEnrollmentToken",
        lambda w: admin_pb2.CreateEnrollmentTokenRequest(ttl_seconds=31536001, max_uses=1),
        INVALID,
        "(got 31536001)",
    ),
    (
        "Admin",
        "CreateEnrollmentToken",
        lambda w: admin_pb2.CreateEnrollmentTokenRequest(ttl_seconds=60),
        INVALID,
        "max_uses: must be between 1 and 1000000 (got 0)",
    ),
    (
        "Admin",
        "CreateEnrollmentToken",
        lambda w: admin_pb2.CreateEnrollmentTokenRequest(ttl_seconds=60, max_uses=1_000_001),
        INVALID,
        "(got 1000001)",
    ),
    (
        "Admin",
        "CreateEnrollmentToken",
        lambda w: admin_pb2.CreateEnrollmentTokenRequest(cohort="No!", ttl_seconds=60, max_uses=1),
        INVALID,
        "cohort: 'No!' is not a cohort name",
    ),
    (
        "Admin",
        "CreateEnrollmentToken",
        lambda w: admin_pb2.CreateEnrollmentTokenRequest(
            ttl_seconds=60, max_uses=1, labels={"a b": "c"}
        ),
        INVALID,
        "labels: label key 'a b'",
    ),
    (
        "Admin",
        "CreateEnrollmentToken",
        lambda w: admin_pb2.CreateEnrollmentTokenRequest(cohort="nope", ttl_seconds=60, max_uses=1),
        grpc.StatusCode.NOT_FOUND,
        "cohort nope does not exist",
    ),
    ("Admin", "CreateEnrollmentToken", lambda w: BAD_UTF8, INVALID, "CreateEnrollmentTokenRequest"),
    # Admin.ListEnrollmentTokens
    ("Admin", "ListEnrollmentTokens", lambda w: TRUNCATED, INVALID, "ListEnrollmentTokensRequest"),
    # Admin.RevokeEnrollmentToken
    (
        "Admin",
        "RevokeEnrollmentToken",
        lambda w: admin_pb2.RevokeEnrollmentTokenRequest(),
        INVALID,
        "id: is required",
    ),
    (
        "Admin",
        "RevokeEnrollmentToken",
        lambda w: admin_pb2.RevokeEnrollmentTokenRequest(id=w.accepted.id),
        INVALID,
        "is not an id of the form tok_<hex>",
    ),
    (
        "Admin",
        "RevokeEnrollmentToken",
        lambda w: admin_pb2.RevokeEnrollmentTokenRequest(id="tok_" + "0" * 100),
        INVALID,
        "id: must be at most 40 characters",
    ),
    ("Admin", "RevokeEnrollmentToken", lambda w: BAD_UTF8, INVALID, "RevokeEnrollmentTokenRequest"),
    # Admin.ListDevices
    (
        "Admin",
        "ListDevices",
        lambda w: admin_pb2.ListDevicesRequest(state=99),  # type: ignore[arg-type]
        INVALID,
        "state: 99 is not a DeviceState value",
    ),
    (
        "Admin",
        "ListDevices",
        lambda w: admin_pb2.ListDevicesRequest(page_size=1001),
        INVALID,
        "page_size: must be at most 1000 (got 1001)",
    ),
    (
        "Admin",
        "ListDevices",
        lambda w: admin_pb2.ListDevicesRequest(page_token="garbage!"),
        INVALID,
        "page_token: is not a page token this listing returned",
    ),
    (
        "Admin",
        "ListDevices",
        lambda w: admin_pb2.ListDevicesRequest(page_token="x" * 10_000),
        INVALID,
        "page_token:",
    ),
    (
        "Admin",
        "ListDevices",
        lambda w: admin_pb2.ListDevicesRequest(cohort="UPPER"),
        INVALID,
        "cohort: 'UPPER' is not a cohort name",
    ),
    (
        "Admin",
        "ListDevices",
        lambda w: admin_pb2.ListDevicesRequest(cohort="nope"),
        grpc.StatusCode.NOT_FOUND,
        "cohort nope does not exist",
    ),
    ("Admin", "ListDevices", lambda w: TRUNCATED, INVALID, "ListDevicesRequest"),
    # Admin.GetDevice
    ("Admin", "GetDevice", lambda w: _ref(""), INVALID, "id: is required"),
    ("Admin", "GetDevice", lambda w: _ref("tok_0123"), INVALID, "of the form dev_<hex>"),
    ("Admin", "GetDevice", lambda w: _ref("dev_" + "a" * 60), INVALID, "at most 40 characters"),
    ("Admin", "GetDevice", lambda w: _ref("dev_\n"), INVALID, "id: must not contain"),
    ("Admin", "GetDevice", lambda w: BAD_UTF8, INVALID, "DeviceRef"),
]
for _verb in ("AcceptDevice", "RejectDevice", "RevokeDevice"):
    CASES += [
        ("Admin", _verb, lambda w: admin_pb2.DeviceStateChange(), INVALID, "id: is required"),
        (
            "Admin",
            _verb,
            lambda w: admin_pb2.DeviceStateChange(id="device-1"),
            INVALID,
            "is not an id of the form dev_<hex>",
        ),
        (
            "Admin",
            _verb,
            lambda w: admin_pb2.DeviceStateChange(id=w.pending.id, reason="r" * 501),
            INVALID,
            "reason: must be at most 500 characters (got 501)",
        ),
        (
            "Admin",
            _verb,
            lambda w: admin_pb2.DeviceStateChange(id=w.pending.id, reason="\x00"),
            INVALID,
            "reason: must not contain control characters",
        ),
        ("Admin", _verb, lambda w: BAD_UTF8, INVALID, "DeviceStateChange"),
    ]


CASES += REGISTRY_CASES
CASES += ROLLOUT_CASES
CASES += CAMPAIGN_CASES


def _serialized(payload: Any) -> bytes:
    return payload if isinstance(payload, bytes) else payload.SerializeToString()


def _invoke(w: World, service: str, method: str, payload: Any) -> None:
    path = f"/fedota.v1.{service}/{method}"
    if service == "Fleet" and method not in PUBLIC_FLEET:
        channel_context = device_channel(w.coordinator, w.accepted.key, w.accepted.certificate_pem)
        metadata: list[tuple[str, str]] = []
    else:
        channel_context = public_channel(w.coordinator)
        assert w.coordinator.admin_token is not None
        metadata = [("authorization", f"Bearer {w.coordinator.admin_token}")]
    with channel_context as channel:
        if isinstance(payload, list):  # a client stream
            requests = iter([_serialized(p) for p in payload])
            channel.stream_unary(path)(requests, metadata=metadata, timeout=TIMEOUT)
        else:
            channel.unary_unary(path)(_serialized(payload), metadata=metadata, timeout=TIMEOUT)


def _case_id(case: Case) -> str:
    return f"{case[1]}-{case[4][:40]}"


@pytest.mark.parametrize(
    ("service", "method", "build", "code", "message"), CASES, ids=[_case_id(c) for c in CASES]
)
def test_bad_input_is_refused_and_changes_nothing(
    world: World,
    database: Database,
    service: str,
    method: str,
    build: Callable[[World], Any],
    code: grpc.StatusCode,
    message: str,
) -> None:
    payload = build(world)
    before = snapshot(database)

    with pytest.raises(grpc.RpcError) as raised:
        _invoke(world, service, method, payload)

    error = raised.value
    assert error.code() == code, error.details()
    assert message in error.details()
    assert "Traceback" not in error.details() and "\n" not in error.details()
    assert snapshot(database) == before


def test_every_rpc_of_fleet_and_admin_has_a_bad_input_case() -> None:
    covered = {(service, method) for service, method, *_ in CASES}
    every = {
        (service.name, method.name)
        for descriptor in (fleet_pb2.DESCRIPTOR, admin_pb2.DESCRIPTOR)
        for service in descriptor.services_by_name.values()
        for method in service.methods
    }

    assert every - covered == set()


def test_an_oversized_message_is_refused_by_the_transport(world: World, database: Database) -> None:
    before = snapshot(database)

    with pytest.raises(grpc.RpcError) as raised:
        _invoke(world, "Fleet", "Enroll", _enroll(world, csr_pem=b"-" * (5 * 1024 * 1024)))

    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert snapshot(database) == before
