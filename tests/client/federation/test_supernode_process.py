"""The SuperNode supervisor without a SuperLink: start, stop of the whole tree, bad set-up.

Refusal by a real SuperLink (unregistered and revoked keys) is tested with the SuperLink in
tests/server/federation/test_federation_run.py.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from fedota.client.errors import StateError
from fedota.client.federation import FederationState, SuperNode, SuperNodeSettings
from fedota.client.keys import generate_key, private_key_pem
from fedota.flower_process import RestartPolicy, alive, process_tree

FAST = RestartPolicy(first_delay=0.5, max_delay=2.0, stop_grace=10.0, poll_interval=0.1)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _node(tmp_path: Path, ca: Path) -> SuperNode:
    settings = SuperNodeSettings(f"127.0.0.1:{_closed_port()}", restart=FAST)
    return SuperNode(tmp_path, private_key_pem(generate_key()), ca, settings)


@pytest.mark.timeout(60)
def test_without_a_superlink_it_never_counts_as_running_and_stop_ends_the_tree(
    tmp_path: Path,
) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_bytes(b"")  # never read: nothing answers on the port
    node = _node(tmp_path, ca)
    seen: set[int] = set()
    try:
        node.start()
        deadline = time.monotonic() + 30
        while not seen and time.monotonic() < deadline:
            if node.pid is not None:
                seen = process_tree(node.pid)
            time.sleep(0.1)
        assert seen, "the SuperNode process did not appear"
        assert node.status.state in {FederationState.STARTING, FederationState.RETRYING}
        assert node.key_path.exists()
    finally:
        node.stop()
    assert node.status.state is FederationState.STOPPED
    assert alive(seen) == set()


def test_a_missing_ca_is_a_state_error(tmp_path: Path) -> None:
    node = _node(tmp_path, tmp_path / "ca.crt")
    with pytest.raises(StateError, match="needs the fleet CA"):
        node.start()
    assert node.status.state is FederationState.STOPPED
