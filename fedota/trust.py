"""Bootstrap trust in a coordinator from a token that pins its fleet CA.

Tokens (enrollment and operator API tokens alike) read `<kind>.<secret>.<ca-sha256>`: the secret
authenticates the holder to the coordinator, and the SHA-256 of the fleet CA certificate (DER)
lets the holder authenticate the coordinator before it has any certificate, the way `kubeadm join`
pins `--discovery-token-ca-cert-hash`. The coordinator presents its chain (leaf + CA) in the TLS
handshake; the holder takes the CA from it only if its hash matches the pin, then verifies the
coordinator normally with that CA.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import socket
import ssl
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization

ENROLLMENT_KIND = "fdte1"
API_KIND = "fdta1"
_TOKEN = re.compile(r"^(?P<kind>fdt[ea]1)\.(?P<secret>[A-Za-z0-9_-]{32,64})\.(?P<ca>[0-9a-f]{64})$")
MAX_CHAIN_BYTES = 64 * 1024


class TrustError(Exception):
    """The coordinator could not be authenticated against the pinned CA."""


class TokenFormatError(ValueError):
    """A token string is not `<kind>.<secret>.<ca-sha256>`."""


@dataclass(frozen=True)
class Token:
    kind: str
    secret: str
    ca_sha256: str

    def __str__(self) -> str:
        return f"{self.kind}.{self.secret}.{self.ca_sha256}"

    @property
    def secret_sha256(self) -> str:
        """What the coordinator stores and looks the token up by."""
        return hashlib.sha256(self.secret.encode()).hexdigest()


def new_token(kind: str, ca_certificate_pem: bytes) -> Token:
    """A fresh token of `kind` (ENROLLMENT_KIND or API_KIND) pinning the given CA."""
    return Token(kind, secrets.token_urlsafe(32), certificate_sha256(ca_certificate_pem))


def parse_token(text: str, kind: str) -> Token:
    """Parse a token string, checking its kind.

    Raises:
        TokenFormatError: not a token, or a token of another kind.
    """
    match = _TOKEN.match(text.strip())
    if match is None:
        raise TokenFormatError("not a fedota token (expected <kind>.<secret>.<ca-sha256>)")
    if match["kind"] != kind:
        wanted = "an enrollment" if kind == ENROLLMENT_KIND else "an operator API"
        raise TokenFormatError(f"this is not {wanted} token (it starts with {match['kind']!r})")
    return Token(match["kind"], match["secret"], match["ca"])


def certificate_sha256(certificate_pem: bytes) -> str:
    """SHA-256 (hex) of a PEM certificate's DER encoding.

    Raises:
        ValueError: not a PEM certificate.
    """
    der = x509.load_pem_x509_certificate(certificate_pem).public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()


def fetch_pinned_ca(host: str, port: int, ca_sha256: str, timeout: float = 10.0) -> bytes:
    """Fetch the coordinator's CA certificate (PEM) and check it against the pin.

    The chain is read without verification on purpose: the pin is the check. The leaf is then
    checked to be signed by the pinned CA, so a man in the middle that replays the real CA
    certificate with its own leaf is caught here, and again by gRPC's own verification later.

    Raises:
        TrustError: no certificate in the chain matches the pin, or the leaf isn't the CA's.
        OSError: the coordinator could not be reached.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection((host, port), timeout=timeout) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        chain = [c.public_bytes(ssl._ssl.ENCODING_DER) for c in tls._sslobj.get_unverified_chain()]  # type: ignore[attr-defined]
    if not chain or sum(len(c) for c in chain) > MAX_CHAIN_BYTES:
        raise TrustError(f"{host}:{port} presented no usable certificate chain")
    for der in chain:
        if hashlib.sha256(der).hexdigest() == ca_sha256:
            ca = x509.load_der_x509_certificate(der)
            leaf = x509.load_der_x509_certificate(chain[0])
            try:
                leaf.verify_directly_issued_by(ca)
            except (ValueError, TypeError) as exc:
                raise TrustError(
                    f"{host}:{port}: its certificate is not issued by the pinned CA"
                ) from exc
            return ca.public_bytes(serialization.Encoding.PEM)
    raise TrustError(
        f"{host}:{port} is not the coordinator this token was made for: "
        f"no certificate in its chain has SHA-256 {ca_sha256[:16]}…"
    )


__all__ = [
    "API_KIND",
    "ENROLLMENT_KIND",
    "Token",
    "TokenFormatError",
    "TrustError",
    "certificate_sha256",
    "fetch_pinned_ca",
    "new_token",
    "parse_token",
]
