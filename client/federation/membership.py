"""The device's place in the federation: its SuperNode runs while the coordinator names one.

The coordinator tells an accepted device where its SuperLink is in every heartbeat reply; the
daemon hands that to `Membership.follow` after each heartbeat, which starts the SuperNode, moves
it when the address changes, and stops it when the coordinator names none (the device was
revoked, or the coordinator runs without a federation).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from fedota.client.endpoint import Endpoint
from fedota.client.errors import StateError
from fedota.client.federation.supernode import SuperNode, SuperNodeSettings, SuperNodeStatus

log = logging.getLogger(__name__)

# While the SuperLink does not know the device's key yet (the coordinator registers it within
# seconds of acceptance), try again this often.
REFUSED_RETRY_SECONDS = 5.0


class Membership:
    """Follows the federation address the coordinator names; thread-safe."""

    def __init__(self, state_dir: Path, private_key_pem: bytes, ca_path: Path) -> None:
        self._state_dir = state_dir
        self._private_key_pem = private_key_pem
        self._ca_path = ca_path
        self._lock = threading.Lock()
        self._supernode: SuperNode | None = None
        self._superlink: Endpoint | None = None

    @property
    def status(self) -> SuperNodeStatus | None:
        """The SuperNode's status, or None when none runs."""
        with self._lock:
            return self._supernode.status if self._supernode is not None else None

    def follow(self, superlink: Endpoint | None) -> None:
        """Run a SuperNode dialling `superlink`, or none when it is None.

        A SuperNode that cannot start (its key file or the CA cannot be written) is logged and
        tried again on the next call; the daemon goes on updating and serving.
        """
        with self._lock:
            if superlink == self._superlink:
                return
            self._stop_locked()
            if superlink is None:
                return
            supernode = SuperNode(
                self._state_dir,
                self._private_key_pem,
                self._ca_path,
                SuperNodeSettings(superlink=str(superlink), refused_retry=REFUSED_RETRY_SECONDS),
            )
            try:
                supernode.start()
            except StateError as exc:
                log.warning("cannot join the federation at %s: %s", superlink, exc)
                return
            self._supernode, self._superlink = supernode, superlink
            log.info("joining the federation at %s (Flower SuperNode)", superlink)

    def stop(self) -> None:
        """Stop the SuperNode and every process under it; idempotent."""
        with self._lock:
            self._stop_locked()

    def _stop_locked(self) -> None:
        if self._supernode is not None:
            log.info("leaving the federation at %s", self._superlink)
            self._supernode.stop()
        self._supernode = self._superlink = None


__all__ = ["REFUSED_RETRY_SECONDS", "Membership"]
