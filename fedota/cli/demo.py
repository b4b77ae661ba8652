"""`fedota demo`: filled in by its part."""

from __future__ import annotations

import argparse


def register(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(handler=lambda args: parser.print_help())
