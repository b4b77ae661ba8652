"""A device's enrollment key in the forms Flower takes.

The coordinator stores each device's public key as PEM (SubjectPublicKeyInfo). Flower's Control API
registers a SuperNode by that PEM; its CLI and the SuperNode's files use OpenSSH lines. Flower takes
ECDSA keys on a NIST curve only (P-256, P-384, P-521), which is what fedota devices generate.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

# The curves Flower's SuperLink accepts for SuperNode authentication.
NIST_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)


class UnsupportedKey(ValueError):
    """A key Flower cannot authenticate a SuperNode with; the message says why."""


def load_node_public_key(data: bytes) -> ec.EllipticCurvePublicKey:
    """Parse a public key given as PEM or as an OpenSSH line, and check Flower can use it.

    Raises:
        UnsupportedKey: not a public key in either form, not EC, or not on a NIST curve.
    """
    text = data.strip()
    try:
        if text.startswith(b"-----BEGIN"):
            key = serialization.load_pem_public_key(text)
        else:
            key = serialization.load_ssh_public_key(text)
    except (ValueError, TypeError) as exc:
        raise UnsupportedKey("not a PEM or OpenSSH public key") from exc
    except Exception as exc:  # cryptography raises UnsupportedAlgorithm for unknown types
        raise UnsupportedKey(f"unsupported public key: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise UnsupportedKey(f"Flower needs an EC key on a NIST curve, not {type(key).__name__}")
    if not isinstance(key.curve, NIST_CURVES):
        raise UnsupportedKey(f"Flower needs a NIST curve (P-256/384/521), not {key.curve.name}")
    return key


def openssh_public_line(public_key_pem: bytes, comment: str = "") -> str:
    """The key as one OpenSSH `.pub` line (`ecdsa-sha2-nistp256 AAAA… comment`).

    Raises:
        UnsupportedKey: as `load_node_public_key`.
    """
    key = load_node_public_key(public_key_pem)
    blob = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return blob.decode() + (f" {comment}" if comment else "")


def canonical_pem(data: bytes) -> bytes:
    """The key as PEM SubjectPublicKeyInfo, the form Flower's Control API stores and returns;
    equal keys give equal bytes whatever form they came in.

    Raises:
        UnsupportedKey: as `load_node_public_key`.
    """
    return load_node_public_key(data).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


__all__ = ["UnsupportedKey", "canonical_pem", "load_node_public_key", "openssh_public_line"]
