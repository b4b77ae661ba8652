"""The device's trust in updates: python-tuf's ngclient over a fedota fetcher, in its state dir.

Layout under the device's update directory (0700; files 0600):

    trusted_root.json    the trust anchor: the root the device received at enrollment
    metadata/            python-tuf's verified metadata (root_history/, timestamp.json, ...)

Every `refresh()` runs the TUF client workflow from the anchor with a new `Updater`: newer roots
one by one (each signed by the threshold of the previous root's keys and its own), then
timestamp, snapshot and targets, each checked for signatures, expiry, version rollback and the
length and hashes the role above signed. Only verified metadata is written to `metadata/`. A
target is looked up in the verified targets, its fedota fields are parsed and checked, and a
download is capped at its signed length and kept only if it hashes to the signed value.

One `TrustedUpdates` per metadata directory at a time (python-tuf's rule): the daemon owns it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tuf.api import exceptions as tuf_errors
from tuf.api.metadata import Metadata, Root, TargetFile
from tuf.api.serialization import DeserializationError
from tuf.ngclient import Updater, UpdaterConfig

from fedota.client.update.durable import atomic_file
from fedota.client.update.fetcher import DEFAULT_REPOSITORY_URL, RepositoryFetcher
from fedota.client.update.target_download import Progress, download_verified, matches
from fedota.client.update.trust_errors import (
    OversizedData,
    TargetInfoInvalid,
    TargetNotSigned,
    TrustRootInvalid,
    TrustStateError,
    translate,
)
from fedota.update_targets import FedotaTarget, TargetInfoError, parse_target

TRUSTED_ROOT_FILE = "trusted_root.json"
METADATA_DIR = "metadata"
_DIR_MODE = 0o700
_MIB = 1024 * 1024


@dataclass(frozen=True)
class TrustConfig:
    """Byte caps for what the device accepts, and how many root versions one refresh may walk.

    Metadata caps apply where no signed length exists (root, timestamp) or on top of it;
    `max_target_bytes` refuses a signed target larger than the device will ever store.

    Raises (on construction):
        ValueError: a cap or count is not positive.
    """

    root_max_bytes: int = 512 * 1024
    timestamp_max_bytes: int = 16 * 1024
    snapshot_max_bytes: int = 2 * _MIB
    targets_max_bytes: int = 8 * _MIB
    max_root_rotations: int = 32
    max_target_bytes: int = 16 * 1024 * _MIB

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

    def updater_config(self) -> UpdaterConfig:
        """python-tuf's configuration for these limits (a new object each call)."""
        return UpdaterConfig(
            max_root_rotations=self.max_root_rotations,
            max_delegations=1,
            root_max_length=self.root_max_bytes,
            timestamp_max_length=self.timestamp_max_bytes,
            snapshot_max_length=self.snapshot_max_bytes,
            targets_max_length=self.targets_max_bytes,
            prefix_targets_with_hash=True,
        )


@dataclass(frozen=True)
class SignedTarget:
    """A target as the verified targets metadata signs it, with its fedota fields parsed."""

    path: str
    length: int
    hashes: dict[str, str]
    info: FedotaTarget

    @property
    def sha256(self) -> str:
        return self.hashes["sha256"]

    @property
    def served_path(self) -> str:
        """Its file under consistent snapshots: `<dir>/<sha256>.<basename>`."""
        directory, sep, name = self.path.rpartition("/")
        return f"{directory}{sep}{self.sha256}.{name}"

    @classmethod
    def from_target_file(cls, target: TargetFile) -> SignedTarget:
        """Read a verified TargetFile.

        Raises:
            TargetInfoInvalid: no sha256 hash, or fedota fields that break the contract.
        """
        if "sha256" not in target.hashes:
            raise TargetInfoInvalid(f"target {target.path!r} is signed without a sha256 hash")
        try:
            info = parse_target(target.path, target.custom)
        except TargetInfoError as e:
            raise TargetInfoInvalid(f"target {target.path!r}: {e}") from None
        return cls(target.path, target.length, dict(target.hashes), info)


def install_trust_root(update_dir: Path, root: bytes) -> None:
    """Make `root` the device's trust anchor (`trusted_root.json`), replacing any earlier one.

    Raises:
        TrustRootInvalid: `root` is not a TUF root signed by its own threshold of keys.
        TrustStateError: the directory cannot be written.
    """
    _verify_self_signed(root)
    try:
        _ensure_dir(update_dir)
        with atomic_file(update_dir / TRUSTED_ROOT_FILE) as file:
            file.write(root)
    except OSError as e:
        raise TrustStateError(f"cannot store the trusted root in {update_dir}: {e}") from None


