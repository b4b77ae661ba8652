"""Schema migrations: bring a database to this code's schema, safely from several replicas at once.

The Alembic environment lives in the package (`fedota.storage.migrations`) and is driven from here,
so an installed wheel migrates without an alembic.ini or the source tree. Every upgrade runs in one
transaction that first takes a lock (a PostgreSQL advisory lock, SQLite's write lock), so replicas
starting together queue up: the first migrates, the others then find the schema current.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, inspect

from fedota.storage._migration_lock import (
    ADVISORY_LOCK_KEY,
    DEFAULT_LOCK_TIMEOUT_S,
    engine_for,
    locked_transaction,
)
from fedota.storage.errors import (
    SchemaOutOfDate,
    UnknownSchemaRevision,
    UnmanagedSchema,
)
from fedota.storage.models import Base

MIGRATIONS_DIR = Path(__file__).resolve().with_name("migrations")


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


def head_revision() -> str:
    """The newest schema revision this code knows.

    Raises:
        RuntimeError: the migration scripts have no single head (a packaging or merge mistake).
    """
    head = _scripts().get_current_head()
    if head is None:
        raise RuntimeError(f"no migration scripts found in {MIGRATIONS_DIR}")
    return head


def _stamped(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _problem(connection: Connection, scripts: ScriptDirectory) -> SchemaOutOfDate | None:
    """Why the database cannot be migrated by this code, or None when it can."""
    current = _stamped(connection)
    head = scripts.get_current_head() or ""
    if current is None:
        ours = set(Base.metadata.tables) & set(inspect(connection).get_table_names())
        if ours:
            return UnmanagedSchema(
                f"the database holds fedota tables ({', '.join(sorted(ours))}) but no migration "
                f"history: it was not created by `fedota coordinator migrate`; expected an empty "
                f"database or one at a revision up to {head}",
                current=None,
                head=head,
            )
        return None
    try:
        scripts.get_revision(current)
    except CommandError:
        return UnknownSchemaRevision(
            f"the database is at schema revision {current!r}, which this fedota does not know "
            f"(its newest is {head!r}): a newer fedota migrated it; run that version or newer",
            current=current,
            head=head,
        )
    return None


def _target(scripts: ScriptDirectory, revision: str, symbol: str) -> str:
    """`revision` if it is `symbol` or the exact id of one of our revisions (no relative forms)."""
    if revision == symbol:
        return revision
    try:
        script = scripts.get_revision(revision)
    except CommandError:
        script = None
    if script is None or script.revision != revision:
        known = ", ".join(s.revision for s in scripts.walk_revisions())
        raise ValueError(f"revision must be {symbol!r} or one of {known}; got {revision!r}")
    return revision


def upgrade(
    url: str, revision: str = "head", *, lock_timeout: float = DEFAULT_LOCK_TIMEOUT_S
) -> None:
    """Migrate the database at `url` up to `revision` ("head" or a revision id), if not there.

    Safe to call from several processes at once: they take turns, and the later ones do nothing.

    Raises:
        UnknownSchemaRevision: the database is stamped with a revision this code does not know.
        UnmanagedSchema: the database holds our tables without a migration history.
        ValueError: `revision` is not a revision of this code or lies below the current one;
            or `lock_timeout` is not positive.
        MigrationLockTimeout: another process held the database for over `lock_timeout` seconds
            (the migration was rolled back).
        sqlalchemy.exc.ArgumentError: the URL is malformed.
        sqlalchemy.exc.OperationalError: the database cannot be reached.
    """
    _migrate(url, revision, "head", command.upgrade, lock_timeout)


def downgrade(url: str, revision: str, *, lock_timeout: float = DEFAULT_LOCK_TIMEOUT_S) -> None:
    """Migrate the database at `url` down to `revision` (a revision id; "base" drops it all).

    Raises:
        UnknownSchemaRevision: the database is stamped with a revision this code does not know.
        UnmanagedSchema: the database holds our tables without a migration history.
        ValueError: `revision` is not a revision of this code or lies above the current one;
            or `lock_timeout` is not positive.
        MigrationLockTimeout: another process held the database for over `lock_timeout` seconds
            (the migration was rolled back).
        sqlalchemy.exc.ArgumentError: the URL is malformed.
        sqlalchemy.exc.OperationalError: the database cannot be reached.
    """
    _migrate(url, revision, "base", command.downgrade, lock_timeout)


def _migrate(
    url: str,
    revision: str,
    symbol: str,
    step: Callable[[Config, str], None],
    lock_timeout: float,
) -> None:
    """Run one Alembic command under the migration lock, after refusing a foreign schema."""
    scripts = _scripts()
    target = _target(scripts, revision, symbol)
    with locked_transaction(url, lock_timeout) as connection:
        problem = _problem(connection, scripts)
        if problem is not None:
            raise problem
        try:
            step(_config(connection), target)
        except CommandError as exc:
            raise ValueError(f"cannot migrate to revision {revision!r}: {exc}") from exc


def current_revision(url: str) -> str | None:
    """The revision the database is stamped with (None: never migrated), known to us or not.

    Raises:
        sqlalchemy.exc.OperationalError: the database cannot be reached.
    """
    engine = engine_for(url)
    try:
        with engine.connect() as connection:
            return _stamped(connection)
    finally:
        engine.dispose()


def require_up_to_date(url: str) -> None:
    """Check that the database is exactly at this code's newest revision.

    Raises:
        UnknownSchemaRevision: a newer fedota migrated the database past what this code knows.
        UnmanagedSchema: the database holds our tables without a migration history.
        SchemaOutOfDate: the database is behind (or empty): run `fedota coordinator migrate`.
        sqlalchemy.exc.OperationalError: the database cannot be reached.
    """
    scripts = _scripts()
    head = head_revision()
    engine = engine_for(url)
    try:
        with engine.connect() as connection:
            problem = _problem(connection, scripts)
            current = _stamped(connection)
    finally:
        engine.dispose()
    if problem is not None:
        raise problem
    if current != head:
        raise SchemaOutOfDate(
            f"the database is at schema revision {current!r} but this fedota needs {head!r}: "
            f"run `fedota coordinator migrate`",
            current=current,
            head=head,
        )


def is_up_to_date(url: str) -> bool:
    """Whether the database is exactly at this code's newest revision (behind or unknown: False).

    Raises:
        sqlalchemy.exc.OperationalError: the database cannot be reached.
    """
    return current_revision(url) == head_revision()


def make_revision(url: str, message: str) -> Path:
    """For developers: write the next migration script by comparing the models to the database.

    The database at `url` must be at the newest revision. Review the script by hand afterwards:
    name every constraint, and keep it free of imports from fedota.

    Raises:
        ValueError: the database is not at the newest revision.
    """
    number = sum(1 for _ in _scripts().walk_revisions()) + 1
    with locked_transaction(url, DEFAULT_LOCK_TIMEOUT_S) as connection:
        try:
            script = command.revision(
                _config(connection), message=message, autogenerate=True, rev_id=f"{number:04d}"
            )
        except CommandError as exc:
            raise ValueError(f"cannot autogenerate a revision: {exc}") from exc
    assert script is not None and not isinstance(script, list)
    return Path(script.path)


__all__ = [
    "ADVISORY_LOCK_KEY",
    "DEFAULT_LOCK_TIMEOUT_S",
    "MIGRATIONS_DIR",
    "current_revision",
    "downgrade",
    "head_revision",
    "is_up_to_date",
    "make_revision",
    "require_up_to_date",
    "upgrade",
]
