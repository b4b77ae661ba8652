"""The fleet CA: its key and certificate on disk, and the certificates it issues.

Devices get short-lived client certificates (CN and a `urn:fedota:device:<id>` URI naming the
device); the coordinator gets a server certificate for its SANs. Both are ECDSA P-256 / SHA-256.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fedota.server.errors import StartupError
from fedota.server.files import PUBLIC_FILE, check_private, write_atomic

CA_KEY = "ca.key"
CA_CERT = "ca.crt"
SERVER_KEY = "server.key"
SERVER_CERT = "server.crt"
DEVICE_URI_PREFIX = "urn:fedota:device:"

PublicKey = ec.EllipticCurvePublicKey


@dataclass(frozen=True)
class FleetCA:
    """The CA key and certificate, loaded from the data directory."""

    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @property
    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of the CA certificate's DER: what tokens pin."""
        return hashlib.sha256(self.certificate.public_bytes(serialization.Encoding.DER)).hexdigest()


def public_key_sha256(key: PublicKey) -> str:
    """Hex SHA-256 of a public key's DER SubjectPublicKeyInfo."""
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def certificate_der_sha256(certificate: x509.Certificate) -> str:
    """Hex SHA-256 of a certificate's DER: how a device credential is looked up."""
    return hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _key_identifiers(key: PublicKey, issuer: PublicKey) -> list[x509.ExtensionType]:
    return [
        x509.SubjectKeyIdentifier.from_public_key(key),
        x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer),
    ]


def create_ca(fleet_name: str, lifetime: dt.timedelta, now: dt.datetime) -> FleetCA:
    """A new self-signed CA that may sign end-entity certificates only (pathlen 0)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fedota"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"fedota fleet CA ({fleet_name})"),
        ]
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + lifetime)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    return FleetCA(key, builder.sign(key, hashes.SHA256()))


def load_or_create_ca(
    data_dir: Path, fleet_name: str, lifetime: dt.timedelta, now: dt.datetime
) -> tuple[FleetCA, bool]:
    """The CA under `data_dir`, created (ca.key 0600, ca.crt) when neither file exists.

    Returns the CA and whether it was created now.

    Raises:
        StartupError: only one of the two files exists, a file is unreadable or not what it
            should be, the key and certificate don't match, or ca.key is readable by others.
        OSError: the directory is not writable.
    """
    key_path, cert_path = data_dir / CA_KEY, data_dir / CA_CERT
    if not key_path.exists() and not cert_path.exists():
        ca = create_ca(fleet_name, lifetime, now)
        write_atomic(key_path, _key_pem(ca.key))
        write_atomic(cert_path, ca.certificate_pem, PUBLIC_FILE)
        return ca, True
    if not key_path.exists() or not cert_path.exists():
        missing = key_path if not key_path.exists() else cert_path
        raise StartupError(f"{missing} is missing (the fleet CA needs both {CA_KEY} and {CA_CERT})")
    try:
        check_private(key_path)
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (ValueError, TypeError, PermissionError) as exc:
        raise StartupError(f"cannot load the fleet CA from {data_dir}: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise StartupError(f"{key_path} is not an EC private key")
    if public_key_sha256(key.public_key()) != public_key_sha256(certificate.public_key()):  # type: ignore[arg-type]
        raise StartupError(f"{key_path} and {cert_path} do not belong together")
    return FleetCA(key, certificate), False


def issue_device_certificate(
    ca: FleetCA,
    public_key: PublicKey,
    device_id: str,
    not_before: dt.datetime,
    not_after: dt.datetime,
) -> x509.Certificate:
    """A client certificate naming `device_id` (CN and SAN URI), valid for mTLS only."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_id)]))
        .issuer_name(ca.certificate.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(DEVICE_URI_PREFIX + device_id)]
            ),
            critical=False,
        )
    )
    for extension in _key_identifiers(public_key, ca.key.public_key()):
        builder = builder.add_extension(extension, critical=False)
    return builder.sign(ca.key, hashes.SHA256())


def _usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def parse_san(text: str) -> x509.GeneralName:
    """An IP address or a DNS name for the server certificate.

    Raises:
        ValueError: empty, or not a plausible DNS name.
    """
    text = text.strip()
    try:
        return x509.IPAddress(ipaddress.ip_address(text))
    except ValueError:
        pass
    if not text or len(text) > 253 or any(c.isspace() or c in "/:@" for c in text):
        raise ValueError(f"{text!r} is neither an IP address nor a DNS name")
    return x509.DNSName(text.lower())


def _server_certificate(
    ca: FleetCA,
    key: ec.EllipticCurvePrivateKey,
    sans: Sequence[x509.GeneralName],
    lifetime: dt.timedelta,
    now: dt.datetime,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fedota coordinator")]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(min(now + lifetime, ca.certificate.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    )
    for extension in _key_identifiers(key.public_key(), ca.key.public_key()):
        builder = builder.add_extension(extension, critical=False)
    return builder.sign(ca.key, hashes.SHA256())


def _current_server_certificate(
    data_dir: Path,
    ca: FleetCA,
    sans: Sequence[x509.GeneralName],
    min_remaining: dt.timedelta,
    now: dt.datetime,
) -> tuple[bytes, bytes] | None:
    """The stored key and certificate PEM if they still fit: same SANs, same CA, time left."""
    key_path, cert_path = data_dir / SERVER_KEY, data_dir / SERVER_CERT
    if not key_path.exists() or not cert_path.exists():
        return None
    try:
        key_pem, cert_pem = key_path.read_bytes(), cert_path.read_bytes()
        certificate = x509.load_pem_x509_certificate(cert_pem)
        stored = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        certificate.verify_directly_issued_by(ca.certificate)
    except (ValueError, TypeError, x509.ExtensionNotFound, OSError):
        return None
    if set(stored) != set(sans) or certificate.not_valid_after_utc - now < min_remaining:
        return None
    return key_pem, cert_pem


def ensure_server_certificate(
    data_dir: Path,
    ca: FleetCA,
    sans: Sequence[x509.GeneralName],
    lifetime: dt.timedelta,
    min_remaining: dt.timedelta,
    now: dt.datetime,
) -> tuple[bytes, bytes]:
    """The coordinator's TLS key and certificate chain (leaf + CA) as PEM.

    Reissued (server.key 0600, server.crt) when missing, not from this CA, for other SANs, or
    with less than `min_remaining` left.

    Raises:
        OSError: the data directory is not writable.
    """
    current = _current_server_certificate(data_dir, ca, sans, min_remaining, now)
    if current is None:
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = _server_certificate(ca, key, sans, lifetime, now)
        current = (_key_pem(key), certificate.public_bytes(serialization.Encoding.PEM))
        write_atomic(data_dir / SERVER_KEY, current[0])
        write_atomic(data_dir / SERVER_CERT, current[1], PUBLIC_FILE)
    key_pem, cert_pem = current
    # The CA travels in the chain so a device holding only the token's pin can find it.
    return key_pem, cert_pem + ca.certificate_pem
