"""The device's identity as plain values, and the checks that make it trustworthy (no I/O).

`IdentityRecord` is what `identity.json` holds; `Credentials` is the key, certificate and CA
together, built only when they belong together.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec

from fedota.client.endpoint import Endpoint
from fedota.client.errors import CertificateExpired
from fedota.client.keys import load_private_key, public_key_der, public_key_sha256

HARDWARE_CLASSES = ("fp32", "int8", "int4", "mcu-int8")


class InvalidCredentials(ValueError):
    """A key, certificate and CA that do not belong together (or do not parse)."""


@dataclass(frozen=True)
class IdentityRecord:
    """Who the device is and where its coordinator listens: the contents of `identity.json`."""

    device_id: str
    coordinator: Endpoint
    device_endpoint: Endpoint
    enrolled_at: dt.datetime
    hardware_class: str

    def to_json(self) -> bytes:
        record = {
            "device_id": self.device_id,
            "coordinator": str(self.coordinator),
            "device_endpoint": str(self.device_endpoint),
            "enrolled_at": self.enrolled_at.astimezone(dt.UTC).isoformat(),
            "hardware_class": self.hardware_class,
        }
        return (json.dumps(record, indent=2) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes) -> IdentityRecord:
        """Parse `identity.json`.

        Raises:
            ValueError: not JSON, a field missing or of the wrong type or form.
        """
        try:
            record: Any = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not JSON ({exc})") from exc
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
        fields = {}
        for name in (
            "device_id",
            "coordinator",
            "device_endpoint",
            "enrolled_at",
            "hardware_class",
        ):
            value = record.get(name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"field {name!r} is missing or not a non-empty string")
            fields[name] = value
        enrolled_at = dt.datetime.fromisoformat(fields["enrolled_at"])
        if enrolled_at.tzinfo is None:
            raise ValueError("field 'enrolled_at' has no time zone")
        return cls(
            device_id=fields["device_id"],
            coordinator=Endpoint.parse(fields["coordinator"]),
            device_endpoint=Endpoint.parse(fields["device_endpoint"]),
            enrolled_at=enrolled_at,
            hardware_class=fields["hardware_class"],
        )


@dataclass(frozen=True)
class Credentials:
    """A device key with a certificate for it, issued directly by the fleet CA."""

    key: ec.EllipticCurvePrivateKey
    key_pem: bytes
    certificate: x509.Certificate
    certificate_pem: bytes
    ca_pem: bytes

    @classmethod
    def from_pem(cls, key_pem: bytes, certificate_pem: bytes, ca_pem: bytes) -> Credentials:
        """Parse and cross-check the three PEM blobs.

        Raises:
            InvalidCredentials: a blob does not parse, the certificate is for another key, or
                the CA did not issue it.
        """
        try:
            key = load_private_key(key_pem)
        except ValueError as exc:
            raise InvalidCredentials(f"device key: {exc}") from exc
        ca = load_certificate(ca_pem, "CA certificate")
        certificate = check_certificate(key, certificate_pem, ca)
        return cls(key, key_pem, certificate, certificate_pem, ca_pem)

    @property
    def not_before(self) -> dt.datetime:
        return self.certificate.not_valid_before_utc

    @property
    def not_after(self) -> dt.datetime:
        return self.certificate.not_valid_after_utc

    @property
    def serial_hex(self) -> str:
        return format(self.certificate.serial_number, "x")

    @property
    def key_sha256(self) -> str:
        return public_key_sha256(self.key.public_key())

    def check_not_expired(self, now: dt.datetime, state_dir: str) -> None:
        """Refuse to use an expired certificate, naming the way out.

        The coordinator's TLS layer refuses an expired certificate at the handshake, which a
        gRPC client only sees as UNAVAILABLE; this check says why instead.

        Raises:
            CertificateExpired: `now` is past the certificate's not_after.
        """
        if now >= self.not_after:
            raise CertificateExpired(
                f"device certificate expired at {self.not_after.isoformat()}; the coordinator "
                f"will refuse it: re-enroll with a new enrollment token (remove {state_dir})"
            )


def load_certificate(pem: bytes, what: str) -> x509.Certificate:
    """Parse one PEM certificate.

    Raises:
        InvalidCredentials: not a PEM certificate.
    """
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise InvalidCredentials(f"{what}: not a PEM certificate") from exc


def check_certificate(
    key: ec.EllipticCurvePrivateKey, certificate_pem: bytes, ca: x509.Certificate
) -> x509.Certificate:
    """Parse a device certificate and check it certifies `key` and was issued by `ca`.

    Raises:
        InvalidCredentials: it does not parse, names another public key, or `ca` did not sign it.
    """
    certificate = load_certificate(certificate_pem, "device certificate")
    if public_key_der(certificate.public_key()) != public_key_der(key.public_key()):
        raise InvalidCredentials(
            f"device certificate is for public key "
            f"{public_key_sha256(certificate.public_key())[:16]}… but the device key is "
            f"{public_key_sha256(key.public_key())[:16]}…"
        )
    if certificate.not_valid_after_utc <= certificate.not_valid_before_utc:
        raise InvalidCredentials("device certificate has an empty validity period")
    try:
        certificate.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise InvalidCredentials(
            f"device certificate was not issued by the fleet CA {ca.subject.rfc4514_string()!r}"
        ) from exc
    return certificate


__all__ = [
    "HARDWARE_CLASSES",
    "Credentials",
    "IdentityRecord",
    "InvalidCredentials",
    "check_certificate",
    "load_certificate",
]
