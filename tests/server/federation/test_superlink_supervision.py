"""The SuperLink supervisor: restarts after kill -9 keeping Flower's state, stops the whole tree,
and says why it cannot start."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
from flower_support import make_ca, public_pem, start_superlink

from fedota.client.keys import generate_key
from fedota.flower_process import Phase, alive, process_tree
from fedota.server.config import Address
from fedota.server.federation import SuperLink, SuperLinkSettings, SuperLinkStartError
from fedota.server.federation.superlink import PORT_IN_USE

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(120)
def test_kill9_is_restarted_with_its_state_and_stop_leaves_no_process(tmp_path: Path) -> None:
    superlink = start_superlink(tmp_path, make_ca(tmp_path))
    seen: set[int] = set()
    try:
        with superlink.control() as control:
            node_id = control.register_node(public_pem(generate_key()), "dev-1")
        first = superlink.pid
        assert first is not None
        seen |= process_tree(first)
        assert len(seen) >= 2, "the SuperLink runs its SuperExec as a child"
        os.kill(first, signal.SIGKILL)
        state = superlink.wait_for(lambda s: s.phase is Phase.RUNNING and s.restarts == 1, 60)
        assert state.phase is Phase.RUNNING and state.restarts == 1, state
        assert superlink.pid != first
        seen |= process_tree(superlink.pid)  # type: ignore[arg-type]
        with superlink.control() as control:
            assert [n.node_id for n in control.list_nodes()] == [node_id]
    finally:
        superlink.stop()
    assert superlink.state.phase is Phase.STOPPED
    assert alive(seen) == set(), f"left behind: {alive(seen)}"


@pytest.mark.timeout(60)
def test_a_port_busy_past_the_ready_timeout_is_a_readable_start_error(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        settings = SuperLinkSettings(listen=Address("127.0.0.1", port), ready_timeout=8)
        superlink = SuperLink(tmp_path, make_ca(tmp_path), settings)
        with pytest.raises(SuperLinkStartError, match=f"port {port} is in use"):
            superlink.start()
    assert superlink.pid is None


@pytest.mark.timeout(120)
def test_a_port_freed_within_the_ready_timeout_is_waited_out(tmp_path: Path) -> None:
    """What a coordinator restarted at once after kill -9 meets: its old SuperLink still ending."""
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    port = squatter.getsockname()[1]
    settings = SuperLinkSettings(listen=Address("127.0.0.1", port), ready_timeout=90)
    superlink = SuperLink(tmp_path, make_ca(tmp_path), settings)
    met_busy_port = threading.Event()

    def release_once_refused() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and superlink.state.kind != PORT_IN_USE:
            time.sleep(0.05)
        met_busy_port.set()
        squatter.close()

    releaser = threading.Thread(target=release_once_refused, daemon=True)
    releaser.start()
    try:
        superlink.start()
        assert superlink.state.phase is Phase.RUNNING
        assert superlink.state.restarts >= 1, "the first try met the busy port"
        with superlink.control() as control:
            assert control.list_nodes() == []
    finally:
        squatter.close()
        superlink.stop()
        releaser.join(65)
    assert met_busy_port.is_set()


@pytest.mark.timeout(30)
def test_a_control_client_before_start_is_a_programming_error(tmp_path: Path) -> None:
    superlink = SuperLink(tmp_path, make_ca(tmp_path))
    with pytest.raises(RuntimeError, match="not started"):
        superlink.control()
