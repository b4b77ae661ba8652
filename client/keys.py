"""The device key: generated here, kept in the state directory, never sent anywhere.

An EC P-256 key, because one key serves two purposes: the X.509 identity for mTLS with the
coordinator, and (its public half in OpenSSH form) Flower SuperNode authentication, which takes
EC keys.
"""

from __future__ import annotations

import hashlib

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import NameOID

OPENSSH_COMMENT = "fedota-device"


def generate_key() -> ec.EllipticCurvePrivateKey:
    """A fresh EC P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def private_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """PEM PKCS#8, unencrypted: the state directory's 0600 mode is what protects it."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_private_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    """Parse a PEM private key, which must be an EC key.

    Raises:
        ValueError: not a PEM private key, encrypted, or not an EC key.
    """
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (TypeError, ValueError) as exc:
        raise ValueError("not an unencrypted PEM private key") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"not an EC private key (it is {type(key).__name__})")
    return key


def public_key_der(key: PublicKeyTypes) -> bytes:
    """The DER SubjectPublicKeyInfo of a public key."""
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def public_key_sha256(key: PublicKeyTypes) -> str:
    """SHA-256 (hex) of the DER SubjectPublicKeyInfo: how the coordinator names the key too."""
    return hashlib.sha256(public_key_der(key)).hexdigest()


def openssh_public_line(key: ec.EllipticCurvePrivateKey) -> bytes:
    """The public key as one OpenSSH `authorized_keys` line, the form Flower's SuperLink takes."""
    blob = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return blob + f" {OPENSSH_COMMENT}\n".encode()


def build_csr(key: ec.EllipticCurvePrivateKey) -> bytes:
    """A PEM PKCS#10 request signed by `key`: it proves possession of the key to the coordinator.

    The subject is a placeholder naming the key; the coordinator names the device in the
    certificate it issues.
    """
    subject = x509.Name(
        [
            x509.NameAttribute(
                NameOID.COMMON_NAME, f"fedota-device-{public_key_sha256(key.public_key())[:16]}"
            )
        ]
    )
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM)


__all__ = [
    "build_csr",
    "generate_key",
    "load_private_key",
    "openssh_public_line",
    "private_key_pem",
    "public_key_der",
    "public_key_sha256",
]
