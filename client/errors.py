"""What can go wrong on the device, one type per failure an operator can meet.

Two families, as in python-tuf: the coordinator answered and refused (`RemoteError` and its
subclasses, each naming the gRPC status it came from), or it could not be reached at all
(`CoordinatorUnavailable`). Local problems (`StateError`, `CertificateExpired`) and bad replies
(`ProtocolError`) stand apart. The CLI maps each type to an exit code in one place.
"""

from __future__ import annotations


class ClientError(Exception):
    """Base of every failure the device daemon reports."""


class StateError(ClientError):
    """The state directory cannot be used as it is (inconsistent, corrupt, or misused)."""


class UsageError(ClientError):
    """The daemon was given options it cannot work with (e.g. no coordinator to enroll with)."""


class TokenError(UsageError):
    """The enrollment token is missing or malformed, or for another coordinator than the state's."""


class CertificateExpired(ClientError):
    """The device certificate has expired: the coordinator will refuse it."""


class UntrustedCoordinator(ClientError):
    """The coordinator could not be authenticated against the pinned or given CA."""


class ProtocolError(ClientError):
    """The coordinator's reply is unusable (e.g. a certificate for another key)."""


class CoordinatorUnavailable(ClientError):
    """The coordinator could not be reached or did not answer in time; worth retrying."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


class RemoteError(ClientError):
    """The coordinator answered with an error status.

    Attributes:
        code: the gRPC status code name, e.g. "PERMISSION_DENIED".
        message: the coordinator's message, on one line.
    """

    def __init__(self, code: str, message: str, text: str | None = None) -> None:
        super().__init__(text or message)
        self.code = code
        self.message = message


class EnrollmentRefused(RemoteError):
    """The enrollment token is unknown, expired, exhausted or revoked (UNAUTHENTICATED)."""


class AlreadyEnrolled(RemoteError):
    """The device key is already enrolled (ALREADY_EXISTS)."""


class RequestInvalid(RemoteError):
    """The coordinator found the request malformed (INVALID_ARGUMENT and kin)."""


class DeviceRefused(RemoteError):
    """The device is rejected or revoked (PERMISSION_DENIED): refused on every call."""


class CredentialRefused(RemoteError):
    """The device certificate is unknown or superseded (UNAUTHENTICATED on the device port)."""


class CoordinatorFailed(RemoteError):
    """Any other error status (INTERNAL, RESOURCE_EXHAUSTED, ...); worth retrying later."""


__all__ = [
    "AlreadyEnrolled",
    "CertificateExpired",
    "ClientError",
    "CoordinatorFailed",
    "CoordinatorUnavailable",
    "CredentialRefused",
    "DeviceRefused",
    "EnrollmentRefused",
    "ProtocolError",
    "RemoteError",
    "RequestInvalid",
    "StateError",
    "TokenError",
    "UntrustedCoordinator",
    "UsageError",
]