class TrustedUpdates:
    """Verified update metadata and targets for one device.

    Raises (on construction):
        TrustStateError: no trust root (neither given nor installed), an invalid one, or a
            metadata directory that cannot be written.
    """

    def __init__(
        self,
        update_dir: Path,
        fetcher: RepositoryFetcher,
        *,
        trust_root: bytes | None = None,
        repository_url: str = DEFAULT_REPOSITORY_URL,
        config: TrustConfig | None = None,
    ) -> None:
        self.update_dir = Path(update_dir)
        self.metadata_dir = self.update_dir / METADATA_DIR
        self.config = config or TrustConfig()
        self._fetcher = fetcher
        base = repository_url if repository_url.endswith("/") else repository_url + "/"
        self._metadata_url = base + "metadata/"
        self._targets_url = base + "targets/"
        self._root = self._read_anchor() if trust_root is None else trust_root
        _verify_self_signed(self._root)
        try:
            _ensure_dir(self.update_dir)
            _ensure_dir(self.metadata_dir)
        except OSError as e:
            raise TrustStateError(f"cannot use {self.metadata_dir}: {e}") from None
        # Refreshed successfully and not since failed: what lookups read from.
        self._fresh: Updater | None = None

    def refresh(self) -> None:
        """Fetch and verify the newest metadata (TUF client workflow 5.3 to 5.6).

        Raises:
            RepositoryRejected: a subclass naming the check that failed (nothing of the bad
                metadata was stored).
            RepositoryUnavailable: the repository could not be reached.
            TrustStateError: the metadata directory cannot be written.
        """
        self._fresh = None
        with _translated("loading the trusted root"):
            updater = _DurableUpdater(
                str(self.metadata_dir),
                self._metadata_url,
                fetcher=self._fetcher,
                config=self.config.updater_config(),
                bootstrap=self._root,
            )
        try:
            updater.refresh()
        except (tuf_errors.RepositoryError, tuf_errors.DownloadError, OSError) as e:
            where = f" ({updater.loading})" if updater.loading else ""
            raise translate(e, f"refreshing update metadata{where}") from None
        self._fresh = updater

    def target_info(self, path: str) -> SignedTarget:
        """The signed description of `path` (refreshing first when no refresh succeeded yet).

        Raises:
            TargetNotSigned: the verified targets metadata does not list `path`.
            TargetInfoInvalid: its fedota fields are missing or invalid.
            As `refresh`.
        """
        if self._fresh is None:
            self.refresh()
        assert self._fresh is not None
        with _translated(f"looking up {path}"):
            target = self._fresh.get_targetinfo(path)
        if target is None:
            raise TargetNotSigned(path)
        return SignedTarget.from_target_file(target)

    def download(self, path: str, dest: Path, progress: Progress | None = None) -> SignedTarget:
        """Download the signed target `path` to `dest`, verified, resuming a cut transfer.

        A `dest` that already holds exactly the signed bytes is kept without a download; any
        other file at `dest` is replaced, but only once the new bytes are verified.
        `progress(received, length)` follows the transfer (for status reports).

        Raises:
            OversizedData: the signed length exceeds `config.max_target_bytes`, or the transport
                sent more than it.
            HashMismatch: the bytes are not the signed ones (nothing kept).
            RepositoryUnavailable: the transfer failed or was cut (the part file is kept).
            TrustStateError: `dest` cannot be written.
            As `target_info`.
        """
        target = self.target_info(path)
        if target.length > self.config.max_target_bytes:
            raise OversizedData(
                f"target {path!r} is signed at {target.length} bytes, more than this device's "
                f"cap of {self.config.max_target_bytes}"
            )
        if not matches(dest, target):
            url = self._targets_url + target.served_path
            download_verified(self._fetcher, url, target, dest, progress)
        return target

    def trusted_versions(self) -> dict[str, int]:
        """The version of each role's verified metadata stored on disk (for status reports)."""
        versions = {}
        for role in ("root", "timestamp", "snapshot", "targets"):
            try:
                data = (self.metadata_dir / f"{role}.json").read_bytes()
                versions[role] = Metadata.from_bytes(data).signed.version
            except (OSError, tuf_errors.RepositoryError):
                continue
        return versions

    def _read_anchor(self) -> bytes:
        path = self.update_dir / TRUSTED_ROOT_FILE
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise TrustStateError(
                f"{path} is missing: the device has no trusted update root (enroll again, or "
                "install the root the coordinator published)"
            ) from None
        except OSError as e:
            raise TrustStateError(f"cannot read {path}: {e}") from None


class _DurableUpdater(Updater):
    """python-tuf's Updater, with each verified file fsynced before and after its rename.

    python-tuf renames a temp file into place without fsync; after a power cut such a file may
    be empty. It would be re-fetched (local metadata that does not verify is ignored), but a lost
    timestamp or snapshot also loses the rollback protection it gave, so it is made durable.
    """

    # The role whose file was fetched last, so an error can say which file failed.
    loading: str = ""

    def _persist_file(self, filename: str, data: bytes) -> None:
        with atomic_file(Path(filename)) as file:
            file.write(data)

    def _download_metadata(self, rolename: str, length: int, version: int | None = None) -> bytes:
        self.loading = rolename if version is None else f"{rolename} v{version}"
        return super()._download_metadata(rolename, length, version)


@contextlib.contextmanager
def _translated(doing: str) -> Iterator[None]:
    try:
        yield
    except (tuf_errors.RepositoryError, tuf_errors.DownloadError, OSError) as e:
        raise translate(e, doing) from None


def _verify_self_signed(root: bytes) -> None:
    try:
        md = Metadata[Root].from_bytes(root)
        if not isinstance(md.signed, Root):
            raise TrustRootInvalid(f"the trusted root is {md.signed.type!r} metadata, not a root")
        md.signed.verify_delegate(Root.type, md.signed_bytes, md.signatures)
    except (DeserializationError, tuf_errors.RepositoryError, ValueError) as e:
        raise TrustRootInvalid(
            f"the trusted root is not a valid, self-signed TUF root: {e}"
        ) from None


def has_trust_root(update_dir: Path) -> bool:
    """Whether `update_dir` holds a trust anchor (not checked: `TrustedUpdates` checks it)."""
    return (Path(update_dir) / TRUSTED_ROOT_FILE).is_file()


def _ensure_dir(path: Path) -> None:
    path.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
    if not path.is_dir():
        raise NotADirectoryError(f"{path} is not a directory")
    # python-tuf's own writes use the process umask; the directory keeps others out of them.
    if path.stat().st_mode & 0o077:
        os.chmod(path, _DIR_MODE)


__all__ = [
    "METADATA_DIR",
    "TRUSTED_ROOT_FILE",
    "SignedTarget",
    "TrustConfig",
    "TrustedUpdates",
    "has_trust_root",
    "install_trust_root",
]
