"""What can go wrong verifying updates, in python-tuf's two families plus the device's own.

`RepositoryRejected` and subclasses: the repository's data is bad (unsigned, rolled back,
expired, mixed, oversized, or a target that is not signed). Nothing of it is trusted or kept; the
device keeps what it had. These are `UpdateRejected`, so the daemon reports them as an update's
failure reason like any other refusal. `RepositoryUnavailable`: the transport failed (the
coordinator or CDN cannot be reached, a stream was cut); not a refusal but worth retrying, and a
cut target download resumes. `TrustStateError`: the device's own trust state (its trusted root,
its metadata directory) cannot be used. `translate` maps python-tuf's exceptions into these, once.
"""

from __future__ import annotations

from tuf.api import exceptions as tuf_errors

from fedota.client.errors import ClientError, StateError
from fedota.client.update.apply_errors import UpdateRejected


class RepositoryRejected(UpdateRejected):
    """The update repository served data that fails verification; nothing of it is used."""


class SignatureRejected(RepositoryRejected):
    """Metadata is not signed by the threshold of keys the trusted root names for its role
    (an arbitrary-software attack, or a key rotation whose new root is not signed by both)."""


class VersionRejected(RepositoryRejected):
    """A version older than the trusted one (rollback), or not the version the role above it
    names (a mixed set)."""


class MetadataExpired(RepositoryRejected):
    """The newest metadata the repository offers has expired (a freeze attack, or a coordinator
    that stopped re-signing)."""


class HashMismatch(RepositoryRejected):
    """A file's length or hash is not the one the metadata above it signed (a tampered target,
    a mix-and-match of metadata files)."""


class OversizedData(RepositoryRejected):
    """The repository sent more bytes than the signed length or the device's cap (endless data)."""


class MalformedMetadata(RepositoryRejected):
    """A metadata file does not parse, or breaks the structure TUF requires."""


class TargetNotSigned(RepositoryRejected):
    """The target path is not in the signed targets metadata."""

    def __init__(self, path: str) -> None:
        super().__init__(f"target {path!r} is not signed by the update repository")
        self.path = path


class TargetInfoInvalid(RepositoryRejected):
    """A signed target's fedota fields are missing or break the contract."""


class RepositoryUnavailable(ClientError):
    """The repository could not be reached or a transfer was cut; retry later.

    Attributes:
        missing: the repository answered that the file does not exist.
    """

    def __init__(self, message: str, *, missing: bool = False) -> None:
        super().__init__(message)
        self.missing = missing


class TrustStateError(StateError):
    """The device's trusted root is missing or invalid, or its metadata cannot be written."""


class TrustRootInvalid(TrustStateError):
    """A trust root offered to the device is not a TUF root signed by its own threshold."""


_RULES: tuple[tuple[type[Exception], type[RepositoryRejected], str], ...] = (
    (
        tuf_errors.UnsignedMetadataError,
        SignatureRejected,
        "not signed by the threshold of trusted keys",
    ),
    (tuf_errors.BadVersionNumberError, VersionRejected, "version refused"),
    (tuf_errors.ExpiredMetadataError, MetadataExpired, "metadata expired"),
    (tuf_errors.LengthOrHashMismatchError, HashMismatch, "length or hash differs from the signed"),
    (tuf_errors.DownloadLengthMismatchError, OversizedData, "more bytes than allowed"),
    (tuf_errors.RepositoryError, MalformedMetadata, "invalid metadata"),
)


def translate(
    error: BaseException, doing: str
) -> RepositoryRejected | RepositoryUnavailable | TrustStateError:
    """The fedota error for a python-tuf (or local) exception met while `doing` something.

    The message reads `<doing>: <rule>: <python-tuf's detail>`.

    Raises:
        TypeError: `error` is neither python-tuf's nor an OSError (a bug, not to be hidden).
    """
    detail = str(error) or type(error).__name__
    for tuf_type, ours, rule in _RULES:
        if isinstance(error, tuf_type):
            return ours(f"{doing}: {rule}: {detail}")
    if isinstance(error, tuf_errors.DownloadHTTPError):
        missing = error.status_code in (403, 404)
        return RepositoryUnavailable(f"{doing}: the repository answered {detail}", missing=missing)
    if isinstance(error, tuf_errors.DownloadError):
        cause = error.__cause__
        if cause is not None:
            detail = f"{detail} ({type(cause).__name__}: {cause})"
        return RepositoryUnavailable(f"{doing}: transfer failed: {detail}")
    if isinstance(error, OSError):
        return TrustStateError(f"{doing}: local update state: {detail}")
    raise TypeError(f"not a python-tuf error: {type(error).__name__}: {detail}") from error


__all__ = [
    "HashMismatch",
    "MalformedMetadata",
    "MetadataExpired",
    "OversizedData",
    "RepositoryRejected",
    "RepositoryUnavailable",
    "SignatureRejected",
    "TargetInfoInvalid",
    "TargetNotSigned",
    "TrustRootInvalid",
    "TrustStateError",
    "VersionRejected",
    "translate",
]
