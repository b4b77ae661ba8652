"""The state directory: the device's key, certificate, CA and identity, written crash-safely.

Layout (directory 0700, files 0600):

    device.key     EC P-256 private key, PEM PKCS#8; generated once, never sent anywhere
    device.pub     the public key as an OpenSSH line (for Flower SuperNode authentication)
    device.crt     the current device certificate, PEM
    ca.crt         the fleet CA certificate, PEM
    identity.json  device id, coordinator, device endpoint, enrollment time, hardware class
    update/        the update trust root and verified TUF metadata, downloads in progress and
                   the update agent's records (`fedota.client.update`)
    models/        the A/B model slots (`fedota.client.update.slots`)

Every file is written to a temp file in the directory (mode set before the first byte), fsynced,
renamed over the old one, and the directory fsynced. An enrollment spans three files, so it is
first written whole to `enrollment.journal` and then unpacked; `recover()` finishes an unpacking
that a crash interrupted. `identity.json` is written last: its presence means "enrolled".
"""

from __future__ import annotations

import base64
import json
import logging
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from fedota.client.errors import StateError
from fedota.client.identity import Credentials, IdentityRecord, InvalidCredentials
from fedota.client.keys import generate_key, load_private_key, openssh_public_line, private_key_pem

KEY_FILE = "device.key"
PUBLIC_KEY_FILE = "device.pub"
CERTIFICATE_FILE = "device.crt"
CA_FILE = "ca.crt"
IDENTITY_FILE = "identity.json"
JOURNAL_FILE = "enrollment.journal"
UPDATE_DIR = "update"
FILE_MODE = 0o600
DIR_MODE = 0o700

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Enrollment:
    """An enrolled device as the state directory holds it."""

    record: IdentityRecord
    credentials: Credentials


