"""Re-signing TUF metadata before it expires, in a background thread of the coordinator.

The timestamp lives a day and the snapshot a week (see `TufConfig`); a device refuses expired
metadata (the freeze attack), so the coordinator re-signs each role once less than the refresh
fraction of its lifetime remains. The thread sleeps until the repository's `next_refresh_at`,
publishes `refresh_expiring(now)` through `MetadataStore.update` (several replicas waking
together: the first publishes, the others reload and find nothing due), and retries a failed
attempt after `retry_delay`. `stop()` wakes it at once.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable

from fedota.server.audit import Actor
from fedota.server.releases import MetadataStore

logger = logging.getLogger("fedota.server.resigning")

DEFAULT_RETRY_DELAY = dt.timedelta(seconds=30)
# A bound on one sleep, so a clock step or a config change is noticed within the hour.
DEFAULT_MAX_SLEEP = dt.timedelta(hours=1)
# Expiry has whole seconds while the clock has microseconds: never spin below this.
MIN_SLEEP = dt.timedelta(seconds=1)


class Resigner:
    """The re-signing thread of one coordinator: `start()`, `wake()` to check now, `stop()`.

    Raises (on construction):
        ValueError: a retry delay or max sleep that is not positive.
    """

    def __init__(
        self,
        store: MetadataStore,
        clock: Callable[[], dt.datetime],
        *,
        retry_delay: dt.timedelta = DEFAULT_RETRY_DELAY,
        max_sleep: dt.timedelta = DEFAULT_MAX_SLEEP,
    ) -> None:
        if retry_delay <= dt.timedelta(0) or max_sleep <= dt.timedelta(0):
            raise ValueError(
                f"retry_delay and max_sleep must be positive, got {retry_delay} and {max_sleep}"
            )
        self._store = store
        self._clock = clock
        self._retry_delay = retry_delay
        self._max_sleep = max_sleep
        self._wakeup = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh_once(self) -> dt.datetime:
        """Re-sign whatever is due now; returns when the next role falls due.

        Raises:
            As `MetadataStore.update` (TufRepositoryError, ConcurrentPublish, database errors).
        """
        now = self._clock()
        publication = self._store.update(
            lambda repo: repo.refresh_expiring(now), actor=Actor.system()
        )
        if not publication.empty:
            logger.info(
                "re-signed update metadata: %s",
                ", ".join(f"{md.role} v{md.version}" for md in publication.metadata),
            )
        return publication.repository.next_refresh_at()

    def start(self) -> None:
        """Start the thread; its first check runs at once (metadata may have expired while the
        coordinator was down)."""
        if self._thread is not None:
            raise RuntimeError("the re-signing thread was already started")
        self._thread = threading.Thread(target=self._run, name="fedota-resigning", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Check now instead of at the next due time (after the clock moved, in tests)."""
        self._wakeup.set()

    def stop(self, timeout: float = 5.0) -> None:
        """End the thread (waiting up to `timeout` seconds for a refresh under way)."""
        self._stopping.set()
        self._wakeup.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wakeup.clear()
            delay = self._next_delay()
            self._wakeup.wait(delay.total_seconds())

    def _next_delay(self) -> dt.timedelta:
        try:
            due = self.refresh_once()
        except Exception:  # logged and retried: the thread must outlive a database outage
            logger.warning(
                "re-signing update metadata failed; retrying in %s",
                self._retry_delay,
                exc_info=True,
            )
            return self._retry_delay
        return min(max(due - self._clock(), MIN_SLEEP), self._max_sleep)


__all__ = ["DEFAULT_MAX_SLEEP", "DEFAULT_RETRY_DELAY", "MIN_SLEEP", "Resigner"]
