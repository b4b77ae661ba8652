"""Coordinator.start: first start, restart, and every way it refuses to start."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from coordinator_support import snapshot
from cryptography import x509

from fedota.server import Address, Coordinator, Settings, StartupError
from fedota.server.pki import CA_CERT, CA_KEY, SERVER_CERT
from fedota.storage import migrate
from fedota.storage.db import Database

ANY_PORT = Address("127.0.0.1", 0)


def _settings(data_dir: Path, db_url: str | None, **overrides: object) -> Settings:
    fields: dict[str, object] = {"listen": ANY_PORT, "device_listen": ANY_PORT}
    return Settings(data_dir=data_dir, db_url=db_url, **{**fields, **overrides})  # type: ignore[arg-type]


def test_a_restart_keeps_the_ca_server_certificate_and_admin(
    start_coordinator: Callable[..., Coordinator], tmp_path: Path, database: Database
) -> None:
    first = start_coordinator()
    data = tmp_path / "data"
    files = {name: (data / name).read_bytes() for name in (CA_KEY, CA_CERT, SERVER_CERT)}
    token_file = (data / "admin-token").read_text()
    first.stop(grace=0)
    rows = snapshot(database)

    second = start_coordinator()

    assert first.admin_token is not None and token_file == first.admin_token + "\n"
    assert second.admin_token is None
    assert second.ca_certificate_pem == first.ca_certificate_pem
    assert {name: (data / name).read_bytes() for name in files} == files
    assert (data / "admin-token").read_text() == token_file
    assert snapshot(database) == rows


@pytest.mark.parametrize("which", ["listen", "device_listen", "repository_listen"])
def test_a_port_in_use_is_refused_before_the_database_changes(
    tmp_path: Path, db_url: str, database: Database, which: str
) -> None:
    rows = snapshot(database)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = _settings(tmp_path / "data", db_url, **{which: Address("127.0.0.1", port)})

        with pytest.raises(StartupError, match=f"cannot listen on 127.0.0.1:{port}"):
            Coordinator.start(settings)

    assert snapshot(database) == rows
    assert not (tmp_path / "data" / "admin-token").exists()


def test_extra_sans_go_into_the_server_certificate(tmp_path: Path, db_url: str) -> None:
    coordinator = Coordinator.start(
        _settings(tmp_path / "data", db_url, sans=("10.1.2.3", "Fleet.Example"))
    )
    try:
        leaf = x509.load_pem_x509_certificate((tmp_path / "data" / SERVER_CERT).read_bytes())
    finally:
        coordinator.stop(grace=0)

    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("10.1.2.3") in names.get_values_for_type(x509.IPAddress)
    assert {"localhost", "fleet.example"} <= set(names.get_values_for_type(x509.DNSName))


def test_a_bad_san_is_refused_before_anything_is_written(tmp_path: Path, db_url: str) -> None:
    with pytest.raises(StartupError, match="neither an IP address nor a DNS name"):
        Coordinator.start(_settings(tmp_path / "data", db_url, sans=("two words",)))

    assert not (tmp_path / "data" / CA_KEY).exists()


def test_a_database_of_another_fleet_ca_is_refused(
    start_coordinator: Callable[..., Coordinator], tmp_path: Path, db_url: str, database: Database
) -> None:
    start_coordinator()
    rows = snapshot(database)
    elsewhere = tmp_path / "elsewhere"

    with pytest.raises(StartupError, match=r"holds no CA: copy ca\.key and ca\.crt"):
        Coordinator.start(_settings(elsewhere, db_url))

    assert not (elsewhere / CA_KEY).exists()
    assert snapshot(database) == rows


def test_no_migrate_refuses_a_database_behind_and_a_normal_start_upgrades_it(
    tmp_path: Path, db_url: str
) -> None:
    migrate.downgrade(db_url, "base")

    with pytest.raises(StartupError, match="fedota coordinator migrate"):
        Coordinator.start(_settings(tmp_path / "data", db_url, migrate=False))

    assert not (tmp_path / "data" / CA_KEY).exists()
    coordinator = Coordinator.start(_settings(tmp_path / "data", db_url))
    try:
        assert migrate.is_up_to_date(db_url)
        assert coordinator.admin_token is not None
    finally:
        coordinator.stop(grace=0)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "is not a usable database URL"),
        ("nosuchdriver://x/y", "is not a usable database URL"),
        ("postgresql+psycopg://nobody@127.0.0.1:1/none", "cannot use the database"),
    ],
)
def test_an_unusable_database_url_is_refused(tmp_path: Path, url: str, message: str) -> None:
    with pytest.raises(StartupError, match=message) as raised:
        Coordinator.start(_settings(tmp_path / "data", url))

    assert "\n" not in str(raised.value)


def test_an_unusable_data_directory_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")

    with pytest.raises(StartupError, match="cannot use data directory"):
        Coordinator.start(_settings(blocker / "data", None))
