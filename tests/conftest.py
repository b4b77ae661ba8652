"""Shared fixtures: a fresh, migrated database per test on SQLite and, when configured, PostgreSQL.

Set FEDOTA_TEST_POSTGRES_URL (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test) to run every
database test on PostgreSQL too; then an unreachable server is a failure, not a skip. Each test gets
a database of its own, cloned from a template migrated once per run, and dropped afterwards.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

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


@pytest.fixture(scope="session")
def _postgres_template() -> Iterator[str]:
    """A database migrated once per test run; tests clone it (CREATE DATABASE ... TEMPLATE)."""
    admin_url = _postgres_admin_url()
    name = f"fedota_tpl_{secrets.token_hex(6)}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        migrate_to_head(_with_database(admin_url, name))
        yield name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


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
    admin_url = _postgres_admin_url()
    template = request.getfixturevalue("_postgres_template")
    name = f"fedota_t_{secrets.token_hex(6)}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    try:
        yield _with_database(admin_url, name)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def database(db_url: str) -> Iterator[Database]:
    """A `Database` on a fresh migrated database of each backend."""
    db = Database(db_url)
    try:
        yield db
    finally:
        db.dispose()
