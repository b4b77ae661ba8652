"""Shared fixtures: a fresh, migrated database per test on SQLite and, when configured, PostgreSQL.

Set FEDOTA_TEST_POSTGRES_URL (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test) to run every
database test on PostgreSQL too; then an unreachable server is a failure, not a skip. Each test gets
a database of its own, cloned from a template migrated once per run, and dropped afterwards.

Fixtures: `db_url` and `database` (migrated to head), `empty_db_url` and the factory
`make_empty_db` (never migrated: for migration and startup tests).
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from fedota.storage.db import Database

POSTGRES_ENV = "FEDOTA_TEST_POSTGRES_URL"
BACKENDS = ["sqlite", "postgresql"]


def migrate_to_head(url: str) -> None:
    """Bring an empty database to the current schema."""
    from fedota.storage.migrate import upgrade

    upgrade(url)


def _postgres_admin_url() -> str:
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.skip(f"{POSTGRES_ENV} is not set: PostgreSQL runs skipped (SQLite runs did run)")
    return url


def _with_database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


@contextmanager
def _postgres_database(prefix: str, template: str | None = None) -> Iterator[str]:
    """A PostgreSQL database of a random name (a clone of `template` if given), dropped on exit.

    Connection errors propagate: with the variable set, an unreachable server fails the test.
    """
    admin_url = _postgres_admin_url()
    name = f"{prefix}_{secrets.token_hex(6)}"
    clone = f' TEMPLATE "{template}"' if template else ""
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"{clone}'))
        try:
            yield _with_database(admin_url, name)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@pytest.fixture(scope="session")
def _postgres_template() -> Iterator[str]:
    """A database migrated once per test run; tests clone it (CREATE DATABASE ... TEMPLATE)."""
    with _postgres_database("fedota_tpl") as url:
        migrate_to_head(url)
        name = make_url(url).database
        assert name is not None
        yield name


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.sqlite3"
    migrate_to_head(f"sqlite:///{path}")
    return path


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of a fresh, migrated, private database: SQLite, then PostgreSQL when configured."""
    if request.param == "sqlite":
        path = tmp_path / "coordinator.sqlite3"
        shutil.copyfile(request.getfixturevalue("_sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    template = request.getfixturevalue("_postgres_template")
    with _postgres_database("fedota_t", template=template) as url:
        yield url


@pytest.fixture(params=BACKENDS)
def make_empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], str]]:
    """A factory of fresh, private, empty databases (never migrated), one backend per param."""
    if request.param == "postgresql":
        _postgres_admin_url()
    with ExitStack() as cleanup:

        def make() -> str:
            if request.param == "sqlite":
                return f"sqlite:///{tmp_path / f'empty-{secrets.token_hex(4)}.sqlite3'}"
            return cleanup.enter_context(_postgres_database("fedota_e"))

        yield make


@pytest.fixture
def empty_db_url(make_empty_db: Callable[[], str]) -> str:
    """URL of a fresh, private, empty database (no tables, never migrated) on each backend."""
    return make_empty_db()


@pytest.fixture
def database(db_url: str) -> Iterator[Database]:
    """A `Database` on a fresh migrated database of each backend."""
    db = Database(db_url)
    try:
        yield db
    finally:
        db.dispose()
