"""The device's enrollment key as the OpenSSH private key file Flower's SuperNode reads.

One identity serves mTLS with the coordinator and SuperNode authentication: the same EC P-256
key, rewritten in OpenSSH format (Flower's `--auth-supernode-private-key` takes nothing else).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fedota.client.errors import StateError
from fedota.client.keys import load_private_key

FILE_MODE = 0o600


def openssh_private_key(private_key_pem: bytes) -> bytes:
    """The PEM (PKCS#8) EC private key in OpenSSH format, unencrypted.

    Raises:
        ValueError: not an unencrypted PEM EC private key.
    """
    key = load_private_key(private_key_pem)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )


def _holds(path: Path, private_key_pem: bytes) -> bool:
    """Whether `path` is a private file holding this key already (OpenSSH's encoding carries a
    random check number, so equal keys are compared, not bytes)."""
    try:
        if not path.exists() or path.stat().st_mode & 0o077:
            return False
        stored = serialization.load_ssh_private_key(path.read_bytes(), None)
        wanted = load_private_key(private_key_pem)
    except (ValueError, TypeError, OSError):
        return False
    return (
        isinstance(stored, ec.EllipticCurvePrivateKey)
        and stored.private_numbers() == wanted.private_numbers()
    )


def write_openssh_private_key(path: Path, private_key_pem: bytes) -> None:
    """Write the key to `path` (0600 before the first byte, atomic rename), unless the file
    holds this key already.

    Raises:
        StateError: the key is unusable or the file cannot be written.
    """
    try:
        data = openssh_private_key(private_key_pem)
    except ValueError as exc:
        raise StateError(f"the device key cannot authenticate a SuperNode: {exc}") from exc
    try:
        if _holds(path, private_key_pem):
            return
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                os.fchmod(handle.fileno(), FILE_MODE)
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise StateError(f"cannot write {path}: {exc.strerror or exc}") from exc


__all__ = ["openssh_private_key", "write_openssh_private_key"]
