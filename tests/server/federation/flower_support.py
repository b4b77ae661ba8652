"""Helpers for tests that run real Flower processes on loopback."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fedota.client.federation import FederationState, SuperNode
from fedota.flower_process import RestartPolicy
from fedota.server.config import Address
from fedota.server.federation import RunStatus, SuperLink, SuperLinkSettings
from fedota.server.federation.control import ControlClient
from fedota.server.pki import FleetCA, load_or_create_ca

FAST = RestartPolicy(first_delay=0.5, max_delay=2.0, stop_grace=10.0, poll_interval=0.1)


def public_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def make_ca(data_dir: Path) -> FleetCA:
    ca, _ = load_or_create_ca(data_dir, "test", dt.timedelta(days=30), dt.datetime.now(dt.UTC))
    return ca


def start_superlink(data_dir: Path, ca: FleetCA) -> SuperLink:
    superlink = SuperLink(
        data_dir,
        ca,
        SuperLinkSettings(listen=Address("127.0.0.1", 0), ready_timeout=60, restart=FAST),
    )
    superlink.start()
    return superlink


def follow_run(control: ControlClient, run_id: int, timeout: float) -> list[RunStatus]:
    """Poll a run's status until it finishes; returns every distinct status seen."""
    seen: list[RunStatus] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = control.run_status(run_id)
        if not seen or seen[-1] != status:
            seen.append(status)
        if status.finished:
            return seen
        time.sleep(0.5)
    raise AssertionError(f"run {run_id} did not finish in {timeout}s; seen {seen}")


def tasks_of(node: SuperNode) -> str:
    path = node.state_dir / "flower-tasks.log"
    return path.read_text() if path.exists() else ""


def wait_state(node: SuperNode, state: FederationState, timeout: float) -> None:
    status = node.wait_for(state, timeout=timeout)
    assert status.state is state, f"{node.state_dir}: {status} (log {node.log_path})"
