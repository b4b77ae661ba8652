"""Enrollment: trust the coordinator, prove the device key, persist the identity it grants.

Key lifecycle (a deliberate choice): the key is generated once and persisted *before* Enroll is
called, and a retry reuses it. A crash after the coordinator accepted the CSR but before the reply
reached the journal leaves a key the coordinator knows and no certificate; the retry is then
refused with ALREADY_EXISTS, and `AlreadyEnrolled` tells the operator the way out (revoke that
device, remove the state directory, enroll with a new token). The alternative, a fresh key per
attempt, would leave an orphan pending device per crash and hide the problem. Nothing of the
enrollment itself is written until the reply has been checked.

The reply also carries the coordinator's TUF root (`update_root_json`), the trust anchor for model
updates; it is stored (`install_trust_root`) before the identity is committed. A reply without
one (a coordinator older than updates) or with an invalid one does not fail the enrollment: the
coordinator has already certified the key, and refusing now would strand it. The device logs a
warning and, on its first update pass, fetches the repository's first root over the mTLS device
channel instead (`fedota.client.update.trust_bootstrap`), the same coordinator, authenticated by
the same fleet CA, that would have sent it here.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from fedota.client.endpoint import Endpoint
from fedota.client.errors import (
    AlreadyEnrolled,
    CoordinatorUnavailable,
    ProtocolError,
    StateError,
    TokenError,
    UntrustedCoordinator,
    UsageError,
)
from fedota.client.hardware import detect
from fedota.client.identity import Credentials, IdentityRecord, InvalidCredentials
from fedota.client.keys import build_csr, private_key_pem
from fedota.client.store import Enrollment, StateStore
from fedota.client.transport import FleetConnection
from fedota.client.update.trust import install_trust_root
from fedota.client.update.trust_errors import TrustRootInvalid
from fedota.protos.v1 import device_pb2, fleet_pb2
from fedota.trust import (
    ENROLLMENT_KIND,
    TokenFormatError,
    TrustError,
    certificate_sha256,
    fetch_pinned_ca,
    parse_token,
)

log = logging.getLogger(__name__)

STATE_NAMES = {
    device_pb2.DEVICE_STATE_PENDING: "pending",
    device_pb2.DEVICE_STATE_ACCEPTED: "accepted",
    device_pb2.DEVICE_STATE_REJECTED: "rejected",
    device_pb2.DEVICE_STATE_REVOKED: "revoked",
}


@dataclass(frozen=True)
class EnrollOptions:
    """What the operator gave the daemon for enrolling.

    Attributes:
        coordinator: the coordinator's public address (needed to enroll only).
        token: the enrollment token (or its bare secret when `ca_pem` is given).
        ca_pem: a fleet CA to trust instead of the one the token pins.
        hardware_class: overrides the class guessed from memory.
        labels: free-form key/value labels for the device record.
    """

    coordinator: Endpoint | None = None
    token: str | None = None
    ca_pem: bytes | None = None
    hardware_class: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class EnrollResult:
    enrollment: Enrollment
    state: str
    heartbeat_interval: float | None


def state_name(state: int) -> str:
    """The name of a DeviceState value ("pending", "accepted", ...), else "unspecified"."""
    return STATE_NAMES.get(state, "unspecified")  # type: ignore[call-overload]


def bootstrap_ca(options: EnrollOptions, timeout: float) -> bytes:
    """The fleet CA to trust for enrolling: `--ca-cert`, else the one the token pins.

    Reads from the network (the coordinator's TLS chain) but writes nothing.

    Raises:
        UsageError: no coordinator address.
        TokenError: no token, or (without a CA given) a malformed one.
        UntrustedCoordinator: the coordinator's chain does not match the pin, or the given CA
            is not the one the token pins.
        CoordinatorUnavailable: the coordinator could not be reached.
    """
    if options.coordinator is None:
        raise UsageError(
            "not enrolled yet: the coordinator's address is needed (--coordinator or "
            "FEDOTA_COORDINATOR)"
        )
    if not options.token:
        raise TokenError(
            "not enrolled yet: an enrollment token is needed (--token or FEDOTA_ENROLL_TOKEN)"
        )
    try:
        token = parse_token(options.token, ENROLLMENT_KIND)
    except TokenFormatError as exc:
        if options.ca_pem is not None:
            return options.ca_pem  # a bare secret: the CA file is the trust anchor
        raise TokenError(f"{exc}; with --ca-cert, the bare secret is accepted too") from exc
    if options.ca_pem is not None:
        if certificate_sha256(options.ca_pem) != token.ca_sha256:
            raise UntrustedCoordinator(
                f"the token pins fleet CA {token.ca_sha256[:16]}…, but --ca-cert is "
                f"{certificate_sha256(options.ca_pem)[:16]}…: they are for different coordinators"
            )
        return options.ca_pem
    host, port = options.coordinator.host, options.coordinator.port
    try:
        return fetch_pinned_ca(host, port, token.ca_sha256, timeout=timeout)
    except TrustError as exc:
        raise UntrustedCoordinator(f"refusing to enroll: {exc}") from exc
    except OSError as exc:
        raise CoordinatorUnavailable(
            "coordinator unavailable", f"{options.coordinator}: {exc.strerror or exc}"
        ) from exc


def enroll(
    store: StateStore,
    connection: FleetConnection,
    options: EnrollOptions,
    ca_pem: bytes,
    now: dt.datetime,
) -> EnrollResult:
    """Enroll with the device key (generated and persisted first if there is none yet).

    Raises:
        UsageError: no coordinator address.
        StateError: the state directory cannot be used or written.
        EnrollmentRefused, AlreadyEnrolled, RequestInvalid, CoordinatorUnavailable,
        CoordinatorFailed: the coordinator's answer, as FleetConnection maps it.
        ProtocolError: the reply is unusable (no id, a certificate for another key, ...).
    """
    if options.coordinator is None:
        raise UsageError("the coordinator's address is needed to enroll (--coordinator)")
    hardware = detect(options.hardware_class)
    key = store.load_key() or store.create_key()
    request = fleet_pb2.EnrollRequest(
        token=(options.token or "").strip(),
        csr_pem=build_csr(key),
        hardware=device_pb2.HardwareProfile(
            hardware_class=hardware.hardware_class,
            cpu_model=hardware.cpu_model,
            cpu_count=hardware.cpu_count,
            memory_bytes=hardware.memory_bytes,
            os=hardware.os,
            python_version=hardware.python_version,
            torch_version=hardware.torch_version,
            daemon_version=hardware.daemon_version,
        ),
        labels=dict(options.labels),
    )
    try:
        response = connection.enroll(request)
    except AlreadyEnrolled as exc:
        raise AlreadyEnrolled(
            exc.code,
            exc.message,
            f"enrollment refused: {exc.message.rstrip('.')}. The coordinator accepted this key "
            f"earlier but its certificate never reached {store} (the daemon stopped mid-"
            f"enrollment): ask an operator to revoke that device, then remove {store} and "
            "enroll again with a new token",
        ) from exc
    credentials = _check_reply(response, private_key_pem(key), ca_pem)
    keep_update_root(store, response.update_root_json)
    device_host = response.device_host or options.coordinator.host
    record = IdentityRecord(
        device_id=response.device_id,
        coordinator=options.coordinator,
        device_endpoint=Endpoint(device_host, response.device_port),
        enrolled_at=now,
        hardware_class=hardware.hardware_class,
    )
    store.commit_enrollment(record, credentials)
    interval = float(response.heartbeat_interval_seconds) or None
    return EnrollResult(Enrollment(record, credentials), state_name(response.state), interval)


def keep_update_root(store: StateStore, root: bytes) -> bool:
    """Store the coordinator's update trust root from an enrollment reply; False when there is
    none to store (logged: updates then wait for the root the first update pass fetches).

    Raises:
        TrustStateError: (a StateError) the update directory cannot be written.
    """
    if not root:
        log.warning(
            "the coordinator sent no update trust root (it predates model updates); the first "
            "update pass will fetch the repository's root over the device channel"
        )
        return False
    try:
        install_trust_root(store.update_dir, root)
    except TrustRootInvalid as exc:
        log.error(
            "the coordinator's update trust root is unusable (%s); the first update pass will "
            "fetch the repository's root over the device channel instead",
            exc,
        )
        return False
    return True


def check_rerun(enrollment: Enrollment, options: EnrollOptions) -> None:
    """Check the options given to an already enrolled daemon against its identity.

    A token or CA for another fleet is an error; an unneeded token or another coordinator
    address is only noted (the stored identity wins).

    Raises:
        TokenError: the token pins a CA other than the one this device is enrolled under.
        StateError: `--ca-cert` is another CA than the one this device is enrolled under.
    """
    record, stored_ca = enrollment.record, certificate_sha256(enrollment.credentials.ca_pem)
    if options.ca_pem is not None and certificate_sha256(options.ca_pem) != stored_ca:
        raise StateError(
            f"this state directory is enrolled under fleet CA {stored_ca[:16]}… "
            f"(coordinator {record.coordinator}), but --ca-cert is another CA: use another --state"
        )
    if options.token:
        try:
            pinned = parse_token(options.token, ENROLLMENT_KIND).ca_sha256
        except TokenFormatError:
            pinned = stored_ca
        if pinned != stored_ca:
            raise TokenError(
                f"this state directory is enrolled as {record.device_id} with the coordinator at "
                f"{record.coordinator} (fleet CA {stored_ca[:16]}…), but the token is for another "
                f"fleet (CA {pinned[:16]}…): use another --state to enroll there"
            )
        log.info(
            "already enrolled as %s; the enrollment token is not needed and is ignored",
            record.device_id,
        )
    if options.hardware_class and options.hardware_class != record.hardware_class:
        log.warning(
            "the hardware class was fixed at enrollment (%s); --hardware-class %s is ignored",
            record.hardware_class,
            options.hardware_class,
        )
    if options.coordinator is not None and options.coordinator != record.coordinator:
        log.warning(
            "this state directory is enrolled with the coordinator at %s; "
            "--coordinator %s is ignored",
            record.coordinator,
            options.coordinator,
        )


def _check_reply(response: fleet_pb2.EnrollResponse, key_pem: bytes, ca_pem: bytes) -> Credentials:
    if not response.device_id:
        raise ProtocolError("the coordinator's enrollment reply has no device id")
    if not 1 <= response.device_port <= 65535:
        raise ProtocolError(
            f"the coordinator's enrollment reply names device port {response.device_port}"
        )
    if response.ca_certificate_pem:
        try:
            same = certificate_sha256(response.ca_certificate_pem) == certificate_sha256(ca_pem)
        except ValueError:
            same = False
        if not same:
            raise ProtocolError(
                "the coordinator returned a fleet CA other than the one it was trusted by"
            )
    try:
        return Credentials.from_pem(key_pem, response.certificate_pem, ca_pem)
    except InvalidCredentials as exc:
        raise ProtocolError(f"the coordinator's enrollment reply is unusable: {exc}") from exc


__all__ = [
    "EnrollOptions",
    "EnrollResult",
    "bootstrap_ca",
    "check_rerun",
    "enroll",
    "keep_update_root",
    "state_name",
]
