"""Replicas that migrate one database at the same time take turns: one runs the DDL, once."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from fedota.storage.errors import MigrationLockTimeout
from fedota.storage.migrate import ADVISORY_LOCK_KEY, current_revision, head_revision, upgrade

UPGRADE = "import sys; from fedota.storage.migrate import upgrade; upgrade(sys.argv[1])"
DEADLINE_S = 90


def _start_upgrade(url: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", UPGRADE, url], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


def _finish(process: subprocess.Popen[bytes]) -> tuple[int, str]:
    output, _ = process.communicate(timeout=DEADLINE_S)
    return process.returncode, output.decode(errors="replace")


def _kill(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


@contextmanager
def _holding_migration_lock(url: str) -> Iterator[None]:
    """Hold the lock `upgrade` takes (PostgreSQL advisory lock, SQLite write lock) meanwhile."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        assert parsed.database is not None
        raw = sqlite3.connect(parsed.database, isolation_level=None)
        try:
            raw.execute("BEGIN IMMEDIATE")
            yield
            raw.execute("ROLLBACK")
        finally:
            raw.close()
        return
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn, conn.begin():
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": ADVISORY_LOCK_KEY})
            yield
    finally:
        engine.dispose()


def test_upgrade_waits_while_another_holds_the_migration_lock(empty_db_url: str) -> None:
    processes: list[subprocess.Popen[bytes]] = []
    try:
        with _holding_migration_lock(empty_db_url):
            processes.append(_start_upgrade(empty_db_url))
            # Long enough for the child to import and reach the lock; it must still be waiting.
            time.sleep(3)
            assert processes[0].poll() is None, _finish(processes[0])
        # Checked after the lock is gone, so reading cannot be what blocks.
        assert _finish(processes[0])[0] == 0
        assert current_revision(empty_db_url) == head_revision()
    finally:
        _kill(processes)


def test_replicas_upgrading_at_once_all_succeed(empty_db_url: str) -> None:
    processes: list[subprocess.Popen[bytes]] = []
    try:
        # Started under the lock, so all of them are racing for it when it is released.
        with _holding_migration_lock(empty_db_url):
            processes = [_start_upgrade(empty_db_url) for _ in range(4)]
            time.sleep(3)
        results = [_finish(process) for process in processes]
        assert [code for code, _ in results] == [0] * 4, results
        assert current_revision(empty_db_url) == head_revision()
    finally:
        _kill(processes)


def test_upgrade_gives_up_after_its_lock_timeout_and_changes_nothing(empty_db_url: str) -> None:
    with _holding_migration_lock(empty_db_url):
        started = time.monotonic()
        with pytest.raises(MigrationLockTimeout) as raised:
            upgrade(empty_db_url, lock_timeout=1)
        assert 0.9 <= time.monotonic() - started < 30
    assert raised.value.timeout == 1
    assert current_revision(empty_db_url) is None
    with pytest.raises(ValueError, match="lock_timeout"):
        upgrade(empty_db_url, lock_timeout=0)
