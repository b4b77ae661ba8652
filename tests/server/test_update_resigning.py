"""The coordinator re-signs update metadata before it expires: a real coordinator with a one-minute
timestamp and a clock the test moves; the retry after a failure and a prompt stop."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from coordinator_support import coordinator_settings
from sqlalchemy.exc import OperationalError

from fedota.server import Coordinator
from fedota.server.releases import (
    SNAPSHOT,
    TIMESTAMP,
    CoordinatorSecret,
    MetadataStore,
    Publication,
    TufConfig,
    TufRepository,
)
from fedota.server.updates.resigning import Resigner
from fedota.storage.db import Database
from fedota.storage.local_blobs import LocalBlobStore
from fedota.storage.types import utcnow

pytestmark = pytest.mark.timeout(60)

SHORT = TufConfig(timestamp_expiry=dt.timedelta(minutes=1))
DEADLINE = 20.0


class MovableClock:
    """Real time plus an offset the test moves forward."""

    def __init__(self) -> None:
        self._offset = dt.timedelta(0)
        self._lock = threading.Lock()

    def __call__(self) -> dt.datetime:
        with self._lock:
            return utcnow() + self._offset

    def advance(self, by: dt.timedelta) -> None:
        with self._lock:
            self._offset += by


def _wait_for(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _signed(coordinator: Coordinator, role: str) -> dict[str, Any]:
    store = MetadataStore(
        coordinator.database,
        LocalBlobStore(coordinator.data_dir / "blobs"),
        CoordinatorSecret.load_or_create(coordinator.data_dir),
    )
    data = store.read(role)
    assert data is not None
    signed: dict[str, Any] = json.loads(data)["signed"]
    return signed


def _expires(signed: dict[str, Any]) -> dt.datetime:
    return dt.datetime.fromisoformat(signed["expires"].replace("Z", "+00:00"))


@pytest.fixture
def start_short_lived(db_url: str, tmp_path: Path) -> Any:
    started: list[Coordinator] = []

    def start(clock: MovableClock) -> Coordinator:
        settings = dataclasses.replace(coordinator_settings(tmp_path / "data", db_url), tuf=SHORT)
        coordinator = Coordinator.start(settings, clock=clock)
        started.append(coordinator)
        return coordinator

    yield start
    for coordinator in started:
        coordinator.stop(grace=0)


def test_the_timer_renews_the_timestamp_before_it_expires(start_short_lived: Any) -> None:
    clock = MovableClock()
    coordinator = start_short_lived(clock)
    first = _signed(coordinator, TIMESTAMP)
    snapshot_version = _signed(coordinator, SNAPSHOT)["version"]

    # Past the refresh point (half of the minute), still before expiry.
    clock.advance(dt.timedelta(seconds=40))
    coordinator.resigner.wake()
    _wait_for(lambda: _signed(coordinator, TIMESTAMP)["version"] > first["version"], "v2")

    renewed = _signed(coordinator, TIMESTAMP)
    assert renewed["version"] == first["version"] + 1
    assert _expires(renewed) - _expires(first) >= dt.timedelta(seconds=39)
    assert _expires(renewed) > clock() + dt.timedelta(seconds=50)
    # Only what was due: the week-long snapshot is the same version, named again.
    assert _signed(coordinator, SNAPSHOT)["version"] == snapshot_version
    assert renewed["meta"]["snapshot.json"]["version"] == snapshot_version

    coordinator.stop(grace=0)
    assert not coordinator.resigner.running


def test_metadata_that_expired_while_stopped_is_renewed_at_start(start_short_lived: Any) -> None:
    clock = MovableClock()
    coordinator = start_short_lived(clock)
    first = _signed(coordinator, TIMESTAMP)
    coordinator.stop(grace=0)

    clock.advance(dt.timedelta(minutes=5))
    again = start_short_lived(clock)

    _wait_for(lambda: _signed(again, TIMESTAMP)["version"] > first["version"], "a renewal")
    assert _expires(_signed(again, TIMESTAMP)) > clock()


class _FailsOnce:
    """A metadata store whose first update fails as a lost database connection does."""

    def __init__(self, store: MetadataStore) -> None:
        self._store = store
        self.calls = 0

    def update(self, change: Callable[[TufRepository], Publication], **kwargs: Any) -> Publication:
        self.calls += 1
        if self.calls == 1:
            raise OperationalError("UPDATE tuf_metadata", {}, Exception("server closed"))
        return self._store.update(change, **kwargs)


def test_a_failed_refresh_is_logged_and_retried(
    database: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = MetadataStore(
        database,
        LocalBlobStore(tmp_path / "blobs"),
        CoordinatorSecret.load_or_create(tmp_path),
        SHORT,
    )
    start = utcnow()
    store.initialize(start)
    flaky = _FailsOnce(store)
    later = start + dt.timedelta(seconds=45)
    resigner = Resigner(flaky, lambda: later, retry_delay=dt.timedelta(milliseconds=50))  # type: ignore[arg-type]

    with caplog.at_level(logging.WARNING, logger="fedota.server.resigning"):
        resigner.start()
        try:
            _wait_for(lambda: store.latest_version(TIMESTAMP) == 2, "the retry to publish")
        finally:
            resigner.stop()

    assert flaky.calls >= 2 and not resigner.running
    assert "re-signing update metadata failed; retrying" in caplog.text


def test_stop_is_prompt_while_the_next_refresh_is_hours_away(
    database: Database, tmp_path: Path
) -> None:
    store = MetadataStore(
        database, LocalBlobStore(tmp_path / "blobs"), CoordinatorSecret.load_or_create(tmp_path)
    )
    store.initialize(utcnow())
    resigner = Resigner(store, utcnow)
    resigner.start()
    _wait_for(lambda: resigner.running, "the thread")

    resigner.stop(timeout=DEADLINE)

    assert not resigner.running
    assert store.latest_version(TIMESTAMP) == 1
