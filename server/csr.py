"""Certificate signing requests from devices: parsed, signature-checked, key type enforced."""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from fedota.server.errors import InvalidArgument
from fedota.server.pki import PublicKey, public_key_sha256

# An EC key is what Flower's SuperNode authentication takes, so one key serves mTLS and training.
ALLOWED_CURVES: dict[str, str] = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
_PEM_HEADER = b"-----BEGIN CERTIFICATE REQUEST-----"


@dataclass(frozen=True)
class DeviceKey:
    """The public key a CSR proved possession of."""

    public_key: PublicKey
    sha256: str

    @property
    def pem(self) -> str:
        return self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()


def _describe(key: object) -> str:
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA-{key.key_size}"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}"
    return type(key).__name__


def parse_device_csr(pem: bytes, max_bytes: int, field: str = "csr_pem") -> DeviceKey:
    """Check a PEM PKCS#10 CSR and return the key it proves.

    Raises:
        InvalidArgument: empty, larger than `max_bytes`, not a PEM CSR, a signature that does
            not verify, or a key that is not EC on P-256, P-384 or P-521.
    """
    if not pem:
        raise InvalidArgument(field, "is required (a PEM PKCS#10 certificate signing request)")
    if len(pem) > max_bytes:
        raise InvalidArgument(field, f"must be at most {max_bytes} bytes (got {len(pem)})")
    if _PEM_HEADER not in pem:
        raise InvalidArgument(field, "is not a PEM certificate signing request")
    try:
        csr = x509.load_pem_x509_csr(pem)
        key = csr.public_key()
        signature_ok = csr.is_signature_valid
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise InvalidArgument(field, f"is not a valid certificate signing request ({exc})") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in ALLOWED_CURVES:
        raise InvalidArgument(
            field, f"the key must be EC on P-256, P-384 or P-521 (got {_describe(key)})"
        )
    if not signature_ok:
        raise InvalidArgument(field, "its signature does not verify with its own key")
    return DeviceKey(key, public_key_sha256(key))
