"""The failures a caller of the coordinator can meet, each tied to one gRPC status code.

Service code raises these; `fedota.server.rpc` turns them into a status and one sentence on the
wire, and anything else into INTERNAL with a reference to the log. Startup problems an operator
fixes on the command line are `StartupError`.
"""

from __future__ import annotations

import grpc


class ServiceError(Exception):
    """A refused request: `code` goes on the wire with the message."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN


class InvalidArgument(ServiceError):
    """A request field breaks a rule; the message names the field and the rule."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(f"{field}: {rule}")
        self.field = field
        self.rule = rule


class Unauthenticated(ServiceError):
    """The caller's credential (token or certificate) is missing, unknown, expired or revoked."""

    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(ServiceError):
    """The caller is known but may not do this (role too low, device not accepted or cut off)."""

    code = grpc.StatusCode.PERMISSION_DENIED


class NotFound(ServiceError):
    """The named cohort, token or device does not exist."""

    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(ServiceError):
    """Creating something whose name or key is taken."""

    code = grpc.StatusCode.ALREADY_EXISTS


class KeyAlreadyEnrolled(AlreadyExists):
    """A CSR's public key already belongs to a device."""

    def __init__(self, device_id: str) -> None:
        super().__init__(f"this key is already enrolled as device {device_id}")
        self.device_id = device_id


class FailedPrecondition(ServiceError):
    """The request is well-formed but the target's current state does not allow it."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class TransitionNotAllowed(FailedPrecondition):
    """An operator move the device's current state does not allow."""

    def __init__(self, device_id: str, state: str, verb: str) -> None:
        super().__init__(f"device {device_id} is {state}; it cannot be {verb}")
        self.device_id = device_id
        self.state = state


class StartupError(Exception):
    """The coordinator cannot start (port in use, unwritable data directory, bad database URL,
    database not migrated, CA files that don't match the database); one line for the operator."""


__all__ = [
    "AlreadyExists",
    "FailedPrecondition",
    "InvalidArgument",
    "KeyAlreadyEnrolled",
    "NotFound",
    "PermissionDenied",
    "ServiceError",
    "StartupError",
    "TransitionNotAllowed",
    "Unauthenticated",
]
