"""The device's local example store: desensitised examples in one private SQLite file.

Text (and the label) goes through the `Desensitizer` before the INSERT, so raw text never
reaches the database file, its WAL or its journal. The store keeps to two limits: examples
older than `max_age` are deleted, and then the oldest until the payload (label, source, text
as UTF-8 or features as 8-byte floats) is at most `max_bytes`; `add` does both in the same
transaction as the insert, so no reader ever sees the store over its limits, and `examples`
never yields an example older than `max_age` even before a prune removed it.

Nothing in this package opens a socket or sends data anywhere: examples leave the store only
through `examples()`, to the local training loop, which uploads model updates, never data.

One store object may be shared by the threads of a process (one connection behind a lock);
other processes may open the same file (SQLite WAL with a busy timeout).
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from fedota.client.data._schema import open_database
from fedota.client.data.desensitize import Desensitizer
from fedota.client.data.errors import InvalidExample, StoreError
from fedota.client.data.example import Example, StoredExample

# The store's file in a device's state directory: the daemon writes it, the ClientApp reads it.
STORE_FILE = "examples.db"

_PAGE = 256
_FIELDS = "created_at, label, text, features, source, payload_bytes"
_COLUMNS = "id, created_at, label, text, features, source"


@dataclass(frozen=True)
class StoreStats:
    """What the store holds: examples, payload bytes, and the oldest and newest times (UTC)."""

    count: int
    payload_bytes: int
    oldest: dt.datetime | None
    newest: dt.datetime | None


class ExampleStore:
    """Desensitised labelled examples on disk, bounded in size and age.

    Args:
        path: the database file (created 0600, its directory 0700, when missing).
        max_bytes: the most payload bytes the store keeps.
        max_age: examples older than this are deleted.
        desensitizer: applied to every text and label before it is stored.
        clock: seconds since the epoch (injected by tests).

    Raises:
        StoreError: the file cannot be created or opened, or is not an example store this
            version can read (see `fedota.client.data._schema`); it is left untouched.
        ValueError: `max_bytes` or `max_age` is not positive.
    """

    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int,
        max_age: dt.timedelta,
        desensitizer: Desensitizer,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        if max_age <= dt.timedelta(0):
            raise ValueError(f"max_age must be positive, got {max_age}")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.max_age = max_age
        self._desensitizer = desensitizer
        self._clock = clock
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = open_database(self.path)

    def add(self, example: Example) -> int:
        """Desensitise and store `example`, pruning to the limits; returns its id.

        Raises:
            InvalidExample: once desensitised it is larger than `max_bytes` on its own.
            StoreError: SQLite failed (disk full, file corrupt, locked past the busy timeout).
            RuntimeError: the store is closed.
            TypeError: `example` is not an Example.
        """
        if not isinstance(example, Example):
            raise TypeError(f"add takes an Example, got {type(example).__name__}")
        label = self._desensitizer.scrub(example.label).text
        text = None if example.text is None else self._desensitizer.scrub(example.text).text
        blob = None if example.features is None else _pack(example.features)
        payload = len(label.encode()) + len(example.source.encode())
        payload += len(text.encode()) if text is not None else len(blob or b"")
        if payload > self.max_bytes:
            raise InvalidExample(
                "example",
                f"the example is {payload} bytes once desensitised, more than the store's "
                f"max_bytes of {self.max_bytes}",
            )
        with self._transaction("add to") as conn:
            cursor = conn.execute(
                f"INSERT INTO examples ({_FIELDS}) VALUES (?, ?, ?, ?, ?, ?)",
                (self._clock(), label, text, blob, example.source, payload),
            )
            row_id = cursor.lastrowid
            self._prune(conn)
        assert row_id is not None
        return row_id

    def examples(
        self,
        *,
        kind: Literal["text", "features"] | None = None,
        limit: int | None = None,
    ) -> Iterator[StoredExample]:
        """Stored examples younger than `max_age`, oldest first, at most `limit` of them.

        Rows are read a page at a time, so other threads may add while a caller iterates.

        Raises:
            ValueError: `kind` is not "text", "features" or None, or `limit` is negative.
            StoreError (while iterating): SQLite failed or a row is corrupt.
            RuntimeError (while iterating): the store was closed.
        """
        if kind not in (None, "text", "features"):
            raise ValueError(f"kind must be 'text', 'features' or None, got {kind!r}")
        if limit is not None and limit < 0:
            raise ValueError(f"limit must not be negative, got {limit}")
        return self._iterate(kind, limit, self._clock() - self.max_age.total_seconds())

    def prune(self) -> int:
        """Delete examples older than `max_age`, then the oldest above `max_bytes`; how many.

        Raises:
            StoreError: SQLite failed.
            RuntimeError: the store is closed.
        """
        with self._transaction("prune") as conn:
            return self._prune(conn)

    def stats(self) -> StoreStats:
        """Counts as stored (examples past `max_age` count until pruned).

        Raises:
            StoreError: SQLite failed.
            RuntimeError: the store is closed.
        """
        with self._connection("read") as conn:
            count, payload, oldest, newest = conn.execute(
                "SELECT count, payload_bytes, (SELECT min(created_at) FROM examples),"
                " (SELECT max(created_at) FROM examples) FROM totals"
            ).fetchone()
        return StoreStats(count, payload, _time(oldest), _time(newest))

    def close(self) -> None:
        """Close the database; later calls raise RuntimeError. Closing twice is harmless."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> ExampleStore:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------------

    @contextmanager
    def _connection(self, what: str) -> Iterator[sqlite3.Connection]:
        """The connection, held under the lock; SQLite errors become StoreError."""
        with self._lock:
            conn = self._conn
            if conn is None:
                raise RuntimeError(f"the example store {self.path} is closed")
            try:
                yield conn
            except sqlite3.Error as exc:
                raise StoreError(f"cannot {what} the example store {self.path}: {exc}") from exc

    @contextmanager
    def _transaction(self, what: str) -> Iterator[sqlite3.Connection]:
        """The connection inside one write transaction, committed only if the block succeeds."""
        with self._connection(what) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _prune(self, conn: sqlite3.Connection) -> int:
        cutoff = self._clock() - self.max_age.total_seconds()
        removed = conn.execute("DELETE FROM examples WHERE created_at < ?", (cutoff,)).rowcount
        excess = conn.execute("SELECT payload_bytes FROM totals").fetchone()[0] - self.max_bytes
        if excess > 0:
            # Oldest first by id (arrival order), which a clock stepped backwards cannot reorder.
            cursor = conn.execute("SELECT id, payload_bytes FROM examples ORDER BY id")
            last_id = 0
            for row_id, size in cursor:
                last_id = row_id
                excess -= size
                if excess <= 0:
                    break
            cursor.close()
            removed += conn.execute("DELETE FROM examples WHERE id <= ?", (last_id,)).rowcount
        if removed:
            conn.execute("PRAGMA incremental_vacuum").fetchall()
        return removed

    def _iterate(
        self, kind: str | None, limit: int | None, cutoff: float
    ) -> Iterator[StoredExample]:
        where = {None: "", "text": " AND text IS NOT NULL", "features": " AND features IS NOT NULL"}
        query = (
            f"SELECT {_COLUMNS} FROM examples WHERE id > ? AND created_at >= ?{where[kind]}"
            " ORDER BY id LIMIT ?"
        )
        after, left = 0, limit
        while left is None or left > 0:
            page = _PAGE if left is None else min(_PAGE, left)
            with self._connection("read") as conn:
                rows = conn.execute(query, (after, cutoff, page)).fetchall()
            for row in rows:
                yield self._decode(row)
            if len(rows) < page:
                return
            after = rows[-1][0]
            left = None if left is None else left - len(rows)

    def _decode(self, row: tuple[Any, ...]) -> StoredExample:
        row_id, created_at, label, text, blob, source = row
        features = None
        if blob is not None:
            if not isinstance(blob, bytes) or not blob or len(blob) % 8:
                raise StoreError(f"{self.path}: example {row_id} has a corrupt feature vector")
            features = struct.unpack(f"<{len(blob) // 8}d", blob)
        well_formed = (
            isinstance(row_id, int)
            and isinstance(created_at, float)
            and isinstance(label, str)
            and isinstance(source, str)
            and isinstance(text, str | None)
            and (text is None) != (features is None)
        )
        if not well_formed:
            raise StoreError(f"{self.path}: example {row_id} is corrupt")
        return StoredExample(row_id, _time(created_at), label, text, features, source)


def _pack(features: object) -> bytes:
    values = tuple(features)  # type: ignore[call-overload]
    return struct.pack(f"<{len(values)}d", *values)


def _time(seconds: float | None) -> dt.datetime | None:
    return None if seconds is None else dt.datetime.fromtimestamp(seconds, dt.UTC)


__all__ = ["STORE_FILE", "ExampleStore", "StoreStats"]
