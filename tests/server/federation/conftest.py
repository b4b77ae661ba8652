"""Real Flower processes on loopback: a fleet CA, a supervised SuperLink, device SuperNodes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from flower_support import FAST, make_ca, start_superlink

from fedota.client.federation import SuperNode, SuperNodeSettings
from fedota.client.keys import generate_key, private_key_pem
from fedota.server.federation import SuperLink
from fedota.server.pki import FleetCA


@pytest.fixture(scope="module")
def fleet_ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, FleetCA]:
    data_dir = tmp_path_factory.mktemp("coordinator")
    return data_dir, make_ca(data_dir)


@pytest.fixture(scope="module")
def superlink(fleet_ca: tuple[Path, FleetCA]) -> Iterator[SuperLink]:
    superlink = start_superlink(*fleet_ca)
    try:
        yield superlink
    finally:
        superlink.stop()


StartNode = Callable[[str], tuple[SuperNode, ec.EllipticCurvePrivateKey]]


@pytest.fixture(scope="module")
def supernodes(
    superlink: SuperLink, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StartNode]:
    """Starts a device's SuperNode (its own state dir and key); all stopped at the end."""
    started: list[SuperNode] = []

    def start(name: str) -> tuple[SuperNode, ec.EllipticCurvePrivateKey]:
        state_dir = tmp_path_factory.mktemp(name)
        key = generate_key()
        node = SuperNode(
            state_dir,
            private_key_pem(key),
            superlink.ca_path,
            SuperNodeSettings(superlink.dial_address, refused_retry=2.0, restart=FAST),
        )
        started.append(node)
        node.start()
        return node, key

    try:
        yield start
    finally:
        for node in started:
            node.stop()
