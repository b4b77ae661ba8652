"""The coordinator's SuperLink: Flower's `flower-superlink` as a supervised child process.

Layout under `DATA/flower/` (directory 0700):

    server.key, server.crt   the SuperLink's TLS key (0600) and certificate from the fleet CA
    ca.crt                   the fleet CA (what SuperNodes and the control client verify against)
    control-token            the token fedota's guard asks of Control API callers (0600)
    superlink.db             Flower's state (SQLite): registered nodes, runs, logs
    superlink.log            the SuperLink's output, appended across restarts
    home/                    FLWR_HOME of the SuperLink and its SuperExec

Flags: TLS with that certificate, `--enable-supernode-auth`,
`--disable-runtime-dependency-installation`, `--database superlink.db`, `--host/--port` from the
settings; environment from `fedota.flower_process.flower_environment`. It runs through
`fedota.server.federation.launch`, which wraps Flower's HTTP app in fedota's `ControlGuard`.
"""

from __future__ import annotations

import datetime as dt
import secrets
import shutil
import socket
import ssl
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from cryptography import x509

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
from fedota.server.config import Address
from fedota.server.federation.control import ControlClient
from fedota.server.federation.errors import SuperLinkStartError
from fedota.server.federation.launch import EXIT_UNUSABLE, TOKEN_FILE_ENV
from fedota.server.files import PUBLIC_FILE, ensure_private_dir, write_atomic
from fedota.server.pki import SERVER_CERT, SERVER_KEY, FleetCA, ensure_server_certificate, parse_san

