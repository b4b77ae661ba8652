"""The coordinator process: one gRPC server on a public TLS port and an mTLS device port.

gRPC Python cannot make client certificates optional on one port, so enrollment and the Admin
API (server-authenticated TLS) and the device calls (mutual TLS against the fleet CA) listen on
two ports of the same server.
"""

from __future__ import annotations

import datetime as dt
import logging
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from sqlalchemy.exc import ArgumentError, OperationalError

from fedota.protos.v1 import admin_pb2, fleet_pb2, updates_pb2
from fedota.server import bootstrap as boot
from fedota.server.admin_service import AdminService
from fedota.server.config import Address, Limits, Settings
from fedota.server.errors import StartupError
from fedota.server.federation.running import CampaignStorage, Federation
from fedota.server.files import ensure_private_dir
from fedota.server.fleet_service import FleetService
from fedota.server.pki import (
    CA_CERT,
    CA_KEY,
    ensure_server_certificate,
    load_or_create_ca,
    parse_san,
)
from fedota.server.releases import (
    CoordinatorSecret,
    CoordinatorSecretError,
    MetadataStore,
    SigningKeyError,
    TufConfig,
    TufRepositoryError,
)
from fedota.server.rpc import add_service
from fedota.server.runtime import Runtime
from fedota.server.updates.http import RepositoryHTTPServer
from fedota.server.updates.resigning import Resigner
from fedota.server.updates.service import UpdatesService
from fedota.storage import migrate
from fedota.storage.db import Database, default_url
from fedota.storage.errors import SchemaOutOfDate
from fedota.storage.local_blobs import LocalBlobStore
from fedota.storage.types import utcnow

logger = logging.getLogger("fedota.server")

FLEET_SERVICE = fleet_pb2.DESCRIPTOR.services_by_name["Fleet"]
ADMIN_SERVICE = admin_pb2.DESCRIPTOR.services_by_name["Admin"]
UPDATES_SERVICE = updates_pb2.DESCRIPTOR.services_by_name["Updates"]
SERVICES = (FLEET_SERVICE, ADMIN_SERVICE, UPDATES_SERVICE)
# Inside the data directory: the content-addressed blobs, and scratch space for uploads/builds.
BLOBS_DIR = "blobs"
WORK_DIR = "work"


def _open_database(url: str, run_migrations: bool) -> Database:
    """Raises:
    StartupError: a malformed URL, an unreachable database, or a schema this code can't run on.
    """
    try:
        database = Database(url)
    except (ArgumentError, ImportError) as exc:
        raise StartupError(f"{url!r} is not a usable database URL: {exc}") from exc
    shown = database.url.render_as_string(hide_password=True)
    try:
        if run_migrations:
            migrate.upgrade(url)
        else:
            migrate.require_up_to_date(url)
    except SchemaOutOfDate as exc:
        database.dispose()
        raise StartupError(str(exc)) from exc
    except OperationalError as exc:
        database.dispose()
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        raise StartupError(f"cannot use the database {shown}: {reason}") from exc
    return database


def _sans(extra: tuple[str, ...]) -> list[x509.GeneralName]:
    """Loopback, this host's name (when it is a usable DNS name), then the operator's extras.

    Raises:
        StartupError: an extra name is neither an IP address nor a DNS name.
    """
    names: list[x509.GeneralName] = [parse_san(t) for t in ("127.0.0.1", "::1", "localhost")]
    try:
        host = parse_san(socket.gethostname())
    except ValueError:
        logger.warning(
            "host name %r is not a DNS name; left out of the certificate", socket.gethostname()
        )
    else:
        names.append(host)
    for text in extra:
        try:
            names.append(parse_san(text))
        except ValueError as exc:
            raise StartupError(f"server certificate name: {exc}") from exc
    return list(dict.fromkeys(names))


