"""fedota.server: the coordinator.

`Coordinator.start(Settings(...))` prepares the data directory (fleet CA, server certificate,
first admin token), migrates the database and the signed update metadata, and serves the Fleet,
Admin and Updates gRPC services on a public TLS port and an mTLS device port (Updates on the
device port only), plus the read-only TUF repository over HTTP, until `stop()`.
"""

from fedota.server.app import Coordinator
from fedota.server.config import Address, Limits, Settings
from fedota.server.errors import StartupError

__all__ = ["Address", "Coordinator", "Limits", "Settings", "StartupError"]
