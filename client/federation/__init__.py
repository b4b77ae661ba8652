"""fedota.client.federation: the device's side of Flower's deployment engine.

The supervised SuperNode (`SuperNode`), started with the device's own enrollment key in OpenSSH
form, and fedota's ClientApp (`client_app:app`). See docs/federation.md.
"""

from fedota.client.federation.keys import openssh_private_key, write_openssh_private_key
from fedota.client.federation.supernode import (
    FederationState,
    SuperNode,
    SuperNodeSettings,
    SuperNodeStatus,
)

__all__ = [
    "FederationState",
    "SuperNode",
    "SuperNodeSettings",
    "SuperNodeStatus",
    "openssh_private_key",
    "write_openssh_private_key",
]