def _update_metadata(
    database: Database, blobs: LocalBlobStore, data_dir: Path, config: TufConfig, now: dt.datetime
) -> MetadataStore:
    """The TUF repository, initialised (a key per role, first metadata) on the first start.

    Raises:
        StartupError: the signing secret is unusable, or the stored metadata or keys are.
    """
    try:
        secret = CoordinatorSecret.load_or_create(data_dir)
        store = MetadataStore(database, blobs, secret, config)
        store.load_or_initialize(now)
    except (CoordinatorSecretError, SigningKeyError, TufRepositoryError) as exc:
        raise StartupError(f"update signing: {exc}") from exc
    except OSError as exc:
        raise StartupError(f"update signing: {exc.strerror or exc}") from exc
    return store


def _bind_repository(address: Address) -> RepositoryHTTPServer:
    try:
        return RepositoryHTTPServer(address)
    except OSError:
        raise StartupError(
            f"cannot listen on {address}: the address is in use or not available here"
        ) from None


def _bind(server: grpc.Server, address: Address, credentials: grpc.ServerCredentials) -> int:
    try:
        port = server.add_secure_port(str(address), credentials)
    except RuntimeError:
        port = 0
    if not port:
        raise StartupError(
            f"cannot listen on {address}: the address is in use or not available here"
        )
    return port


def _new_server(limits: Limits) -> grpc.Server:
    return grpc.server(
        ThreadPoolExecutor(max_workers=limits.thread_pool_size, thread_name_prefix="rpc"),
        options=[
            # Without this, a second coordinator could silently share a port with the first.
            ("grpc.so_reuseport", 0),
            ("grpc.max_receive_message_length", limits.max_message_bytes),
            ("grpc.max_send_message_length", limits.max_message_bytes),
        ],
    )


