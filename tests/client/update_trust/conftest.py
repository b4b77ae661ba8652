"""Fixtures for the device's update verification: a signing coordinator and a device over it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from tuf_simulator import Coordinator

from fedota.client.update import TrustConfig, TrustedUpdates


@pytest.fixture
def publisher() -> Coordinator:
    """The signing side (named apart from tests/client's fake Fleet coordinator)."""
    return Coordinator.start()


@pytest.fixture
def update_dir(tmp_path: Path) -> Path:
    return tmp_path / "state" / "update"


@pytest.fixture
def make_device(publisher: Coordinator, update_dir: Path) -> Callable[..., TrustedUpdates]:
    """`make_device(config=None)`: the device's verifier, anchored on the first root."""

    def make(config: TrustConfig | None = None) -> TrustedUpdates:
        return TrustedUpdates(
            update_dir, publisher.server, trust_root=publisher.first_root, config=config
        )

    return make


@pytest.fixture
def device(make_device: Callable[..., TrustedUpdates]) -> TrustedUpdates:
    return make_device()
