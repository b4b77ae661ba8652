"""The device daemon: enroll once, then heartbeat, renew the certificate, install the model
updates the coordinator assigns and serve the active model locally, until stopped.

Built on the pieces below it: the pure schedule (`schedule`), the state directory (`store`), the
transport seam (`transport`), enrollment (`enrollment`), the update agent (`update.agent`, run
by `update_loop` in a thread of its own once the device is accepted) and the local inference API
(`local_api`). At start, before anything is served, an install a crash interrupted is finished or
undone (`UpdateAgent.recover`); after an install the API swaps to the new model. Transient
failures (unreachable coordinator, deadlines, coordinator errors) are retried with backoff and
never end the daemon; refusals of this identity (`DeviceRefused`, `CredentialRefused`,
`CertificateExpired`) do.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from fedota.client.config import DaemonConfig
from fedota.client.endpoint import Endpoint
from fedota.client.enrollment import (
    EnrollOptions,
    bootstrap_ca,
    check_rerun,
    enroll,
    state_name,
)
from fedota.client.errors import (
    ClientError,
    CoordinatorFailed,
    CoordinatorUnavailable,
    DeviceRefused,
    ProtocolError,
    RequestInvalid,
)
from fedota.client.federation.membership import Membership
from fedota.client.hardware import available_memory_bytes
from fedota.client.identity import Credentials, InvalidCredentials
from fedota.client.keys import build_csr
from fedota.client.local_api import LocalApi, LocalApiOptions, release_name
from fedota.client.schedule import backoff_delay, jittered, renewal_due
from fedota.client.store import Enrollment, StateStore
from fedota.client.transport import FleetConnection
from fedota.client.update.agent import AgentConfig, UpdateAgent
from fedota.client.update.apply_errors import SlotError
from fedota.client.update.install import HealthCheckFn, InstallResult
from fedota.client.update.slots import SlotStore
from fedota.client.update_loop import UpdateLoop
from fedota.protos.v1 import fleet_pb2, updates_pb2

log = logging.getLogger(__name__)

_T = TypeVar("_T")
# Failures worth retrying: the coordinator may come back, or answer differently next time.
TRANSIENT = (CoordinatorUnavailable, CoordinatorFailed)
# Once enrolled, a request the coordinator calls invalid is its bug or a version skew: keep the
# device alive and retrying rather than down. A failed renewal is retried too: the current
# certificate keeps working until it expires.
HEARTBEAT_TRANSIENT = (*TRANSIENT, RequestInvalid)
RENEWAL_TRANSIENT = (*TRANSIENT, RequestInvalid, ProtocolError)
# How long a stopping daemon waits for its update thread (an install is never cut on purpose).
UPDATE_JOIN_SECONDS = 5.0


class _Stopped(Exception):
    """Raised inside the loop to unwind once stop() was called."""


@dataclass(frozen=True)
class DaemonOptions:
    """What the daemon was asked to do, beyond enrolling.

    Attributes:
        enroll: how to enroll when the state directory holds no identity yet.
        heartbeat_interval: overrides the interval the coordinator names, seconds.
        model_version: what the heartbeat names as the model while no slot holds one.
        local_api: where to serve the active model (None: no local inference API).
        updates: whether to ask for and install model updates once accepted.
        agent: the update agent's limits.
        health: the health check of a newly installed model (None: the built-in one with the
            probes in the models directory).
        federation: whether to run a Flower SuperNode when the coordinator names a federation.
    """

    enroll: EnrollOptions
    heartbeat_interval: float | None = None
    model_version: str = ""
    local_api: LocalApiOptions | None = None
    updates: bool = True
    agent: AgentConfig | None = None
    health: HealthCheckFn | None = None
    federation: bool = True


@dataclass(frozen=True)
class Status:
    """The device as the coordinator last saw it."""

    device_id: str
    state: str


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Daemon:
    """One device's daemon over one state directory. `stop()` may be called from any thread."""

    def __init__(
        self,
        store: StateStore,
        options: DaemonOptions,
        config: DaemonConfig | None = None,
        *,
        clock: Callable[[], dt.datetime] = _utc_now,
        rng: random.Random | None = None,
    ) -> None:
        self._store = store
        self._options = options
        self._config = config or DaemonConfig()
        self._clock = clock
        self._rng = rng or random.Random()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._connection: FleetConnection | None = None
        self._enrollment: Enrollment | None = None
        self._state: str | None = None
        self._started = time.monotonic()
        self._slots = SlotStore(store.root)
        self._membership: Membership | None = None
        self._agent = UpdateAgent(
            store.root,
            store.update_dir,
            _DaemonChannel(self._live_connection),
            config=options.agent,
            health=options.health,
        )
        self._updates = UpdateLoop(self._agent, self._config, self._stop, self._installed)
        self._local_api = (
            LocalApi(store.root, options.local_api) if options.local_api is not None else None
        )

    def stop(self) -> None:
        """Ask the daemon to stop; cancels any call in flight so it returns promptly."""
        self._stop.set()
        with self._lock:
            connection = self._connection
        if connection is not None:
            connection.close()

    def run(self) -> None:
        """Recover the model slots, enroll if needed, serve the active model, then heartbeat,
        renew and install updates until `stop()`.

        Raises:
            StateError, TokenError: the state directory or the options are unusable (SlotsBusy:
                another daemon runs on it; SlotError: its models are corrupt).
            UsageError: the local inference API's socket path is too long.
            UntrustedCoordinator, EnrollmentRefused, AlreadyEnrolled, RequestInvalid,
            ProtocolError: enrollment was refused or its reply unusable.
            DeviceRefused, CredentialRefused, CertificateExpired: this identity is refused.
        """
        try:
            self._agent.recover()
            interval = self._start(retry=True)
            if self._local_api is not None:
                self._local_api.start(self._slots.active())
            self._loop(interval)
        except _Stopped:
            pass
        finally:
            self._stop.set()  # also when an error ends the run: the update thread follows
            self._close()
            # The SuperNode first: a supervisor that outlives its grace is killed, and the
            # kernel then ends the SuperNode anyway, but less gracefully.
            if self._membership is not None:
                self._membership.stop()
            if not self._updates.join(UPDATE_JOIN_SECONDS):
                log.warning("the update thread is still applying an update; leaving it")
            if self._local_api is not None:
                self._local_api.stop()

    def run_once(self) -> Status | None:
        """Enroll if needed and send one heartbeat (renewing if due); None if stopped meanwhile.

        Raises:
            as `run`, and CoordinatorUnavailable or CoordinatorFailed: no retries here.
        """
        try:
            self._start(retry=False)
            response = self._heartbeat()
            if self._renewal_due(response.renew_certificate):
                try:
                    self._renew()
                except RENEWAL_TRANSIENT as exc:
                    log.warning("certificate renewal failed: %s", exc)
            assert self._enrollment is not None and self._state is not None
            return Status(self._enrollment.record.device_id, self._state)
        except _Stopped:
            return None
        finally:
            self._close()

    # -- start-up --------------------------------------------------------------------------

    def _start(self, *, retry: bool) -> float | None:
        """Load or create the identity and open the device channel; the enrollment's interval."""
        enrollment = self._store.load()
        options = self._options.enroll
        if enrollment is not None:
            log.info(
                "starting as %s (coordinator %s, certificate valid until %s)",
                enrollment.record.device_id,
                enrollment.record.coordinator,
                enrollment.credentials.not_after.isoformat(),
            )
            check_rerun(enrollment, options)
            self._store.recover()
            self._connect(enrollment.record.coordinator, enrollment.credentials.ca_pem)
            interval = None
        else:
            self._store.load_key()  # a corrupt key fails here, before any network traffic
            ca_pem = self._attempt(
                "coordinator trust",
                lambda: bootstrap_ca(options, self._config.connect_timeout),
                retry,
            )
            connection = self._connect(options.coordinator, ca_pem)
            result = self._attempt(
                "enrollment",
                lambda: enroll(self._store, connection, options, ca_pem, self._clock()),
                retry,
            )
            enrollment = result.enrollment
            self._state = result.state
            approval = " (pending approval)" if result.state == "pending" else f" ({result.state})"
            log.info("enrolled as %s%s", enrollment.record.device_id, approval)
            interval = result.heartbeat_interval
        self._enrollment = enrollment
        self._device_channel(enrollment.credentials)
        return interval

    def _connect(self, coordinator: Endpoint, ca_pem: bytes) -> FleetConnection:
        connection = FleetConnection(coordinator, ca_pem, self._config)
        with self._lock:
            self._connection = connection
        if self._stop.is_set():  # stop() ran before the connection existed
            connection.close()
            raise _Stopped
        return connection

    def _device_channel(self, credentials: Credentials) -> None:
        assert self._connection is not None and self._enrollment is not None
        self._connection.use_credentials(self._enrollment.record.device_endpoint, credentials)

    def _close(self) -> None:
        with self._lock:
            connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    # -- the loop --------------------------------------------------------------------------

    def _loop(self, enrolled_interval: float | None) -> None:
        interval = (
            self._options.heartbeat_interval or enrolled_interval or self._config.heartbeat_interval
        )
        next_beat = time.monotonic()
        renew_at: float | None = None
        beat_failures = renew_failures = 0
        while True:
            if renew_at is None and self._renewal_due(False):
                renew_at = time.monotonic()
            wake = min(next_beat, math.inf if renew_at is None else renew_at)
            if self._stop.wait(max(0.0, wake - time.monotonic())):
                raise _Stopped
            if renew_at is not None and time.monotonic() >= renew_at:
                renew_at, renew_failures = self._try_renewal(renew_failures)
            if time.monotonic() < next_beat:
                continue
            try:
                response = self._heartbeat()
            except HEARTBEAT_TRANSIENT as exc:
                delay = self._retry_delay("heartbeat", exc, beat_failures)
                next_beat, beat_failures = time.monotonic() + delay, beat_failures + 1
                continue
            if beat_failures:
                log.info("heartbeat succeeded again after %d failed attempts", beat_failures)
            beat_failures = 0
            interval = (
                self._options.heartbeat_interval
                or float(response.heartbeat_interval_seconds)
                or interval
            )
            next_beat = time.monotonic() + jittered(
                interval, self._config.heartbeat_jitter, self._rng
            )
            if renew_at is None and self._renewal_due(response.renew_certificate):
                renew_at = time.monotonic()
            if self._options.updates and self._state == "accepted" and not self._updates.started:
                self._updates.start()
            self._follow_federation(response)

    def _follow_federation(self, response: fleet_pb2.HeartbeatResponse) -> None:
        """Run the SuperNode where the coordinator says the federation is (none: stop it)."""
        if not self._options.federation or self._enrollment is None:
            return
        superlink = None
        if response.federation_port:
            host = response.federation_host or self._enrollment.record.device_endpoint.host
            superlink = Endpoint(host, response.federation_port)
        if self._membership is None:
            if superlink is None:
                return
            self._membership = Membership(
                self._store.root, self._enrollment.credentials.key_pem, self._store.ca_path
            )
        self._membership.follow(superlink)

    def _installed(self, result: InstallResult) -> None:
        """After an install (in the update thread): serve what is active now."""
        if self._local_api is not None:
            self._local_api.serve(result.active)

    def _live_connection(self) -> FleetConnection:
        with self._lock:
            connection = self._connection
        if connection is None:
            raise CoordinatorUnavailable("connection closed", "the daemon is stopping")
        return connection

    def _try_renewal(self, failures: int) -> tuple[float | None, int]:
        """One renewal attempt: when to try again (None when done) and the failure count."""
        try:
            self._renew()
            if self._renewal_due(False):
                # A coordinator clock behind ours can issue a certificate that is due again at
                # once by the local clock: back off instead of spinning.
                raise ProtocolError(
                    "the renewed certificate is past its renewal point by this clock"
                )
        except RENEWAL_TRANSIENT as exc:
            delay = self._retry_delay("certificate renewal", exc, failures)
            return time.monotonic() + delay, failures + 1
        return None, 0

    def _attempt(self, what: str, call: Callable[[], _T], retry: bool) -> _T:
        """`call()`, retried on transient failures with backoff when `retry`."""
        failures = 0
        while True:
            try:
                return call()
            except TRANSIENT as exc:
                if self._stop.is_set():
                    raise _Stopped from exc
                if not retry:
                    raise
                delay = self._retry_delay(what, exc, failures)
                failures += 1
                if self._stop.wait(delay):
                    raise _Stopped from exc

    def _retry_delay(self, what: str, exc: ClientError, failures: int) -> float:
        if self._stop.is_set():
            raise _Stopped from exc
        delay = backoff_delay(
            failures, self._config.backoff_base, self._config.backoff_cap, self._rng
        )
        detail = getattr(exc, "detail", "")
        # The detail (often a long TLS or DNS error) once per streak, not on every retry.
        reason = f"{exc} ({detail})" if detail and failures == 0 else str(exc)
        log.warning("%s failed: %s; retrying in %.1f s", what, reason, delay)
        return delay

    # -- the calls -------------------------------------------------------------------------

    def _heartbeat(self) -> fleet_pb2.HeartbeatResponse:
        enrollment, connection = self._current()
        enrollment.credentials.check_not_expired(self._clock(), str(self._store))
        response = connection.heartbeat(
            fleet_pb2.HeartbeatRequest(
                model_version=self._model_version(),
                uptime_seconds=int(time.monotonic() - self._started),
                available_memory_bytes=available_memory_bytes(),
            )
        )
        self._note_state(enrollment.record.device_id, state_name(response.state))
        return response

    def _model_version(self) -> str:
        """`family@vN (variant)` of the active slot, else the configured name."""
        try:
            active = self._slots.active()
        except SlotError:
            active = None
        if active is None:
            return self._options.model_version
        return f"{release_name(active)} ({active.target.variant})"

    def _note_state(self, device_id: str, state: str) -> None:
        if state in ("rejected", "revoked"):
            raise DeviceRefused("PERMISSION_DENIED", f"device {device_id} is {state}")
        previous, self._state = self._state, state
        if state == previous:
            return
        if state == "accepted":
            log.info("device %s accepted", device_id)
        elif state == "pending":
            log.info("device %s is pending approval", device_id)
        else:
            log.warning("device %s: the coordinator reports state %s", device_id, state)

    def _renewal_due(self, coordinator_asked: bool) -> bool:
        assert self._enrollment is not None
        credentials = self._enrollment.credentials
        return renewal_due(
            credentials.not_before,
            credentials.not_after,
            self._clock(),
            fraction=self._config.renew_fraction,
            coordinator_asked=coordinator_asked,
        )

    def _renew(self) -> None:
        enrollment, connection = self._current()
        current = enrollment.credentials
        current.check_not_expired(self._clock(), str(self._store))
        # Renew with the SAME key: its public half is also registered with the Flower SuperLink
        # for SuperNode authentication, so a new key would cut the device out of training.
        response = connection.renew_certificate(
            fleet_pb2.RenewCertificateRequest(csr_pem=build_csr(current.key))
        )
        try:
            renewed = Credentials.from_pem(
                current.key_pem, response.certificate_pem, current.ca_pem
            )
        except InvalidCredentials as exc:
            raise ProtocolError(f"the renewed certificate is unusable: {exc}") from exc
        if renewed.not_after <= self._clock():
            raise ProtocolError(
                f"the renewed certificate expired already, at {renewed.not_after.isoformat()}"
            )
        self._store.replace_certificate(renewed)
        self._enrollment = Enrollment(enrollment.record, renewed)
        self._device_channel(renewed)
        log.info(
            "certificate renewed: serial %s, valid until %s",
            renewed.serial_hex,
            renewed.not_after.isoformat(),
        )

    def _current(self) -> tuple[Enrollment, FleetConnection]:
        with self._lock:
            connection = self._connection
        if connection is None or self._enrollment is None:
            raise _Stopped
        return self._enrollment, connection


class _DaemonChannel:
    """The update agent's view of the daemon's connection, whichever is current."""

    def __init__(self, connection: Callable[[], FleetConnection]) -> None:
        self._connection = connection

    def get_assignment(self, request: updates_pb2.GetAssignmentRequest) -> updates_pb2.Assignment:
        return self._connection().get_assignment(request)

    def report_status(
        self, request: updates_pb2.ReportStatusRequest
    ) -> updates_pb2.ReportStatusResponse:
        return self._connection().report_status(request)

    def fetch(self, path: str, offset: int) -> Iterator[updates_pb2.FetchChunk]:
        return self._connection().fetch(path, offset)


__all__ = ["Daemon", "DaemonOptions", "Status"]
