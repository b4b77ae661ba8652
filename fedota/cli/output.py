"""How the CLI prints results: rich tables for people, one JSON document for scripts.

Everything writes to the `sys.stdout` of the moment of the call (so redirection and pytest's
capture see it); diagnostics belong on stderr and are not printed here.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

# When stdout is a pipe or a file, rich would fold rows at 80 columns; a script that greps a
# table wants one row per line, so use a wide page unless COLUMNS says otherwise.
_PIPE_WIDTH = 200


def console() -> Console:
    """A rich console on the current stdout (colour only on a terminal, NO_COLOR honoured)."""
    out = Console(file=sys.stdout, highlight=False, soft_wrap=False)
    if not out.is_terminal and "COLUMNS" not in os.environ:
        out = Console(file=sys.stdout, highlight=False, soft_wrap=False, width=_PIPE_WIDTH)
    return out


def print_json(document: Any) -> None:
    """Print exactly one JSON document (and a newline) to stdout."""
    sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def print_table(
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    empty: str = "nothing to show",
    title: str | None = None,
) -> None:
    """Print rows under upper-case column headers; `empty` instead when there are no rows."""
    out = console()
    if not rows:
        out.print(empty)
        return
    table = Table(box=None, header_style="bold", title=title, title_justify="left", pad_edge=False)
    for column in columns:
        table.add_column(column.upper(), no_wrap=True, overflow="ignore")
    for row in rows:
        # Text, not str: a label like `[x]` must print as itself, not as rich markup.
        table.add_row(*(Text(cell) for cell in row))
    out.print(table)


def print_fields(fields: Mapping[str, str], *, title: str | None = None) -> None:
    """Print one record as aligned `name  value` lines (for `show` commands)."""
    table = Table(box=None, show_header=False, title=title, title_justify="left", pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for name, value in fields.items():
        table.add_row(Text(name), Text(value))
    console().print(table)


def print_line(text: str) -> None:
    """Print one plain line to stdout (no rich markup is interpreted)."""
    console().print(text, markup=False)


def relative_time(when: dt.datetime | None, now: dt.datetime, *, missing: str = "never") -> str:
    """`12s ago`, `3h ago`, `in 29d`; `missing` for None. Rounded down to the largest unit."""
    if when is None:
        return missing
    seconds = int((now - when).total_seconds())
    text = _compact(abs(seconds))
    if seconds >= 0:
        return "just now" if seconds < 1 else f"{text} ago"
    return f"in {text}"


def _compact(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def iso(when: dt.datetime | None) -> str | None:
    """ISO 8601 in UTC with a `Z` suffix, or None."""
    if when is None:
        return None
    return when.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def human_bytes(count: int) -> str:
    """1536 -> `1.5 KiB`."""
    if count < 1024:
        return f"{count} B"
    size = float(count)
    for unit in ("KiB", "MiB", "GiB"):
        size /= 1024
        if size < 1024:
            return f"{size:.1f} {unit}"
    return f"{size / 1024:.1f} TiB"


def format_labels(labels: Mapping[str, str]) -> str:
    """`k=v,k2=v2` sorted by key, or `-`."""
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "-"


__all__ = [
    "console",
    "format_labels",
    "human_bytes",
    "iso",
    "print_fields",
    "print_json",
    "print_line",
    "print_table",
    "relative_time",
]