FLOWER_DIR = "flower"
CA_FILE = "ca.crt"
TOKEN_FILE = "control-token"
DATABASE_FILE = "superlink.db"
LOG_FILE = "superlink.log"
HOME_DIR = "home"
PORT_IN_USE = "port-in-use"
# The SuperLink's own SuperExec dials it on loopback, so the certificate must name loopback.
LOOPBACK_NAMES = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True)
class SuperLinkSettings:
    """Where the SuperLink listens and how it is supervised.

    `listen` port 0 picks a free port at start. `sans` are the names devices dial (IP addresses or
    DNS names), added to loopback in the certificate.
    """

    listen: Address = field(default_factory=lambda: Address("127.0.0.1", 9443))
    sans: tuple[str, ...] = ()
    ready_timeout: float = 60.0
    restart: RestartPolicy = field(default_factory=RestartPolicy)
    certificate_lifetime: dt.timedelta = dt.timedelta(days=365)
    certificate_min_remaining: dt.timedelta = dt.timedelta(days=7)


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _port_taken(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def _dial_host(host: str) -> str:
    """The address to reach a server bound on `host` from this machine."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)


def _classify(port: int) -> object:
    def classify(code: int, output: str) -> Verdict:
        if "address already in use" in output.lower():
            return Verdict(f"port {port} is in use by another program", kind=PORT_IN_USE)
        fedota_line = last_line(output, "fedota superlink:")
        if code == EXIT_UNUSABLE and fedota_line:
            return Verdict(fedota_line.removeprefix("fedota superlink:").strip(), fatal=True)
        if "No module named" in output:
            return Verdict(last_line(output, "No module named"), fatal=True, kind="flwr-missing")
        line = last_line(output, "Exit Code", "Error", "ERROR") or last_line(output, "")
        return Verdict(f"exited with status {code}" + (f": {line}" if line else ""))

    return classify


def _settled(state: SupervisorState) -> bool:
    """Whether a starting SuperLink is up or has ended for good.

    A port in use is waited out: a SuperLink left by a coordinator that was killed outright ends
    (PR_SET_PDEATHSIG) a moment after its replacement starts, and the supervisor retries.
    """
    if state.phase is Phase.WAITING:
        return state.kind != PORT_IN_USE
    return state.phase is not Phase.STARTING


class SuperLink:
    """One supervised SuperLink. `start()` returns once it answers; `stop()` ends its whole tree.

    The coordinator owns one; registered nodes and runs live in its database, so a restart (after
    a crash, or of the coordinator) keeps them.
    """

    def __init__(self, data_dir: Path, ca: FleetCA, settings: SuperLinkSettings | None = None):
        self.settings = settings or SuperLinkSettings()
        self.directory = data_dir / FLOWER_DIR
        self._ca = ca
        self._port = self.settings.listen.port
        self._token = b""
        self._supervisor: ProcessSupervisor | None = None

    @property
    def address(self) -> Address:
        """Where it listens (the resolved port once started)."""
        return self.settings.listen.with_port(self._port)

    @property
    def dial_address(self) -> str:
        """HOST:PORT that reaches it from this machine."""
        return str(Address(_dial_host(self.settings.listen.host), self._port))

    @property
    def ca_path(self) -> Path:
        """The CA certificate file SuperNodes pass as `--root-certificates`."""
        return self.directory / CA_FILE

    @property
    def log_path(self) -> Path:
        return self.directory / LOG_FILE

    @property
    def state(self) -> SupervisorState:
        if self._supervisor is None:
            return SupervisorState(Phase.STOPPED)
        return self._supervisor.state

    @property
    def pid(self) -> int | None:
        return self._supervisor.pid if self._supervisor is not None else None

    def control(self, timeout: float = 30.0) -> ControlClient:
        """A Control API client for this SuperLink (close it after use).

        Raises:
            RuntimeError: not started.
        """
        if not self._token:
            raise RuntimeError("the SuperLink is not started")
        return ControlClient(self.dial_address, self._ca.certificate_pem, self._token, timeout)

    def start(self, now: dt.datetime | None = None) -> None:
        """Prepare `DATA/flower/`, start the SuperLink and wait until it answers.

        Raises:
            SuperLinkStartError: flwr is not installed, the data directory is unusable, the port
                is in use, or it did not answer within `ready_timeout` (the reason is in the
                message; the output is in `log_path`).
            RuntimeError: already started.
        """
        if self._supervisor is not None:
            raise RuntimeError("the SuperLink is already started")
        self._prepare(now or dt.datetime.now(dt.UTC))
        supervisor = ProcessSupervisor(
            "superlink",
            self._launch,
            _classify(self._port),  # type: ignore[arg-type]
            ready=self._answers,
            policy=self.settings.restart,
        )
        self._supervisor = supervisor
        supervisor.start()
        state = supervisor.wait_for(_settled, self.settings.ready_timeout)
        if state.phase is not Phase.RUNNING:
            supervisor.stop()
            self._supervisor = None
            reason = state.reason or f"no answer within {self.settings.ready_timeout:g}s"
            if state.phase is not Phase.FAILED and _port_taken(
                self.settings.listen.host, self._port
            ):
                reason = f"port {self._port} is in use by another program"
            raise SuperLinkStartError(
                f"the Flower SuperLink on {self.address} did not start: {reason} "
                f"(see {self.log_path})"
            )

    def wait_for(
        self, predicate: Callable[[SupervisorState], bool], timeout: float
    ) -> SupervisorState:
        """Wait until `predicate(state)` holds (e.g. running again after a restart) or `timeout`
        seconds pass; returns the state it reached."""
        if self._supervisor is None:
            return SupervisorState(Phase.STOPPED)
        return self._supervisor.wait_for(predicate, timeout)

    def stop(self) -> None:
        """Terminate the SuperLink, its SuperExec and app processes, and wait; idempotent."""
        if self._supervisor is not None:
            self._supervisor.stop()
            self._supervisor = None

    def _prepare(self, now: dt.datetime) -> None:
        executable = shutil.which("flower-superexec", path=str(Path(sys.executable).parent))
        if executable is None:
            raise SuperLinkStartError(
                f"Flower is not installed next to {sys.executable} (no flower-superexec)"
            )
        try:
            sans = [parse_san(n) for n in (*LOOPBACK_NAMES, *self.settings.sans)]
        except ValueError as exc:
            raise SuperLinkStartError(f"SuperLink certificate name: {exc}") from exc
        try:
            ensure_private_dir(self.directory)
            (self.directory / HOME_DIR).mkdir(mode=0o700, exist_ok=True)
            self._certificate(list(dict.fromkeys(sans)), now)
            self._token = self._load_token()
        except OSError as exc:
            raise SuperLinkStartError(
                f"cannot prepare {self.directory}: {exc.strerror or exc}"
            ) from exc
        if self._port == 0:
            self._port = _free_port(self.settings.listen.host or "0.0.0.0")

    def _certificate(self, sans: Sequence[x509.GeneralName], now: dt.datetime) -> None:
        ensure_server_certificate(
            self.directory,
            self._ca,
            sans,
            self.settings.certificate_lifetime,
            self.settings.certificate_min_remaining,
            now,
        )
        if not self.ca_path.exists() or self.ca_path.read_bytes() != self._ca.certificate_pem:
            write_atomic(self.ca_path, self._ca.certificate_pem, PUBLIC_FILE)

    def _load_token(self) -> bytes:
        path = self.directory / TOKEN_FILE
        if path.exists():
            token = path.read_bytes().strip()
            if token:
                return token
        token = secrets.token_hex(32).encode()
        write_atomic(path, token + b"\n")
        return token

    def _launch(self) -> Launch:
        d = self.directory
        argv = [
            sys.executable,
            "-m",
            "fedota.server.federation.launch",
            "--ssl-ca-certfile", str(d / CA_FILE),
            "--ssl-certfile", str(d / SERVER_CERT),
            "--ssl-keyfile", str(d / SERVER_KEY),
            "--enable-supernode-auth",
            "--disable-runtime-dependency-installation",
            "--database", str(d / DATABASE_FILE),
            "--host", self.settings.listen.host,
            "--port", str(self._port),
        ]  # fmt: skip
        env = flower_environment(d / HOME_DIR, {TOKEN_FILE_ENV: str(d / TOKEN_FILE)})
        return Launch(argv, env, d, d / LOG_FILE)

    def _answers(self) -> bool:
        context = ssl.create_default_context(cadata=self._ca.certificate_pem.decode())
        response = httpx.get(f"https://{self.dial_address}/health", verify=context, timeout=2.0)
        return response.status_code == 200


__all__ = ["FLOWER_DIR", "SuperLink", "SuperLinkSettings"]
