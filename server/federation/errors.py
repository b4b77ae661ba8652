"""Failures of the coordinator's Flower federation, by which side failed.

`SuperLinkStartError` is a startup problem for the operator (a `StartupError`). The Control API
client raises `ControlUnavailable` when the transport failed (SuperLink down, TLS refused, timeout)
and `ControlRefused` (or a subclass) when the SuperLink answered with an error.
"""

from __future__ import annotations

from fedota.server.errors import StartupError


class SuperLinkStartError(StartupError):
    """The SuperLink did not come up (port in use, flwr missing, bad certificate); one line."""


class FederationError(Exception):
    """Base of the Control API client's failures."""


class ControlUnavailable(FederationError):
    """The SuperLink could not be reached or did not answer in time."""


class ControlRefused(FederationError):
    """The SuperLink answered a Control API call with an error.

    Attributes:
        http_status: the HTTP status of the answer.
        code: Flower's API error code (0 when the answer carried none).
        detail: Flower's public message.
    """

    def __init__(self, call: str, http_status: int, code: int, detail: str) -> None:
        super().__init__(f"{call}: {detail or 'refused'} (HTTP {http_status}, Flower code {code})")
        self.call = call
        self.http_status = http_status
        self.code = code
        self.detail = detail


class ControlForbidden(ControlRefused):
    """fedota's guard in front of the Control API refused the caller's token."""


class KeyInUse(ControlRefused):
    """Registering a public key that a SuperNode already has."""


class InvalidKey(ControlRefused):
    """The SuperLink refused a public key (not EC on a NIST curve)."""


class NodeNotFound(ControlRefused):
    """No SuperNode with that id."""


class RunNotFound(ControlRefused):
    """No run with that id."""


__all__ = [
    "ControlForbidden",
    "ControlRefused",
    "ControlUnavailable",
    "FederationError",
    "InvalidKey",
    "KeyInUse",
    "NodeNotFound",
    "RunNotFound",
    "SuperLinkStartError",
]
