"""fedota.server.federation: the coordinator's side of Flower's deployment engine.

The supervised SuperLink (`SuperLink`), the Control API client (`ControlClient`), the
reconciler that keeps registered SuperNode keys equal to the accepted devices (`plan`,
`KeyReconciler`), and fedota's Flower App (`fedota_app`; its ServerApp is `server_app:app`).
See docs/federation.md.
"""

from fedota.server.federation.control import ControlClient, FlowerApp, Node, RunLogs, RunStatus
from fedota.server.federation.errors import (
    ControlForbidden,
    ControlRefused,
    ControlUnavailable,
    FederationError,
    InvalidKey,
    KeyInUse,
    NodeNotFound,
    RunNotFound,
    SuperLinkStartError,
)
from fedota.server.federation.fab import fedota_app
from fedota.server.federation.keys import UnsupportedKey, canonical_pem, openssh_public_line
from fedota.server.federation.nodes import (
    KeyReconciler,
    Outcome,
    Plan,
    Registration,
    accepted_device_keys,
    plan,
)
from fedota.server.federation.superlink import SuperLink, SuperLinkSettings

__all__ = [
    "ControlClient",
    "ControlForbidden",
    "ControlRefused",
    "ControlUnavailable",
    "FederationError",
    "FlowerApp",
    "InvalidKey",
    "KeyInUse",
    "KeyReconciler",
    "Node",
    "NodeNotFound",
    "Outcome",
    "Plan",
    "Registration",
    "RunLogs",
    "RunNotFound",
    "RunStatus",
    "SuperLink",
    "SuperLinkSettings",
    "SuperLinkStartError",
    "UnsupportedKey",
    "accepted_device_keys",
    "canonical_pem",
    "fedota_app",
    "openssh_public_line",
    "plan",
]
