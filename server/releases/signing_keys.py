"""TUF signing keys at rest: Ed25519 keys sealed with AES-256-GCM under a coordinator secret.

The secret is a 32-byte random key file, `signing.key` (mode 0600) in the coordinator's data
directory, next to the fleet CA's `ca.key`. A key file rather than a passphrase: the coordinator
starts unattended (containers, replicas, restarts) with nobody to type one, and a random 256-bit
key needs no slow derivation. The point is that the database alone (a dump, a backup, a read
replica, a PostgreSQL host) never holds a usable private key: it takes the database *and* the
data directory. Replicas share the file the way they share `ca.key`.

From the secret, HKDF-SHA256 derives two values under separate labels: the AES-256-GCM key, and a
16-byte key-check value stored with every sealed key. A sealed key whose check value differs was
sealed under another secret (`WrongCoordinatorSecret`); one whose check matches but does not
decrypt, or does not match its public key, was changed at rest (`SealedKeyTampered`). The role
and key id are the GCM associated data, so a sealed key moved to another row does not open.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hmac
import json
import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from securesystemslib.signer import CryptoSigner, SSlibKey

from fedota.server.releases.errors import (
    CoordinatorSecretError,
    SealedKeyTampered,
    WrongCoordinatorSecret,
)

SECRET_FILE = "signing.key"
SECRET_BYTES = 32
SEALED_FORMAT = "fedota-sealed-ed25519-v1"
_NONCE_BYTES = 12
_CHECK_BYTES = 16
_ENCRYPTION_LABEL = b"fedota signing-key encryption v1"
_CHECK_LABEL = b"fedota signing-key check v1"


def _derive(secret: bytes, label: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=label).derive(secret)


class CoordinatorSecret:
    """The 32-byte secret that seals signing keys; its bytes never appear in repr or str.

    Raises (on construction):
        CoordinatorSecretError: not exactly 32 bytes.
    """

    def __init__(self, secret: bytes) -> None:
        if len(secret) != SECRET_BYTES:
            raise CoordinatorSecretError(
                f"a coordinator secret is {SECRET_BYTES} bytes, got {len(secret)}"
            )
        self._aead = AESGCM(_derive(secret, _ENCRYPTION_LABEL, 32))
        self.check_value = _derive(secret, _CHECK_LABEL, _CHECK_BYTES).hex()

    def __repr__(self) -> str:
        return f"CoordinatorSecret(check={self.check_value[:8]}…)"

    @classmethod
    def load(cls, path: Path) -> CoordinatorSecret:
        """Read the secret file.

        Raises:
            CoordinatorSecretError: missing, unreadable, readable by group or others, or not
                32 bytes.
        """
        try:
            mode = path.stat().st_mode & 0o777
            if mode & 0o077:
                raise CoordinatorSecretError(
                    f"{path} has mode {mode:o}; it holds the key that seals the TUF signing keys "
                    "and must be 0600"
                )
            data = path.read_bytes()
        except FileNotFoundError:
            raise CoordinatorSecretError(
                f"{path} is missing: copy it from the data directory of the coordinator that "
                "created the signing keys"
            ) from None
        except OSError as e:
            raise CoordinatorSecretError(f"cannot read {path}: {e.strerror}") from None
        if len(data) != SECRET_BYTES:
            raise CoordinatorSecretError(f"{path} must hold {SECRET_BYTES} bytes, has {len(data)}")
        return cls(data)

    @classmethod
    def create(cls, path: Path) -> CoordinatorSecret:
        """Write a new random secret to `path` (0600); never replaces an existing file.

        The bytes go to a temp file that is fsynced and then hard-linked into place, so a crash
        leaves no partial secret and two processes racing to create it end with one secret.

        Raises:
            CoordinatorSecretError: `path` already exists, or the directory is not writable.
        """
        secret = secrets.token_bytes(SECRET_BYTES)
        try:
            fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            try:
                os.fchmod(fd, 0o600)
                with os.fdopen(fd, "wb") as handle:
                    handle.write(secret)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.link(tmp_name, path)
            finally:
                os.unlink(tmp_name)
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except FileExistsError:
            raise CoordinatorSecretError(f"{path} already exists; refusing to replace it") from None
        except OSError as e:
            raise CoordinatorSecretError(f"cannot write {path}: {e.strerror}") from None
        return cls(secret)

    @classmethod
    def load_or_create(cls, data_dir: Path) -> CoordinatorSecret:
        """The secret in `data_dir/signing.key`, created on first use.

        Raises:
            CoordinatorSecretError: as `load` and `create`.
        """
        path = Path(data_dir) / SECRET_FILE
        if not path.exists():
            try:
                return cls.create(path)
            except CoordinatorSecretError:
                if not path.exists():
                    raise
                # Another process created it between the check and the link: use theirs.
        return cls.load(path)

    # -- sealing -------------------------------------------------------------------------------

    def _aad(self, role: str, keyid: str) -> bytes:
        return f"{SEALED_FORMAT}|{role}|{keyid}".encode()

    def seal(self, role: str, signer: CryptoSigner) -> SealedKey:
        """Encrypt `signer`'s private key for storage.

        Raises:
            ValueError: the signer does not hold an Ed25519 key.
        """
        private = load_pem_private_key(signer.private_bytes, password=None)
        if not isinstance(private, Ed25519PrivateKey):
            raise ValueError(f"only Ed25519 keys are sealed, got {type(private).__name__}")
        keyid = signer.public_key.keyid
        nonce = secrets.token_bytes(_NONCE_BYTES)
        ciphertext = self._aead.encrypt(nonce, private.private_bytes_raw(), self._aad(role, keyid))
        envelope = {
            "format": SEALED_FORMAT,
            "check": self.check_value,
            "nonce": base64.b64encode(nonce).decode(),
            "ciphertext": base64.b64encode(ciphertext).decode(),
        }
        return SealedKey(
            role=role,
            keyid=keyid,
            public_key=signer.public_key.to_dict(),
            encrypted_private_key=json.dumps(envelope, sort_keys=True),
        )

    def unseal(self, sealed: SealedKey) -> CryptoSigner:
        """Decrypt a sealed key into a signer.

        Raises:
            WrongCoordinatorSecret: it was sealed under another secret.
            SealedKeyTampered: the envelope, ciphertext, role, key id or public key was changed.
        """
        keyid = sealed.keyid

        def tampered(what: str) -> SealedKeyTampered:
            return SealedKeyTampered(
                f"signing key {keyid} ({sealed.role}) was changed at rest: {what}", keyid=keyid
            )

        try:
            envelope = json.loads(sealed.encrypted_private_key)
            if not isinstance(envelope, dict) or envelope.get("format") != SEALED_FORMAT:
                raise tampered(f"not a {SEALED_FORMAT} envelope")
            check = str(envelope["check"])
            nonce = base64.b64decode(envelope["nonce"], validate=True)
            ciphertext = base64.b64decode(envelope["ciphertext"], validate=True)
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise tampered("the envelope does not parse") from None
        if not hmac.compare_digest(check.encode(), self.check_value.encode()):
            raise WrongCoordinatorSecret(
                f"signing key {keyid} ({sealed.role}) was sealed under another coordinator "
                f"secret (check {check[:8]}…, loaded {self.check_value[:8]}…): use the "
                f"{SECRET_FILE} of the coordinator that created it",
                keyid=keyid,
            )
        try:
            raw = self._aead.decrypt(nonce, ciphertext, self._aad(sealed.role, keyid))
        except (InvalidTag, ValueError):
            raise tampered("the ciphertext, role or key id does not authenticate") from None
        try:
            private = Ed25519PrivateKey.from_private_bytes(raw)
            public = SSlibKey.from_dict(keyid, copy.deepcopy(dict(sealed.public_key)))
            return CryptoSigner(private, public)
        except (ValueError, KeyError, TypeError) as e:  # KeyMismatchError is a ValueError
            raise tampered(f"the public key does not match ({type(e).__name__})") from None


@dataclass(frozen=True)
class SealedKey:
    """A signing key as stored (the columns of `SigningKey`); the private half is encrypted."""

    role: str
    keyid: str
    public_key: dict[str, Any]
    encrypted_private_key: str


def generate_signer() -> CryptoSigner:
    """A new Ed25519 signing key."""
    return CryptoSigner.generate_ed25519()


__all__ = [
    "SECRET_FILE",
    "CoordinatorSecret",
    "SealedKey",
    "generate_signer",
]
