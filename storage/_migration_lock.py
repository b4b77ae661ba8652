"""The lock every migration holds: a PostgreSQL advisory lock, or SQLite's write lock.

Both are taken at the start of the migration's one transaction and released by its commit or
rollback (or by the server when the process dies), so replicas starting together queue up instead
of running the same DDL twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from fedota.storage.errors import MigrationLockTimeout

# One constant for every fedota version, so old and new replicas exclude each other ("fedota").
ADVISORY_LOCK_KEY = int.from_bytes(b"fedota", "big")
# How long a migration waits for the lock, or for a table another process holds, before giving up.
DEFAULT_LOCK_TIMEOUT_S = 300.0


def engine_for(url: str, lock_timeout: float = DEFAULT_LOCK_TIMEOUT_S) -> Engine:
    """An unpooled engine for migration work (on SQLite: every transaction takes the write lock).

    Raises:
        sqlalchemy.exc.ArgumentError: the URL is malformed.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, poolclass=NullPool)
    engine = create_engine(parsed, poolclass=NullPool, connect_args={"timeout": lock_timeout})

    # pysqlite defers BEGIN until the first write; BEGIN IMMEDIATE takes the write lock up front so
    # two migrating processes serialise instead of both reading "empty" and both creating tables.
    @event.listens_for(engine, "connect")
    def _manual_transactions(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _is_lock_timeout(exc: OperationalError) -> bool:
    # 55P03 lock_not_available: PostgreSQL's lock_timeout expired; SQLite's busy timeout expired.
    return getattr(exc.orig, "sqlstate", None) == "55P03" or "database is locked" in str(exc.orig)


@contextmanager
def locked_transaction(url: str, lock_timeout: float) -> Iterator[Connection]:
    """One transaction holding the migration lock until it commits or rolls back.

    Raises:
        MigrationLockTimeout: the lock (or a table lock the DDL needs) was not had in time.
    """
    if lock_timeout <= 0:
        raise ValueError(f"lock_timeout must be > 0 seconds, got {lock_timeout}")
    engine = engine_for(url, lock_timeout)
    try:
        with engine.connect() as connection, connection.begin():
            if connection.dialect.name == "postgresql":
                connection.exec_driver_sql(f"SET LOCAL lock_timeout = {int(lock_timeout * 1000)}")
                # Transaction-scoped: released by the commit, or by the server if we die.
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY}
                )
            yield connection
    except OperationalError as exc:
        if not _is_lock_timeout(exc):
            raise
        raise MigrationLockTimeout(
            f"another process kept the database locked for over {lock_timeout:g}s (a migration "
            f"in progress, or a long transaction); nothing was changed, try again",
            timeout=lock_timeout,
        ) from exc
    finally:
        engine.dispose()


__all__ = ["ADVISORY_LOCK_KEY", "DEFAULT_LOCK_TIMEOUT_S"]
