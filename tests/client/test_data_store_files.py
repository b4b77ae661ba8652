"""The example store on disk: no raw text in any file, private modes, foreign and corrupt files
refused untouched, and no network anywhere in the package."""

from __future__ import annotations

import ast
import datetime as dt
import os
import socket
import sqlite3
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import fedota.client.data
from fedota.client.data import Desensitizer, Example, ExampleStore, StoreError

pytestmark = pytest.mark.timeout(60)
RAW = [
    "Alice Liddell",
    "alice@example.com",
    "+44 20 7946 0958",
    "4111 1111 1111 1111",
    "123-45-6789",
    "DE89 3704 0044 0532 0130 00",
    "192.168.7.42",
    "2001:db8::7",
]


def open_store(path: Path, max_age: dt.timedelta = dt.timedelta(days=1)) -> ExampleStore:
    return ExampleStore(
        path, max_bytes=1_000_000, max_age=max_age, desensitizer=Desensitizer(["Alice Liddell"])
    )


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "examples.db"


def files_bytes(db: Path) -> bytes:
    """The database and its WAL and shared-memory files, whichever exist."""
    return b"".join(p.read_bytes() for p in db.parent.iterdir() if p.name.startswith(db.name))


def test_raw_text_never_touches_disk(db: Path) -> None:
    store = open_store(db)
    try:
        for raw in RAW:
            store.add(Example(raw, text=f"note: {raw} (zebra)"))
        on_disk = files_bytes(db)  # while open: the WAL holds the commits
    finally:
        store.close()
    on_disk += files_bytes(db)  # after close: checkpointed into the database file
    assert b"(zebra)" in on_disk and b"<EMAIL>" in on_disk
    for raw in RAW:
        assert raw.encode() not in on_disk
        assert raw.replace(" ", "").encode() not in on_disk


def test_pruned_examples_do_not_linger_in_the_file(db: Path) -> None:
    store = open_store(db, max_age=dt.timedelta(seconds=60))
    for i in range(50):
        store.add(Example("l", text=f"quagga-{i:03d} " + "y" * 200))
    store.close()
    assert b"quagga-049" in files_bytes(db)
    clock = lambda: 2e9  # noqa: E731 - far in the future: everything is past max_age
    with ExampleStore(
        db, max_bytes=1_000_000, max_age=dt.timedelta(60), desensitizer=Desensitizer(), clock=clock
    ) as store:
        assert store.prune() == 50
    assert b"quagga" not in files_bytes(db)


def test_files_are_private(tmp_path: Path) -> None:
    db = tmp_path / "new" / "dir" / "examples.db"
    old_umask = os.umask(0o022)
    try:
        store = open_store(db)
    finally:
        os.umask(old_umask)
    try:
        store.add(Example("l", text="t"))
        modes = {p.name: p.stat().st_mode & 0o777 for p in db.parent.iterdir()}
        assert modes == {
            "examples.db": 0o600,
            "examples.db-wal": 0o600,
            "examples.db-shm": 0o600,
        }
        assert db.parent.stat().st_mode & 0o777 == 0o700
    finally:
        store.close()


def test_an_exposed_store_is_made_private(db: Path, caplog: pytest.LogCaptureFixture) -> None:
    open_store(db).close()
    db.chmod(0o644)
    with open_store(db) as store:
        store.add(Example("l", text="t"))
        modes = {p.name: p.stat().st_mode & 0o777 for p in db.parent.iterdir()}
    assert set(modes.values()) == {0o600}, modes
    assert "was open to other users (mode 644)" in caplog.text


