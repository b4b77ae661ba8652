"""`fedota` and every command under it answer --help; the device side never loads the server."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest

from fedota.cli.main import build_parser, main

TOP_LEVEL = {"coordinator", "device", "admin", "delta", "demo"}


Path = tuple[str, ...]


def _commands(parser: argparse.ArgumentParser, path: Path = ()) -> Iterator[Path]:
    """Every command path in the parser tree, parents before children."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield (*path, name)
                yield from _commands(child, (*path, name))


COMMANDS = list(_commands(build_parser()))


def test_the_top_level_lists_every_part(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])

    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for name in TOP_LEVEL:
        assert re.search(rf"^ +{name}\b", out, re.MULTILINE), f"`fedota --help` lacks {name}"
    assert {path[0] for path in COMMANDS} == TOP_LEVEL


def test_the_tree_is_deeper_than_the_top() -> None:
    # The walk must reach sub-subcommands, or the parametrized test below proves little.
    assert ("admin", "devices", "list") in COMMANDS
    assert max(len(path) for path in COMMANDS) >= 3


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_every_command_has_help(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([*path, "--help"])

    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: fedota {' '.join(path)}")


PROBE = """
import json, sys
from fedota.cli.main import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)))
"""
COORDINATOR_ONLY = ("fedota.server", "fedota.storage", "sqlalchemy", "alembic")
_PREFIXES = tuple(f"{name}." for name in COORDINATOR_ONLY)


@pytest.mark.parametrize(
    "args",
    [("device", "--help"), ("device", "run", "--help"), ("admin", "devices", "list", "--help")],
    ids=" ".join,
)
def test_device_and_admin_help_load_no_coordinator_code(args: tuple[str, ...]) -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    loaded = json.loads(result.stdout.splitlines()[-1])

    wrong = [m for m in loaded if m in COORDINATOR_ONLY or m.startswith(_PREFIXES)]
    assert not wrong, f"`fedota {' '.join(args)}` loaded coordinator code: {wrong}"
