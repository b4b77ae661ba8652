"""The device's SuperNode: Flower's `flower-supernode` as a supervised child of the daemon.

Layout under `STATE/flower/` (directory 0700): `supernode.key` (the enrollment key in OpenSSH
format, 0600), `supernode.log` (its output, appended across restarts) and `home/` (its FLWR_HOME).

Started as `flower-supernode --superlink HOST:PORT --root-certificates CA
--auth-supernode-private-key KEY --port <free loopback port> --node-config "state-dir=STATE"`,
with telemetry and update checks off and this installation's bin/ first on PATH (its ClientApp
processes load fedota from here). A SuperLink that refuses the key (Flower API codes 2001/2004:
the coordinator has not registered this device, or unregistered it) is the state
`NOT_REGISTERED`, retried slowly; any other ending restarts with backoff.
"""

from __future__ import annotations

import enum
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

from fedota.client.errors import StateError
from fedota.client.federation.keys import write_openssh_private_key
from fedota.flower_process import (
    Launch,
    Phase,
    ProcessSupervisor,
    RestartPolicy,
    SupervisorState,
    Verdict,
    flower_environment,
    last_line,
)

FLOWER_DIR = "flower"
KEY_FILE = "supernode.key"
LOG_FILE = "supernode.log"
HOME_DIR = "home"

# What Flower prints when the SuperLink refuses this node's key (flwr.supercore.error.ApiErrorCode
# FLEET_SUPERNODE_REGISTRATION_DISABLED and FLEET_NODE_ACTIVATION_FAILED).
_REFUSAL_MARKS = ("[code: 2001]", "[code: 2004]", "Failed to activate SuperNode")
# flwr.supercore.exit.ExitCode.SUPERNODE_NODE_AUTH_KEY_INVALID
_KEY_INVALID = "Exit Code: 302"
# Printed once the SuperLink accepted the node (flwr.supernode.start_client_internal).
_ACTIVATED_MARK = "SuperNode ID:"


class FederationState(enum.Enum):
    """The SuperNode as the daemon reports it."""

    STARTING = "starting"
    RUNNING = "running"
    NOT_REGISTERED = "not registered with the federation yet"
    RETRYING = "retrying"
    FAILED = "failed"
    STOPPED = "stopped"


@dataclass(frozen=True)
class SuperNodeStatus:
    """`state` and one readable sentence on why (empty while all is well)."""

    state: FederationState
    reason: str = ""
    restarts: int = 0


@dataclass(frozen=True)
class SuperNodeSettings:
    """How to reach the SuperLink and how to supervise the SuperNode.

    `superlink` is HOST:PORT; `runtime_port` the SuperNode's local Runtime API port (0: a free
    loopback port at each start); `refused_retry` the seconds between attempts while the key is
    not registered.
    """

    superlink: str
    runtime_port: int = 0
    refused_retry: float = 60.0
    restart: RestartPolicy = field(default_factory=RestartPolicy)


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class SuperNode:
    """One device's supervised SuperNode. `start()` returns at once; `status` says how it goes."""

    def __init__(
        self,
        state_dir: Path,
        private_key_pem: bytes,
        ca_path: Path,
        settings: SuperNodeSettings,
    ) -> None:
        self.settings = settings
        self.state_dir = state_dir
        self.directory = state_dir / FLOWER_DIR
        self._private_key_pem = private_key_pem
        self._ca_path = ca_path
        self._supervisor: ProcessSupervisor | None = None
        self._log_offset = 0

    @property
    def key_path(self) -> Path:
        return self.directory / KEY_FILE

    @property
    def log_path(self) -> Path:
        return self.directory / LOG_FILE

    @property
    def pid(self) -> int | None:
        return self._supervisor.pid if self._supervisor is not None else None

    @property
    def status(self) -> SuperNodeStatus:
        if self._supervisor is None:
            return SuperNodeStatus(FederationState.STOPPED)
        return _status(self._supervisor.state)

    def start(self) -> None:
        """Write the OpenSSH key file and start supervising the SuperNode.

        Raises:
            StateError: the key cannot be converted or written, or the CA file is missing.
            RuntimeError: already started.
        """
        if self._supervisor is not None:
            raise RuntimeError("the SuperNode is already started")
        if not self._ca_path.is_file():
            raise StateError(f"{self._ca_path} is missing: the SuperNode needs the fleet CA")
        write_openssh_private_key(self.key_path, self._private_key_pem)
        try:
            (self.directory / HOME_DIR).mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise StateError(f"cannot create {self.directory}: {exc.strerror or exc}") from exc
        self._supervisor = ProcessSupervisor(
            "supernode",
            self._launch,
            self._classify,
            ready=self._activated,
            policy=self.settings.restart,
        )
        self._supervisor.start()

    def wait_for(self, *states: FederationState, timeout: float) -> SuperNodeStatus:
        """Wait until the status is one of `states` or `timeout` passes; returns the status."""
        if self._supervisor is None:
            return self.status
        wanted = set(states)
        reached = self._supervisor.wait_for(lambda s: _status(s).state in wanted, timeout)
        return _status(reached)

    def stop(self) -> None:
        """Terminate the SuperNode, its SuperExec and ClientApp processes, and wait; idempotent."""
        if self._supervisor is not None:
            self._supervisor.stop()
            self._supervisor = None

    def _launch(self) -> Launch:
        port = self.settings.runtime_port or _free_loopback_port()
        argv = [
            str(Path(sys.executable).parent / "flower-supernode"),
            "--superlink", self.settings.superlink,
            "--root-certificates", str(self._ca_path),
            "--auth-supernode-private-key", str(self.key_path),
            "--host", "127.0.0.1",
            "--port", str(port),
            "--node-config", f'state-dir="{self.state_dir}"',
        ]  # fmt: skip
        env = flower_environment(self.directory / HOME_DIR)
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        return Launch(argv, env, self.directory, self.log_path)

    def _activated(self) -> bool:
        """Whether this start's output shows the SuperLink accepted the node."""
        with open(self.log_path, "rb") as handle:
            handle.seek(self._log_offset)
            return _ACTIVATED_MARK.encode() in handle.read()

    def _classify(self, code: int, output: str) -> Verdict:
        if any(mark in output for mark in _REFUSAL_MARKS):
            return Verdict(
                f"the SuperLink at {self.settings.superlink} does not know this device's key "
                "(the coordinator registers it once the device is accepted)",
                retry_after=self.settings.refused_retry,
                kind="not-registered",
            )
        if _KEY_INVALID in output:
            return Verdict("Flower cannot read the device key file", fatal=True, kind="key")
        if "Exit Code: 305" in output:
            return Verdict(f"cannot reach the SuperLink at {self.settings.superlink}")
        line = last_line(output, "Exit Code", "Error", "ERROR")
        return Verdict(f"exited with status {code}" + (f": {line}" if line else ""))


def _status(state: SupervisorState) -> SuperNodeStatus:
    if state.phase is Phase.WAITING:
        kind = (
            FederationState.NOT_REGISTERED
            if state.kind == "not-registered"
            else FederationState.RETRYING
        )
        return SuperNodeStatus(kind, state.reason, state.restarts)
    mapping = {
        Phase.STARTING: FederationState.STARTING,
        Phase.RUNNING: FederationState.RUNNING,
        Phase.FAILED: FederationState.FAILED,
        Phase.STOPPED: FederationState.STOPPED,
    }
    return SuperNodeStatus(mapping[state.phase], state.reason, state.restarts)


__all__ = [
    "FederationState",
    "SuperNode",
    "SuperNodeSettings",
    "SuperNodeStatus",
]
