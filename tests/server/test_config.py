"""Addresses, the device port default, and limits that cannot work."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from fedota.server import Address, Limits, Settings


@pytest.mark.parametrize(
    ("text", "host", "port", "shown"),
    [
        ("127.0.0.1:7443", "127.0.0.1", 7443, "127.0.0.1:7443"),
        ("[::1]:0", "::1", 0, "[::1]:0"),
        ("coordinator.example:443", "coordinator.example", 443, "coordinator.example:443"),
    ],
)
def test_addresses_parse_and_print_back(text: str, host: str, port: int, shown: str) -> None:
    address = Address.parse(text)

    assert (address.host, address.port, str(address)) == (host, port, shown)


@pytest.mark.parametrize("text", ["", "7443", ":7443", "host:", "host:http", "host:70000"])
def test_malformed_addresses_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"HOST:PORT|not in 0\.\.65535"):
        Address.parse(text)


@pytest.mark.parametrize(
    ("listen", "device"), [(Address("0.0.0.0", 7443), 7444), (Address("127.0.0.1", 0), 0)]
)
def test_the_device_port_defaults_to_the_next_port(listen: Address, device: int) -> None:
    settings = Settings(data_dir=Path("unused"), listen=listen)

    assert settings.device_address() == listen.with_port(device)


@pytest.mark.parametrize(
    "limits",
    [
        {"max_message_bytes": 0},
        {"thread_pool_size": 0},
        {"certificate_lifetime": dt.timedelta(0)},
        {"heartbeat_interval": dt.timedelta(milliseconds=500)},
        {"renew_fraction": 1.0},
        {"default_page_size": 2000},
    ],
)
def test_limits_that_cannot_work_are_refused(limits: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Limits(**limits)  # type: ignore[arg-type]
