"""`fedota`: one command, a subcommand per part. Each part is imported only when its command runs,
so `fedota device ...` never loads the coordinator's code."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from fedota import __version__
from fedota.cli.errors import CliError

# gRPC core logs its own lines (a failed TLS handshake, say) unless told not to; our errors are
# one line on stderr. Set before any part imports grpc.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

# (subcommand, module under fedota.cli, one-line help). Each module has `register(subparsers)`.
SUBCOMMANDS: tuple[tuple[str, str, str], ...] = (
    ("coordinator", "coordinator", "run the coordinator (server) or migrate its database"),
    ("device", "device", "run the device daemon"),
    ("admin", "admin", "operate the fleet through a coordinator's Admin API"),
    ("demo", "demo", "start a coordinator and a few devices locally and show the fleet"),
    ("delta", "delta", "make, apply and inspect differential model patches"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fedota",
        description="Federated learning and over-the-air model updates for device fleets.",
    )
    parser.add_argument("--version", action="version", version=f"fedota {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module, help_text in SUBCOMMANDS:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        importlib.import_module(f"fedota.cli.{module}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except CliError as exc:
        print(f"fedota: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
