"""Opening the example database: a private file, recognised as ours, at a schema we can read.

A file is ours when its SQLite header carries APPLICATION_ID; its schema version is the header's
`user_version`. An empty file (or none) is initialised; anything else - not SQLite, another
program's database, a newer schema, a failed integrity check - is refused with a StoreError and
left untouched.

The database lives in WAL mode (readers never block the writer), with `secure_delete` on so that
pruned examples are overwritten rather than left in free pages, and incremental auto-vacuum so
that the file gives space back after pruning. SQLite creates the -wal and -shm files with the
database file's own permissions, so creating that file 0600 keeps all three private.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
from pathlib import Path

from fedota.client.data.errors import StoreError

APPLICATION_ID = 0x46444F54  # "FDOT"
SCHEMA_VERSION = 1
FILE_MODE = 0o600
DIR_MODE = 0o700
BUSY_TIMEOUT_SECONDS = 10.0

log = logging.getLogger(__name__)

# Version 1. The totals row is kept by triggers in the same transaction as every insert and
# delete, so size pruning never has to sum the table, and every process sees the same figure.
_SCHEMA_V1 = (
    """CREATE TABLE examples (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        created_at REAL NOT NULL,
        label TEXT NOT NULL,
        text TEXT,
        features BLOB,
        source TEXT NOT NULL,
        payload_bytes INTEGER NOT NULL CHECK (payload_bytes > 0),
        CHECK ((text IS NULL) <> (features IS NULL))
    )""",
    "CREATE INDEX examples_created_at ON examples (created_at)",
    """CREATE TABLE totals (
        one INTEGER PRIMARY KEY CHECK (one = 1),
        count INTEGER NOT NULL,
        payload_bytes INTEGER NOT NULL
    )""",
    "INSERT INTO totals VALUES (1, 0, 0)",
    """CREATE TRIGGER examples_added AFTER INSERT ON examples BEGIN
        UPDATE totals SET count = count + 1, payload_bytes = payload_bytes + NEW.payload_bytes;
    END""",
    """CREATE TRIGGER examples_removed AFTER DELETE ON examples BEGIN
        UPDATE totals SET count = count - 1, payload_bytes = payload_bytes - OLD.payload_bytes;
    END""",
)


def open_database(path: Path) -> sqlite3.Connection:
    """A connection to the example database at `path`, created (0600) when missing or empty.

    The connection is in autocommit mode (transactions are explicit) and may be used from any
    thread, one at a time.

    Raises:
        StoreError: the file cannot be created or opened, is not a SQLite database, belongs to
            another program, has a newer schema, or fails SQLite's integrity check.
    """
    _create_private(path)
    try:
        conn = sqlite3.connect(
            path,
            timeout=BUSY_TIMEOUT_SECONDS,
            isolation_level=None,
            check_same_thread=False,
        )
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open the example store {path}: {exc}") from exc
    try:
        _prepare(conn, path)
        _make_private(path)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise StoreError(
            f"{path} is not a usable example store ({exc}); move it aside to start an empty one"
        ) from exc
    except BaseException:
        conn.close()
        raise
    return conn


def _create_private(path: Path) -> None:
    try:
        if not path.parent.is_dir():
            path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
    except FileExistsError:
        _check_existing(path)
        return
    except OSError as exc:
        raise StoreError(f"cannot create the example store {path}: {exc.strerror}") from exc
    try:
        os.fchmod(fd, FILE_MODE)  # the mode given to open() is filtered by the umask
    finally:
        os.close(fd)


def _check_existing(path: Path) -> None:
    try:
        info = path.stat()
    except OSError as exc:
        raise StoreError(f"cannot open the example store {path}: {exc.strerror}") from exc
    if not stat.S_ISREG(info.st_mode):
        raise StoreError(f"the example store {path} is not a regular file")


def _make_private(path: Path) -> None:
    """Tighten an existing store's mode (and its WAL's); only once the file is known to be ours."""
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            mode = file.stat().st_mode & 0o777
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                os.chmod(file, FILE_MODE)
                log.warning("%s was open to other users (mode %o); made it 0600", file, mode)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise StoreError(f"cannot make {file} private: {exc.strerror}") from exc


def _prepare(conn: sqlite3.Connection, path: Path) -> None:
    """Recognise (or initialise) the database; raises sqlite3.DatabaseError on a non-database."""
    conn.execute("PRAGMA secure_delete = ON")
    application_id, version = _header(conn)
    if application_id == 0 and version == 0:
        _initialise(conn, path)
        application_id, version = _header(conn)
    if application_id != APPLICATION_ID:
        raise StoreError(
            f"{path} is a SQLite database of another program (application_id {application_id:#x},"
            f" an example store has {APPLICATION_ID:#x}); it was left untouched"
        )
    if version != SCHEMA_VERSION:
        raise StoreError(
            f"{path} has example-store schema version {version}; this version of fedota reads"
            f" version {SCHEMA_VERSION} only (was it written by a newer fedota?)"
        )
    problems = [row[0] for row in conn.execute("PRAGMA quick_check(5)")]
    if problems != ["ok"]:
        raise StoreError(f"{path} is corrupt: {'; '.join(problems)}")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if mode != "wal":
        log.warning("%s: SQLite refused WAL mode (journal mode %s)", path, mode)
    conn.execute("PRAGMA synchronous = NORMAL")


def _header(conn: sqlite3.Connection) -> tuple[int, int]:
    application_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    return application_id, version


def _initialise(conn: sqlite3.Connection, path: Path) -> None:
    # auto_vacuum can only be chosen before the first table exists.
    conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Another process may have initialised it while this one waited for the lock.
        if _header(conn) != (0, 0):
            conn.execute("COMMIT")
            return
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if tables:
            raise StoreError(
                f"{path} is a SQLite database of another program (it has tables but no"
                " example-store header); it was left untouched"
            )
        for statement in _SCHEMA_V1:
            conn.execute(statement)
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
