"""`fedota coordinator serve|migrate`: run the coordinator, or bring its database up to date.

The server code is imported inside the handlers, so other commands never load it.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from fedota.cli.durations import parse_duration
from fedota.cli.errors import EXIT_USAGE, CliError

DEFAULT_LISTEN = "127.0.0.1:7443"
DEFAULT_CERT_LIFETIME = "30d"
DEFAULT_HEARTBEAT = "30s"


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (1 to 65535)")
    return int(text)


def _add_data_and_db(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        metavar="DIR",
        type=Path,
        required=True,
        help="data directory: fleet CA, server certificate, admin token, SQLite database",
    )
    parser.add_argument(
        "--db",
        metavar="URL",
        help="database URL, e.g. postgresql+psycopg://user@host/db (default: SQLite under DIR)",
    )


def register(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="coordinator_command", metavar="COMMAND", required=True)

    serve = commands.add_parser(
        "serve",
        help="serve the Fleet and Admin APIs until SIGTERM or Ctrl-C",
        description="Serve the Fleet and Admin gRPC APIs. The public port (TLS) takes "
        "enrollments and operator calls; the device port (mutual TLS) takes device calls.",
    )
    _add_data_and_db(serve)
    serve.add_argument(
        "--listen",
        metavar="HOST:PORT",
        default=DEFAULT_LISTEN,
        help=f"public address: enrollment and Admin API (default {DEFAULT_LISTEN}; port 0: any)",
    )
    serve.add_argument(
        "--device-listen",
        metavar="HOST:PORT",
        help="device (mTLS) address (default: the public host, public port + 1)",
    )
    serve.add_argument(
        "--repository-listen",
        metavar="HOST:PORT",
        help="read-only HTTP update repository, TUF layout (default: the public host, public "
        "port + 2)",
    )
    federation = serve.add_mutually_exclusive_group()
    federation.add_argument(
        "--federation-listen",
        metavar="HOST:PORT",
        help="the Flower SuperLink for training campaigns (default: the public host, public "
        "port + 3)",
    )
    federation.add_argument(
        "--no-federation",
        action="store_true",
        help="run no SuperLink: devices update and serve models but take no part in training",
    )
    serve.add_argument(
        "--advertise-device-port",
        metavar="N",
        type=_port,
        help="device port to tell enrolling devices, when a port mapping changes it",
    )
    serve.add_argument(
        "--san",
        metavar="NAME",
        action="append",
        default=[],
        help="extra IP address or DNS name for the server certificate (repeatable)",
    )
    serve.add_argument(
        "--cert-lifetime",
        metavar="DURATION",
        type=parse_duration,
        default=parse_duration(DEFAULT_CERT_LIFETIME),
        help=f"lifetime of device certificates (default {DEFAULT_CERT_LIFETIME})",
    )
    serve.add_argument(
        "--heartbeat-interval",
        metavar="DURATION",
        type=parse_duration,
        default=parse_duration(DEFAULT_HEARTBEAT),
        help=f"how often devices heartbeat (default {DEFAULT_HEARTBEAT})",
    )
    serve.add_argument(
        "--no-migrate",
        action="store_true",
        help="do not upgrade the database on start; refuse to start if it is not current",
    )
    serve.set_defaults(handler=_serve)

    migrate = commands.add_parser(
        "migrate",
        help="upgrade the database to this version's schema and print its revision",
        description="Upgrade the coordinator's database to the newest schema revision.",
    )
    _add_data_and_db(migrate)
    migrate.set_defaults(handler=_migrate)


def _configure_logging() -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _settings(args: argparse.Namespace) -> Any:
    from fedota.server import Address, Limits, Settings

    try:
        listen = Address.parse(args.listen)
        device_listen = Address.parse(args.device_listen) if args.device_listen else None
        repository_listen = (
            Address.parse(args.repository_listen) if args.repository_listen else None
        )
        federation_listen = None
        if args.federation_listen:
            federation_listen = Address.parse(args.federation_listen)
        elif not args.no_federation:
            federation_listen = listen.with_port(listen.port + 3 if listen.port else 0)
    except ValueError as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc
    try:
        limits = Limits(
            certificate_lifetime=args.cert_lifetime,
            heartbeat_interval=args.heartbeat_interval,
        )
    except ValueError as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc
    return Settings(
        data_dir=args.data,
        db_url=args.db,
        listen=listen,
        device_listen=device_listen,
        repository_listen=repository_listen,
        federation_listen=federation_listen,
        advertise_device_port=args.advertise_device_port,
        sans=tuple(args.san),
        migrate=not args.no_migrate,
        limits=limits,
    )


def _serve(args: argparse.Namespace) -> int:
    from fedota.server import Coordinator, StartupError

    _configure_logging()
    settings = _settings(args)
    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        logging.getLogger("fedota.server").info("%s: stopping", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        try:
            coordinator = Coordinator.start(settings)
        except StartupError as exc:
            raise CliError(str(exc), EXIT_USAGE) from exc
        if coordinator.admin_token is not None:
            print(
                "Created operator 'admin'. Its API token is shown once here and stored in "
                f"{coordinator.admin_token_path} (0600):\n{coordinator.admin_token}"
            )
        federation = coordinator.federation
        print(
            f"coordinator ready: public {coordinator.public}, devices {coordinator.device}, "
            f"update repository http://{coordinator.repository.address}/, federation "
            + (f"{federation.address}" if federation is not None else "off")
        )
        sys.stdout.flush()
        try:
            stop.wait()
        finally:
            coordinator.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import ArgumentError, OperationalError

    from fedota.storage import migrate
    from fedota.storage.db import default_url
    from fedota.storage.errors import SchemaOutOfDate

    url = args.db or default_url(args.data)
    if args.db is None:
        try:
            args.data.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise CliError(f"cannot use data directory {args.data}: {exc.strerror or exc}") from exc
    try:
        migrate.upgrade(url)
        revision = migrate.current_revision(url)
    except (ArgumentError, ImportError) as exc:
        raise CliError(f"{url!r} is not a usable database URL: {exc}") from exc
    except SchemaOutOfDate as exc:
        raise CliError(str(exc)) from exc
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        raise CliError(f"cannot use the database: {reason}") from exc
    print(f"database at schema revision {revision}")
    return 0