class StateStore:
    """Reads and writes one state directory; never leaves it worse than it found it."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def __str__(self) -> str:
        return str(self.root)

    @property
    def ca_path(self) -> Path:
        """The fleet CA certificate the device trusts (its SuperNode dials the SuperLink too)."""
        return self.root / CA_FILE

    @property
    def update_dir(self) -> Path:
        """Where the device keeps its update trust root, metadata and downloads."""
        return self.root / UPDATE_DIR

    def load(self) -> Enrollment | None:
        """The enrollment the directory holds, or None when it holds none yet. Writes nothing.

        A journal left by an interrupted enrollment is read as the enrollment it records.

        Raises:
            StateError: the files are unreadable, corrupt, or do not belong together.
        """
        if not self._exists(IDENTITY_FILE):
            if self._exists(JOURNAL_FILE):
                return self._read_journal()
            strays = [n for n in (CERTIFICATE_FILE, CA_FILE) if self._exists(n)]
            if strays:
                raise StateError(
                    f"{self.root} holds {' and '.join(strays)} but no {IDENTITY_FILE}: "
                    "not a state directory this daemon wrote; remove it or pick another --state"
                )
            return None
        try:
            record = IdentityRecord.from_json(self._read(IDENTITY_FILE))
        except ValueError as exc:
            raise StateError(f"{self.root / IDENTITY_FILE} is corrupt: {exc}") from exc
        credentials = self._credentials(
            self._read(CERTIFICATE_FILE), self._read(CA_FILE), CERTIFICATE_FILE
        )
        if self._exists(PUBLIC_KEY_FILE) and self._read(PUBLIC_KEY_FILE) != openssh_public_line(
            credentials.key
        ):
            raise StateError(f"{self.root / PUBLIC_KEY_FILE} does not match {KEY_FILE}")
        return Enrollment(record, credentials)

    def load_key(self) -> ec.EllipticCurvePrivateKey | None:
        """The device key, or None when none was generated yet.

        Raises:
            StateError: the key file is unreadable or not an EC private key.
        """
        if not self._exists(KEY_FILE):
            return None
        self._warn_if_exposed(self.root / KEY_FILE)
        try:
            return load_private_key(self._read(KEY_FILE))
        except ValueError as exc:
            raise StateError(f"{self.root / KEY_FILE} is corrupt: {exc}") from exc

    def create_key(self) -> ec.EllipticCurvePrivateKey:
        """Generate the device key and persist it (and its OpenSSH public line) before use.

        Raises:
            StateError: the directory cannot be created or written.
            RuntimeError: a key exists already (caller misuse).
        """
        if self._exists(KEY_FILE):
            raise RuntimeError(f"{self.root / KEY_FILE} exists; load it instead")
        self._ensure_dir()
        key = generate_key()
        self._write(KEY_FILE, private_key_pem(key))
        self._write(PUBLIC_KEY_FILE, openssh_public_line(key))
        return key

    def commit_enrollment(self, record: IdentityRecord, credentials: Credentials) -> None:
        """Persist a completed enrollment: journal first, then the files, identity.json last.

        `credentials` must carry the key this store holds (as `load_key` gave it).

        Raises:
            StateError: the directory cannot be written.
        """
        journal = {
            "identity": json.loads(record.to_json()),
            "certificate_pem": base64.b64encode(credentials.certificate_pem).decode(),
            "ca_pem": base64.b64encode(credentials.ca_pem).decode(),
        }
        self._write(JOURNAL_FILE, json.dumps(journal).encode())
        self._unpack(record, credentials)

    def recover(self) -> None:
        """Finish what a crash interrupted: unpack a journal, restore a missing device.pub.

        Raises:
            StateError: the journal or key is corrupt, or the directory cannot be written.
        """
        if self._exists(JOURNAL_FILE):
            if self._exists(IDENTITY_FILE):
                self._remove(JOURNAL_FILE)
            else:
                log.info("finishing an enrollment that a crash interrupted")
                enrollment = self._read_journal()
                self._unpack(enrollment.record, enrollment.credentials)
        key = self.load_key()
        if key is not None and not self._exists(PUBLIC_KEY_FILE):
            self._write(PUBLIC_KEY_FILE, openssh_public_line(key))

    def replace_certificate(self, credentials: Credentials) -> None:
        """Install a renewed certificate (same key, checked by the caller) atomically.

        Raises:
            StateError: the file cannot be written.
        """
        self._write(CERTIFICATE_FILE, credentials.certificate_pem)

    # -- internals -------------------------------------------------------------------------

    def _credentials(self, certificate_pem: bytes, ca_pem: bytes, what: str) -> Credentials:
        if self.load_key() is None:
            raise StateError(f"{self.root} is incomplete: {KEY_FILE} is missing")
        try:
            return Credentials.from_pem(self._read(KEY_FILE), certificate_pem, ca_pem)
        except InvalidCredentials as exc:
            raise StateError(f"{self.root} is inconsistent ({what}): {exc}") from exc

    def _read_journal(self) -> Enrollment:
        try:
            journal = json.loads(self._read(JOURNAL_FILE))
            record = IdentityRecord.from_json(json.dumps(journal["identity"]).encode())
            certificate_pem = base64.b64decode(journal["certificate_pem"], validate=True)
            ca_pem = base64.b64decode(journal["ca_pem"], validate=True)
        except (ValueError, KeyError, TypeError) as exc:
            raise StateError(f"{self.root / JOURNAL_FILE} is corrupt: {exc}") from exc
        return Enrollment(record, self._credentials(certificate_pem, ca_pem, JOURNAL_FILE))

    def _unpack(self, record: IdentityRecord, credentials: Credentials) -> None:
        self._write(CERTIFICATE_FILE, credentials.certificate_pem)
        self._write(CA_FILE, credentials.ca_pem)
        self._write(IDENTITY_FILE, record.to_json())
        self._remove(JOURNAL_FILE)

    def _exists(self, name: str) -> bool:
        try:
            return (self.root / name).exists()
        except OSError as exc:  # e.g. a directory this user may not enter
            raise StateError(f"cannot read {self.root}: {exc.strerror}") from exc

    def _read(self, name: str) -> bytes:
        try:
            return (self.root / name).read_bytes()
        except FileNotFoundError as exc:
            raise StateError(f"{self.root} is incomplete: {name} is missing") from exc
        except OSError as exc:
            raise StateError(f"cannot read {self.root / name}: {exc.strerror}") from exc

    def _ensure_dir(self) -> None:
        try:
            if self.root.exists():
                if not self.root.is_dir():
                    raise StateError(f"{self.root} is not a directory")
                self._warn_if_exposed(self.root)
                return
            self.root.parent.mkdir(parents=True, exist_ok=True)
            self.root.mkdir(mode=DIR_MODE)
            os.chmod(self.root, DIR_MODE)  # mkdir's mode is filtered by the umask
        except OSError as exc:
            raise StateError(f"cannot create {self.root}: {exc.strerror}") from exc

    def _write(self, name: str, data: bytes) -> None:
        target = self.root / name
        try:
            fd, temp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=self.root)
        except OSError as exc:
            raise StateError(f"cannot write {target}: {exc.strerror}") from exc
        try:
            with os.fdopen(fd, "wb") as handle:
                os.fchmod(handle.fileno(), FILE_MODE)  # before the first byte of a secret
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, target)
            self._sync_dir()
        except OSError as exc:
            Path(temp).unlink(missing_ok=True)
            raise StateError(f"cannot write {target}: {exc.strerror}") from exc

    def _remove(self, name: str) -> None:
        try:
            (self.root / name).unlink(missing_ok=True)
            self._sync_dir()
        except OSError as exc:
            raise StateError(f"cannot remove {self.root / name}: {exc.strerror}") from exc

    def _sync_dir(self) -> None:
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    @staticmethod
    def _warn_if_exposed(path: Path) -> None:
        try:
            mode = path.stat().st_mode
        except OSError:
            return
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning(
                "%s is accessible to other users (mode %o); chmod go= it", path, mode & 0o777
            )


__all__ = [
    "CA_FILE",
    "CERTIFICATE_FILE",
    "IDENTITY_FILE",
    "JOURNAL_FILE",
    "KEY_FILE",
    "PUBLIC_KEY_FILE",
    "UPDATE_DIR",
    "Enrollment",
    "StateStore",
]
