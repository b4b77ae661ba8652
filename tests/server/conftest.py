"""A real coordinator per test on 127.0.0.1 (ephemeral ports), on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from coordinator_support import AdminClient, coordinator_settings, public_channel
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from fedota.protos.v1 import admin_pb2
from fedota.server import Coordinator

POSTGRES_ENV = "FEDOTA_TEST_POSTGRES_URL"


@pytest.fixture
def start_coordinator(db_url: str, tmp_path: Path) -> Iterator[Callable[..., Coordinator]]:
    """Start a coordinator on the test's database; every one started is stopped afterwards."""
    started: list[Coordinator] = []

    def start(data_dir: Path | None = None, **limits: Any) -> Coordinator:
        coordinator = Coordinator.start(
            coordinator_settings(data_dir or tmp_path / "data", db_url, **limits)
        )
        started.append(coordinator)
        return coordinator

    yield start
    for coordinator in started:
        coordinator.stop(grace=0)


@pytest.fixture
def coordinator(start_coordinator: Callable[..., Coordinator]) -> Coordinator:
    return start_coordinator()


@pytest.fixture
def admin(coordinator: Coordinator) -> Iterator[AdminClient]:
    """The Admin API as the first admin (the token minted at bootstrap)."""
    assert coordinator.admin_token is not None
    with public_channel(coordinator) as channel:
        yield AdminClient(channel, coordinator.admin_token)


@pytest.fixture
def make_token(admin: AdminClient) -> Callable[..., str]:
    """Mint an enrollment token through the Admin API; returns the whole token string."""

    def make(
        uses: int = 5,
        auto_accept: bool = False,
        cohort: str = "",
        ttl_seconds: int = 3600,
        labels: dict[str, str] | None = None,
    ) -> str:
        response = admin.CreateEnrollmentToken(
            admin_pb2.CreateEnrollmentTokenRequest(
                cohort=cohort,
                ttl_seconds=ttl_seconds,
                max_uses=uses,
                auto_accept=auto_accept,
                labels=labels or {},
            )
        )
        return str(response.token)

    return make


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def module_db_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """One migrated database shared by a whole module, for tests that each prove they change
    nothing (a clone of the run's template, like `db_url`)."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("module-db") / "coordinator.sqlite3"
        shutil.copyfile(request.getfixturevalue("_sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    admin_url = os.environ.get(POSTGRES_ENV)
    if not admin_url:
        pytest.skip(f"{POSTGRES_ENV} is not set: PostgreSQL runs skipped (SQLite runs did run)")
    template = request.getfixturevalue("_postgres_template")
    name = f"fedota_m_{secrets.token_hex(6)}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
        try:
            yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
