"""The small pure helpers behind the CLI's output and its coordinator address."""

from __future__ import annotations

import datetime as dt

import pytest

from fedota.cli._admin_client import Endpoint, parse_endpoint
from fedota.cli.errors import CliError
from fedota.cli.output import human_bytes, iso, relative_time

NOW = dt.datetime(2026, 11, 25, 12, 0, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("offset", "expected"),
    [
        (dt.timedelta(0), "just now"),
        (dt.timedelta(seconds=12), "12s ago"),
        (dt.timedelta(minutes=5, seconds=59), "5m ago"),
        (dt.timedelta(hours=3, minutes=59), "3h ago"),
        (dt.timedelta(days=2, hours=23), "2d ago"),
        (dt.timedelta(days=-29, hours=-12), "in 29d"),
        (dt.timedelta(seconds=-90), "in 1m"),
    ],
)
def test_relative_time(offset: dt.timedelta, expected: str) -> None:
    assert relative_time(NOW - offset, NOW) == expected


def test_relative_time_of_nothing() -> None:
    assert relative_time(None, NOW) == "never"
    assert relative_time(None, NOW, missing="-") == "-"


def test_iso_is_utc_with_z() -> None:
    berlin = dt.timezone(dt.timedelta(hours=1))

    assert iso(dt.datetime(2026, 11, 25, 13, 0, tzinfo=berlin)) == "2026-11-25T12:00:00Z"
    assert iso(None) is None


@pytest.mark.parametrize(
    ("count", "expected"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1536, "1.5 KiB"),
        (8 * 1024**3, "8.0 GiB"),
        (3 * 1024**4, "3.0 TiB"),
    ],
)
def test_human_bytes(count: int, expected: str) -> None:
    assert human_bytes(count) == expected


@pytest.mark.parametrize(
    ("text", "endpoint", "shown"),
    [
        ("127.0.0.1:7443", Endpoint("127.0.0.1", 7443), "127.0.0.1:7443"),
        ("coordinator:7443", Endpoint("coordinator", 7443), "coordinator:7443"),
        ("[::1]:7443", Endpoint("::1", 7443), "[::1]:7443"),
    ],
)
def test_parse_endpoint(text: str, endpoint: Endpoint, shown: str) -> None:
    assert parse_endpoint(text) == endpoint
    assert str(endpoint) == shown


@pytest.mark.parametrize(
    "text", ["", "coordinator", ":7443", "host:", "host:0", "host:65536", "h:x"]
)
def test_parse_endpoint_refuses(text: str) -> None:
    with pytest.raises(CliError, match="is not HOST:PORT"):
        parse_endpoint(text)
