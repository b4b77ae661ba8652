"""The coordinator's running federation: its supervised SuperLink and the key reconciler.

One object for `Coordinator` to start and stop, so the coordinator's start-up reads as one step.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path

from fedota.server.config import Address
from fedota.server.federation.control import ControlClient
from fedota.server.federation.nodes import KeyReconciler, accepted_device_keys
from fedota.server.federation.superlink import SuperLink, SuperLinkSettings
from fedota.server.pki import FleetCA
from fedota.storage.db import Database

log = logging.getLogger(__name__)

# How often the registered SuperNode keys are compared with the accepted devices: a device
# accepted (or revoked) is in (or out of) the federation within about this many seconds.
RECONCILE_INTERVAL = 2.0


@dataclass
class Federation:
    """A started SuperLink whose registered keys follow the accepted devices; `stop()` ends it."""

    superlink: SuperLink
    reconciler: KeyReconciler

    @classmethod
    def start(
        cls,
        data_dir: Path,
        ca: FleetCA,
        database: Database,
        listen: Address,
        sans: tuple[str, ...],
        now: dt.datetime,
    ) -> Federation:
        """Start the SuperLink (returns once it answers) and the reconciler thread.

        Raises:
            SuperLinkStartError: as `SuperLink.start` (a `StartupError`).
        """
        superlink = SuperLink(data_dir, ca, SuperLinkSettings(listen=listen, sans=sans))
        superlink.start(now)
        reconciler = KeyReconciler(
            superlink.control, lambda: accepted_device_keys(database), RECONCILE_INTERVAL
        )
        reconciler.start()
        log.info("federation: Flower SuperLink on %s", superlink.address)
        return cls(superlink, reconciler)

    @property
    def address(self) -> Address:
        """Where the SuperLink listens (the port resolved)."""
        return self.superlink.address

    def control(self) -> ControlClient:
        """A Control API client for the SuperLink (register nodes, start and follow runs)."""
        return self.superlink.control()

    def stop(self) -> None:
        """Stop the reconciler, then the SuperLink and every process under it."""
        self.reconciler.stop()
        self.superlink.stop()


__all__ = ["RECONCILE_INTERVAL", "Federation"]
