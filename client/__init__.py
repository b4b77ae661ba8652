"""fedota.client: the device daemon (enrollment, heartbeats, certificate renewal).

Never imports the coordinator (`fedota.server`), its storage layer or the CLI: a device runs
without them. The CLI (`fedota device ...`) maps the errors below to exit codes.
"""

from fedota.client.config import DaemonConfig
from fedota.client.daemon import Daemon, DaemonOptions, Status
from fedota.client.endpoint import Endpoint
from fedota.client.enrollment import EnrollOptions
from fedota.client.errors import (
    AlreadyEnrolled,
    CertificateExpired,
    ClientError,
    CoordinatorFailed,
    CoordinatorUnavailable,
    CredentialRefused,
    DeviceRefused,
    EnrollmentRefused,
    ProtocolError,
    RemoteError,
    RequestInvalid,
    StateError,
    TokenError,
    UntrustedCoordinator,
    UsageError,
)
from fedota.client.hardware import HardwareProfile
from fedota.client.identity import HARDWARE_CLASSES, Credentials, IdentityRecord
from fedota.client.store import Enrollment, StateStore

__all__ = [
    "HARDWARE_CLASSES",
    "AlreadyEnrolled",
    "CertificateExpired",
    "ClientError",
    "CoordinatorFailed",
    "CoordinatorUnavailable",
    "CredentialRefused",
    "Credentials",
    "Daemon",
    "DaemonConfig",
    "DaemonOptions",
    "DeviceRefused",
    "Endpoint",
    "EnrollOptions",
    "Enrollment",
    "EnrollmentRefused",
    "HardwareProfile",
    "IdentityRecord",
    "ProtocolError",
    "RemoteError",
    "RequestInvalid",
    "StateError",
    "StateStore",
    "Status",
    "TokenError",
    "UntrustedCoordinator",
    "UsageError",
]