def _foreign_sqlite(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE contacts (name TEXT)")
    conn.close()


def _other_application_id(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA application_id = 1234")
    conn.close()


def _newer_schema(path: Path) -> None:
    open_store(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    conn.close()


def _garbage(path: Path) -> None:
    path.write_bytes(b"this is a text file, not a database\n" * 200)


def _truncated(path: Path) -> None:
    store = open_store(path)
    for i in range(200):
        store.add(Example("l", text=f"row {i} " + "z" * 300))
    store.close()
    path.write_bytes(path.read_bytes()[: 3 * 4096 + 100])


def _smashed_page(path: Path) -> None:
    store = open_store(path)
    for i in range(200):
        store.add(Example("l", text=f"row {i} " + "z" * 300))
    store.close()
    data = bytearray(path.read_bytes())
    data[4 * 4096 : 6 * 4096] = b"\xa5" * (2 * 4096)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_garbage, "is not a usable example store .*not a database"),
        (_foreign_sqlite, "SQLite database of another program .*left untouched"),
        (_other_application_id, r"another program \(application_id 0x4d2"),
        (_newer_schema, "schema version 99; this version of fedota reads version 1 only"),
        (_truncated, "corrupt|not a usable example store"),
        (_smashed_page, "corrupt|not a usable example store"),
    ],
    ids=["garbage", "foreign", "other-application", "newer", "truncated", "smashed-page"],
)
def test_unusable_files_are_refused_untouched(db: Path, make: object, message: str) -> None:
    db.parent.mkdir(mode=0o700)
    make(db)  # type: ignore[operator]
    db.chmod(0o640)
    before = db.read_bytes()
    with pytest.raises(StoreError, match=message):
        open_store(db)
    assert db.read_bytes() == before
    assert db.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in db.parent.iterdir()) == ["examples.db"]


def test_a_directory_in_the_way_is_refused(db: Path) -> None:
    db.mkdir(parents=True)
    with pytest.raises(StoreError, match="is not a regular file"):
        open_store(db)


def test_an_empty_file_becomes_a_store(db: Path) -> None:
    db.parent.mkdir()
    db.touch(mode=0o600)
    with open_store(db) as store:
        store.add(Example("l", text="t"))
        assert store.stats().count == 1


def test_a_write_lock_held_too_long_is_a_store_error(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("fedota.client.data._schema.BUSY_TIMEOUT_SECONDS", 0.05)
    store = open_store(db)
    holder = sqlite3.connect(db, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreError, match=r"cannot add to the example store .*locked"):
            store.add(Example("l", text="t"))
        holder.execute("ROLLBACK")
        store.add(Example("l", text="t"))
        assert store.stats().count == 1
    finally:
        holder.close()
        store.close()


# -- the package never talks to the network -------------------------------------------------

PACKAGE = Path(fedota.client.data.__file__).parent
STDLIB_ALLOWED = {
    "__future__", "bisect", "collections", "contextlib", "dataclasses", "datetime", "ipaddress",
    "itertools", "logging", "math", "numbers", "os", "pathlib", "re", "sqlite3", "stat",
    "struct", "threading", "time", "types", "typing", "unicodedata",
}  # fmt: skip


def _imports(source: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.module and node.level == 0, f"{source}: relative import"
            yield node.module


@pytest.mark.parametrize("source", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_the_package_imports_no_network_module(source: Path) -> None:
    for name in _imports(source):
        if name.startswith("fedota."):
            assert name.startswith("fedota.client.data") or name == "fedota.client.errors", name
        else:
            assert name.split(".")[0] in STDLIB_ALLOWED, f"{source.name} imports {name}"


_watched = threading.local()
_network_events: list[str] = []


def _audit(event: str, args: tuple[object, ...]) -> None:
    if getattr(_watched, "on", False) and event.startswith(("socket.", "http.", "urllib.")):
        _network_events.append(event)


sys.addaudithook(_audit)


def test_a_whole_workflow_makes_no_network_call(db: Path) -> None:
    _watched.on = True
    try:
        with open_store(db) as store:
            for raw in RAW:
                store.add(Example("l", text=raw))
            store.add(Example("l", features=[1.0, 2.0]))
            list(store.examples())
            store.prune()
            store.stats()
    finally:
        _watched.on = False
    assert _network_events == []
    # The watch itself works: a socket opened under it is seen.
    _watched.on = True
    try:
        socket.socket().close()
    finally:
        _watched.on = False
    assert _network_events == ["socket.__new__"]
