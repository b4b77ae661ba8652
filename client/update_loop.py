"""The daemon's update thread: one `UpdateAgent` pass at once, then every update interval.

A pass that fails is retried with backoff (`schedule.backoff_delay`), whatever failed: the
coordinator unreachable, a download cut (it resumes), the update directory or slots unusable (an
operator's fix). Nothing here ends the daemon; the heartbeat loop is what notices a refused
identity. `stop` is the daemon's stop event; `FleetConnection.close()` cancels a download in
flight, so the thread ends promptly unless an install is being applied (never cut on purpose:
a kill at any point of it is recovered at the next start).
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable

from fedota.client.config import DaemonConfig
from fedota.client.errors import ClientError, StateError
from fedota.client.schedule import backoff_delay
from fedota.client.update.agent import UpdateAgent
from fedota.client.update.install import InstallResult

log = logging.getLogger(__name__)


class UpdateLoop:
    """Runs `agent.run_once()` in a thread until `stop` is set; `on_result` gets each install's
    result (in that thread)."""

    def __init__(
        self,
        agent: UpdateAgent,
        config: DaemonConfig,
        stop: threading.Event,
        on_result: Callable[[InstallResult], None],
        rng: random.Random | None = None,
    ) -> None:
        self._agent = agent
        self._config = config
        self._stop = stop
        self._on_result = on_result
        self._rng = rng or random.Random()
        self._thread: threading.Thread | None = None

    @property
    def started(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        """Start the thread (once)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="fedota-updates", daemon=True)
        self._thread.start()

    def join(self, timeout: float) -> bool:
        """Wait for the thread to end (after `stop` was set); True when it has."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        failures = 0
        delay = 0.0
        while not self._stop.wait(delay):
            try:
                result = self._agent.run_once()
            except Exception as exc:
                if self._stop.is_set():
                    return
                delay = backoff_delay(
                    failures, self._config.backoff_base, self._config.backoff_cap, self._rng
                )
                failures += 1
                self._log_failure(exc, delay)
                continue
            if failures:
                log.info("update check succeeded again after %d failed attempts", failures)
            failures = 0
            delay = self._config.update_interval
            if result is not None:
                try:
                    self._on_result(result)
                except Exception:
                    log.exception("acting on the update's result failed")

    @staticmethod
    def _log_failure(exc: Exception, delay: float) -> None:
        if isinstance(exc, StateError):
            log.error("update check failed: %s; retrying in %.1f s", exc, delay)
        elif isinstance(exc, ClientError):
            detail = getattr(exc, "detail", "")
            reason = f"{exc} ({detail})" if detail else str(exc)
            log.warning("update check failed: %s; retrying in %.1f s", reason, delay)
        else:
            log.error("update check failed unexpectedly; retrying in %.1f s", delay, exc_info=exc)


__all__ = ["UpdateLoop"]
