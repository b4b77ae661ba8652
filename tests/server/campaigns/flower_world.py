"""A coordinator's campaign world on a real SuperLink (TLS, SuperNode authentication) with one
SuperNode per device, each with a daemon-like state directory: what the campaign tests on
Flower's deployment engine share.

    with flower_world(tmp_path_factory, ["a"], [DeviceSetup("d0", "a"), ...]) as federation:
        runner = federation.runner(RunnerSettings(...))
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from campaign_world import World, prepare_device
from flower_support import FAST, make_ca, start_superlink, wait_state

from fedota.client.federation import FederationState, SuperNode, SuperNodeSettings
from fedota.client.keys import private_key_pem
from fedota.server.campaigns import CampaignRunner, CoordinatorLink, RunnerSettings, lease_dir
from fedota.server.federation import KeyReconciler, SuperLink, accepted_device_keys, fedota_app
from fedota.storage.db import Database
from fedota.storage.local_blobs import LocalBlobStore
from fedota.storage.migrate import upgrade


@dataclass(frozen=True)
class DeviceSetup:
    """A device of the world: its id and cohort, its SuperNode class, and what to change in its
    state directory after the base model and its examples were put there."""

    name: str
    cohort: str
    node_class: type[SuperNode] = SuperNode
    alter: Callable[[Path], None] | None = None


@dataclass
class FlowerWorld:
    data_dir: Path
    superlink: SuperLink
    world: World
    link_path: Path
    nodes: dict[str, SuperNode]
    reconciler: KeyReconciler

    def runner(self, settings: RunnerSettings) -> CampaignRunner:
        return CampaignRunner(
            self.world.database,
            self.superlink.control,
            fedota_app(),
            self.link_path,
            lease_dir(self.data_dir),
            self.data_dir / "campaigns" / "logs",
            settings,
            superlink_restarts=lambda: self.superlink.state.restarts,
        )


@contextmanager
def flower_world(
    tmp_path_factory: pytest.TempPathFactory,
    cohorts: Sequence[str],
    devices: Sequence[DeviceSetup],
) -> Iterator[FlowerWorld]:
    """The world with its devices accepted, their keys registered and every SuperNode online;
    everything started is stopped on exit."""
    data_dir = tmp_path_factory.mktemp("coordinator")
    url = f"sqlite:///{data_dir / 'coordinator.sqlite3'}"
    upgrade(url)
    database = Database(url)
    blobs = LocalBlobStore(data_dir / "blobs")
    world = World.make(database, blobs, data_dir / "work")
    for cohort in cohorts:
        world.add_cohort(cohort)
    link_path = CoordinatorLink(
        url, str(blobs.root), str(data_dir / "work"), str(lease_dir(data_dir)), 1.0
    ).write(data_dir)
    superlink = start_superlink(data_dir, make_ca(data_dir))
    nodes: dict[str, SuperNode] = {}
    try:
        for index, device in enumerate(devices):
            key = world.add_device(device.name, device.cohort)
            state_dir = tmp_path_factory.mktemp(device.name)
            prepare_device(state_dir, index)
            if device.alter is not None:
                device.alter(state_dir)
            nodes[device.name] = device.node_class(
                state_dir,
                private_key_pem(key),
                superlink.ca_path,
                SuperNodeSettings(superlink.dial_address, refused_retry=2.0, restart=FAST),
            )
        reconciler = KeyReconciler(superlink.control, lambda: accepted_device_keys(database))
        assert len(reconciler.run_once().registered) == len(devices)
        for node in nodes.values():
            node.start()
        for node in nodes.values():
            wait_state(node, FederationState.RUNNING, 60)
        yield FlowerWorld(data_dir, superlink, world, link_path, nodes, reconciler)
    finally:
        for node in nodes.values():
            node.stop()
        superlink.stop()
        database.dispose()