def _add_services(server: grpc.Server, runtime: Runtime) -> health.HealthServicer:
    """Fleet, Admin, Updates, health checking (all SERVING) and reflection; returns the health
    servicer."""
    add_service(server, FLEET_SERVICE, FleetService(runtime))
    add_service(server, ADMIN_SERVICE, AdminService(runtime))
    add_service(server, UPDATES_SERVICE, UpdatesService(runtime))
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = tuple(service.full_name for service in SERVICES)
    for name in ("", *names):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        (*names, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    return health_servicer


@dataclass
class Coordinator:
    """A started coordinator; `stop()` ends it."""

    server: grpc.Server
    database: Database
    health: health.HealthServicer
    public: Address
    device: Address
    # Set on the first start only: the admin's API token, also in DATA/admin-token.
    admin_token: str | None
    ca_certificate_pem: bytes
    limits: Limits
    data_dir: Path
    repository: RepositoryHTTPServer
    # Re-signs update metadata before it expires.
    resigner: Resigner
    # The Flower SuperLink and the campaign runner; None when started without a federation.
    federation: Federation | None = None

    @property
    def admin_token_path(self) -> Path:
        """Where the first admin's API token is kept for scripts (0600)."""
        return self.data_dir / boot.ADMIN_TOKEN_FILE

    @classmethod
    def start(cls, settings: Settings, *, clock: Callable[[], dt.datetime] = utcnow) -> Coordinator:
        """Prepare the data directory and database, bind both ports and start serving.
        `clock` is what every call and the re-signing thread take as now (tests move it).

        Raises:
            StartupError: unusable data directory, database or address; CA files that do not
                match the database.
        """
        data_dir = Path(settings.data_dir)
        try:
            shared = ensure_private_dir(data_dir)
        except OSError as exc:
            raise StartupError(
                f"cannot use data directory {data_dir}: {exc.strerror or exc}"
            ) from exc
        if shared:
            # Secrets in it are 0600 regardless; the directory's own mode is the operator's call.
            logger.warning("data directory %s is open to other users; 0700 is safer", data_dir)
        database = _open_database(settings.db_url or default_url(data_dir), settings.migrate)
        try:
            return cls._start(settings, data_dir, database, clock)
        except BaseException:
            database.dispose()
            raise

    @classmethod
    def _start(
        cls,
        settings: Settings,
        data_dir: Path,
        database: Database,
        clock: Callable[[], dt.datetime],
    ) -> Coordinator:
        limits, now = settings.limits, clock()
        sans = _sans(settings.sans)
        has_ca = (data_dir / CA_KEY).exists() or (data_dir / CA_CERT).exists()
        boot.check_ca_matches(database, data_dir, has_ca, None)
        try:
            ca, created = load_or_create_ca(data_dir, boot.DEFAULT_FLEET, limits.ca_lifetime, now)
            boot.check_ca_matches(database, data_dir, True, ca)
            key_pem, chain_pem = ensure_server_certificate(
                data_dir,
                ca,
                sans,
                limits.server_certificate_lifetime,
                limits.server_certificate_min_remaining,
                now,
            )
            blobs = LocalBlobStore(data_dir / BLOBS_DIR)
            work_dir = data_dir / WORK_DIR
            work_dir.mkdir(mode=0o700, exist_ok=True)
        except OSError as exc:
            raise StartupError(
                f"cannot write to data directory {data_dir}: {exc.strerror or exc}"
            ) from exc
        if created:
            logger.info("created the fleet CA %s in %s", ca.sha256[:16], data_dir)

        server = _new_server(limits)
        repository: RepositoryHTTPServer | None = None
        resigner: Resigner | None = None
        federation: Federation | None = None
        try:
            # Bound before bootstrap, so a busy port leaves the database as it was.
            pair = [(key_pem, chain_pem)]
            public_port = _bind(server, settings.listen, grpc.ssl_server_credentials(pair))
            device_address = settings.device_address()
            device_port = _bind(
                server,
                device_address,
                grpc.ssl_server_credentials(
                    pair, root_certificates=ca.certificate_pem, require_client_auth=True
                ),
            )
            repository = _bind_repository(settings.repository_address())
            try:
                admin_token = boot.bootstrap(database, data_dir, ca, now)
            except OSError as exc:
                raise StartupError(
                    f"cannot write to data directory {data_dir}: {exc.strerror or exc}"
                ) from exc
            tuf = _update_metadata(database, blobs, data_dir, settings.tuf, now)
            if settings.federation_listen is not None:
                storage = CampaignStorage(
                    database.url.render_as_string(hide_password=False), blobs.root, work_dir
                )
                federation = Federation.start(
                    data_dir, ca, database, settings.federation_listen, settings.sans, now, storage
                )
            runtime = Runtime(
                database,
                ca,
                limits,
                settings.advertise_device_port or device_port,
                blobs,
                work_dir,
                tuf,
                clock,
                federation.address.port if federation is not None else 0,
                federation.campaigns if federation is not None else None,
            )
            health_servicer = _add_services(server, runtime)
            repository.start(runtime)
            server.start()
            resigner = Resigner(tuf, clock)
            resigner.start()
        except BaseException:
            if resigner is not None:
                resigner.stop()
            if federation is not None:
                federation.stop()
            server.stop(None)
            if repository is not None:
                repository.stop()
            raise
        coordinator = cls(
            server,
            database,
            health_servicer,
            settings.listen.with_port(public_port),
            device_address.with_port(device_port),
            admin_token,
            ca.certificate_pem,
            limits,
            data_dir,
            repository,
            resigner,
            federation,
        )
        logger.info(
            "serving: public %s, devices %s, update repository http://%s/",
            coordinator.public,
            coordinator.device,
            repository.address,
        )
        return coordinator

    def stop(self, grace: float | None = None) -> None:
        """Refuse new calls, let running ones finish for up to `grace` seconds (default: the
        limits' shutdown grace), then release the database."""
        self.health.enter_graceful_shutdown()
        self.resigner.stop()
        if self.federation is not None:
            self.federation.stop()
        self.repository.stop()
        self.server.stop(self.limits.shutdown_grace_seconds if grace is None else grace).wait()
        self.database.dispose()
