"""What the CLI tests share: the running fake coordinator, a CLI result, and a table reader."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cli_pki import ServerPki
from fake_admin import FakeAdmin


@dataclass(frozen=True)
class Coordinator:
    """A running fake coordinator and what an operator needs to reach it."""

    fake: FakeAdmin
    address: str
    api_token: str
    ca_path: Path
    pki: ServerPki


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


Run = Callable[..., Result]

# Header cells are separated by two or more spaces; a header may hold one space (`LAST SEEN`).
_HEADER_CELL = re.compile(r"\S+(?: \S+)*")


def parse_table(text: str) -> list[dict[str, str]]:
    """Rows of a printed table as {HEADER: cell}, cut at the header's column positions."""
    header, *lines = [line for line in text.splitlines() if line.strip()]
    cells = [(m.group(), m.start()) for m in _HEADER_CELL.finditer(header)]
    bounds = [start for _, start in cells[1:]] + [None]
    return [
        {name: line[start:end].strip() for (name, start), end in zip(cells, bounds, strict=True)}
        for line in lines
    ]
