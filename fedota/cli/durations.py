"""Durations on the command line: `90s`, `15m`, `24h`, `30d` (or a bare number of seconds)."""

from __future__ import annotations

import argparse
import datetime as dt
import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> dt.timedelta:
    """Parse `30s`, `15m`, `24h`, `30d`, `2w` or plain seconds into a positive timedelta.

    Raises:
        argparse.ArgumentTypeError: not a duration, or not positive (argparse prints it as usage).
    """
    match = _DURATION.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration (use a number with s, m, h, d or w, e.g. 24h)"
        )
    seconds = float(match[1]) * _UNIT_SECONDS[match[2]]
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a duration must be positive")
    return dt.timedelta(seconds=seconds)


def format_duration(delta: dt.timedelta) -> str:
    """The shortest exact form: 86400 s -> `1d`, 90 s -> `90s`."""
    seconds = int(delta.total_seconds())
    for unit in ("w", "d", "h", "m"):
        if seconds and seconds % _UNIT_SECONDS[unit] == 0:
            return f"{seconds // _UNIT_SECONDS[unit]}{unit}"
    return f"{seconds}s"
