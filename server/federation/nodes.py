"""Keep the SuperLink's registered SuperNode keys equal to the fleet's accepted devices.

`plan` is the pure core: from the accepted devices (id -> public key PEM) and the nodes the
SuperLink lists, which keys to register and which nodes to unregister. `KeyReconciler` applies it
now and then, so a device accepted or revoked while the SuperLink was down (or a SuperLink that
lost its database) is put right when it answers again; no hook in the device code is needed.

A node is fedota's picture of a device when its name is the device id and its key the device's
key. The SuperLink belongs to the coordinator, so any other active node is unregistered.
Flower keeps an unregistered node's key for good (its database holds keys unique), so a key that
was unregistered once cannot be registered again: such a device is reported as `blocked`.
Revoking is final in fedota, so this only happens to a device whose node was removed by hand.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import select

from fedota.server.federation.control import ControlClient, Node
from fedota.server.federation.errors import ControlRefused, ControlUnavailable, KeyInUse
from fedota.server.federation.keys import UnsupportedKey, canonical_pem
from fedota.storage.db import Database
from fedota.storage.models import Device
from fedota.storage.models.fleet import DeviceState

log = logging.getLogger(__name__)

UNREGISTERED = "unregistered"


@dataclass(frozen=True)
class Registration:
    """A key to register for a device."""

    device_id: str
    public_key_pem: bytes


@dataclass(frozen=True)
class Plan:
    """What to change on the SuperLink: unregister first, then register."""

    to_register: tuple[Registration, ...] = ()
    to_unregister: tuple[Node, ...] = ()
    # Devices that cannot take part, with the reason (unusable key, key unregistered before).
    blocked: tuple[tuple[str, str], ...] = ()

    @property
    def empty(self) -> bool:
        return not self.to_register and not self.to_unregister


def plan(accepted: Mapping[str, bytes], registered: Sequence[Node]) -> Plan:
    """The changes that make the SuperLink's active nodes exactly the accepted devices (pure).

    `accepted` maps device id to its public key (PEM or OpenSSH); `registered` is what
    `ControlClient.list_nodes` returned. Results come sorted (device id, node id).
    """
    wanted: dict[str, bytes] = {}
    blocked: list[tuple[str, str]] = []
    for device_id, key in sorted(accepted.items()):
        try:
            wanted[device_id] = canonical_pem(key)
        except UnsupportedKey as exc:
            blocked.append((device_id, f"its key cannot join Flower: {exc}"))
    active = [n for n in registered if n.status != UNREGISTERED]
    retired_keys = {n.public_key_pem for n in registered if n.status == UNREGISTERED}

    kept: set[str] = set()
    to_unregister: list[Node] = []
    for node in sorted(active, key=lambda n: n.node_id):
        if wanted.get(node.name) == node.public_key_pem and node.name not in kept:
            kept.add(node.name)
        else:
            to_unregister.append(node)

    to_register: list[Registration] = []
    for device_id, key in wanted.items():
        if device_id in kept:
            continue
        if key in retired_keys:
            blocked.append((device_id, "its key was unregistered from the SuperLink before"))
        else:
            to_register.append(Registration(device_id, key))
    return Plan(tuple(to_register), tuple(to_unregister), tuple(sorted(blocked)))


@dataclass
class Outcome:
    """What one reconciliation pass did."""

    registered: dict[str, int] = field(default_factory=dict)  # device id -> node id
    unregistered: list[int] = field(default_factory=list)
    blocked: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def accepted_device_keys(database: Database) -> dict[str, bytes]:
    """Every accepted device's id and public key PEM, read in one query."""
    with database.session() as session:
        rows = session.execute(
            select(Device.id, Device.public_key_pem).where(Device.state == DeviceState.ACCEPTED)
        ).all()
    return {device_id: pem.encode() for device_id, pem in rows}


class KeyReconciler:
    """Applies `plan` once (`run_once`) or every `interval` seconds on a thread (`start`/`stop`).

    `control` opens a Control API client (e.g. `SuperLink.control`); `accepted` reads the accepted
    devices (e.g. `lambda: accepted_device_keys(database)`). A SuperLink that does not answer is
    retried on the next pass; nothing here raises out of the thread.
    """

    def __init__(
        self,
        control: Callable[[], ControlClient],
        accepted: Callable[[], Mapping[str, bytes]],
        interval: float = 10.0,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be positive, got {interval}")
        self._control = control
        self._accepted = accepted
        self._interval = interval
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.last: Outcome | None = None

    def run_once(self) -> Outcome:
        """One pass: list, plan, unregister, register.

        Raises:
            ControlUnavailable: the SuperLink did not answer the listing.
            ControlRefused: it refused the listing.
        """
        outcome = Outcome()
        accepted = self._accepted()
        with self._control() as control:
            changes = plan(accepted, control.list_nodes())
            outcome.blocked.extend(changes.blocked)
            for node in changes.to_unregister:
                try:
                    control.unregister_node(node.node_id)
                    outcome.unregistered.append(node.node_id)
                except ControlRefused as exc:
                    outcome.errors.append(f"unregister node {node.node_id} ({node.name}): {exc}")
            for registration in changes.to_register:
                try:
                    node_id = control.register_node(
                        registration.public_key_pem, registration.device_id
                    )
                    outcome.registered[registration.device_id] = node_id
                except KeyInUse as exc:
                    outcome.blocked.append((registration.device_id, str(exc)))
                except ControlRefused as exc:
                    outcome.errors.append(f"register {registration.device_id}: {exc}")
        for device_id, reason in outcome.blocked:
            log.warning("device %s cannot join the federation: %s", device_id, reason)
        if outcome.registered or outcome.unregistered:
            log.info(
                "federation keys: registered %s, unregistered nodes %s",
                sorted(outcome.registered),
                outcome.unregistered,
            )
        self.last = outcome
        return outcome

    def wake(self) -> None:
        """Run the next pass now (e.g. right after an operator accepted or revoked a device)."""
        self._wake.set()

    def start(self) -> None:
        """Run passes on a thread until `stop()`.

        Raises:
            RuntimeError: already started.
        """
        if self._thread is not None:
            raise RuntimeError("the key reconciler is already running")
        self._thread = threading.Thread(target=self._loop, name="federation-keys", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread after its current pass."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except (ControlUnavailable, ControlRefused) as exc:
                log.info("federation keys not reconciled yet: %s", exc)
            except Exception:  # a bug must not end the loop silently
                log.exception("federation key reconciliation failed")
            self._wake.wait(self._interval)
            self._wake.clear()


__all__ = [
    "KeyReconciler",
    "Outcome",
    "Plan",
    "Registration",
    "accepted_device_keys",
    "plan",
]
