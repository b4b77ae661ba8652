"""The shape every `fedota admin` command shares: connection flags, --json, and the run wrapper."""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Callable
from typing import Any

from fedota.cli._admin_client import (
    ENV_CA_CERT,
    ENV_COORDINATOR,
    ENV_TOKEN,
    AdminClient,
    AdminSettings,
)

Command = Callable[[argparse.Namespace, AdminClient], None]


def connection_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    # On `admin` itself with real defaults; on each command with SUPPRESS, so a flag given after
    # the command fills the same attribute and one not given there leaves the earlier value alone.
    default = argparse.SUPPRESS if suppress else None
    group = parser.add_argument_group("connection")
    group.add_argument(
        "--coordinator",
        metavar="HOST:PORT",
        default=default,
        help=f"the coordinator's public address (default: ${ENV_COORDINATOR})",
    )
    group.add_argument(
        "--token",
        default=default,
        help=f"operator API token, fdta1.… (default: ${ENV_TOKEN}; prefer it: flags show in ps)",
    )
    group.add_argument(
        "--ca-cert",
        metavar="FILE",
        default=default,
        help=f"fleet CA certificate, PEM (default: ${ENV_CA_CERT}; else the CA the token pins)",
    )
    group.add_argument(
        "--timeout",
        type=positive_float,
        metavar="SECONDS",
        default=default,
        help="deadline of each call (default: 10)",
    )


def group(groups: Any, name: str, help_text: str) -> Any:
    parser = groups.add_parser(name, help=help_text, description=help_text)
    return parser.add_subparsers(dest=f"{name}_command", metavar="COMMAND", required=True)


def command(commands: Any, name: str, help_text: str, run: Command) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        name, help=help_text, description=help_text
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    connection_options(parser, suppress=True)
    parser.set_defaults(handler=lambda args: _run(run, args))
    return parser


def _run(command: Command, args: argparse.Namespace) -> int:
    settings = AdminSettings.resolve(
        coordinator=args.coordinator, token=args.token, ca_cert=args.ca_cert, timeout=args.timeout
    )
    with AdminClient(settings) as client:
        command(args, client)
    return 0


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


__all__ = [
    "Command",
    "command",
    "connection_options",
    "group",
    "now",
    "positive_float",
    "positive_int",
]
