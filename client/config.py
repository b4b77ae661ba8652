"""Every timing limit of the device daemon in one place, with safe defaults."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DaemonConfig:
    """Timeouts, retry schedule and renewal policy of the daemon.

    Attributes:
        rpc_timeout: deadline of every RPC, seconds.
        connect_timeout: TCP/TLS timeout when fetching the pinned CA, seconds.
        backoff_base: first retry delay bound after a transient failure, seconds.
        backoff_cap: largest retry delay bound, seconds.
        heartbeat_interval: used until the coordinator names one, seconds.
        heartbeat_jitter: fraction by which each heartbeat interval is randomly stretched or cut.
        renew_fraction: share of the certificate lifetime after which the daemon renews.
        reconnect_backoff_max: cap on gRPC's own reconnect backoff, seconds; kept low so a
            coordinator that comes back is seen at the daemon's next retry, not minutes later.
        download_timeout: deadline of one download stream (a cut one resumes), seconds.
        update_interval: how often the daemon asks for an update assignment, seconds.
    """

    rpc_timeout: float = 10.0
    connect_timeout: float = 10.0
    backoff_base: float = 1.0
    backoff_cap: float = 300.0
    heartbeat_interval: float = 30.0
    heartbeat_jitter: float = 0.1
    renew_fraction: float = 2 / 3
    reconnect_backoff_max: float = 5.0
    download_timeout: float = 600.0
    update_interval: float = 30.0

    def __post_init__(self) -> None:
        for name in (
            "rpc_timeout",
            "connect_timeout",
            "backoff_base",
            "heartbeat_interval",
            "download_timeout",
            "update_interval",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"DaemonConfig.{name} must be positive, got {getattr(self, name)}")
        if self.backoff_cap < self.backoff_base:
            raise ValueError(
                f"DaemonConfig.backoff_cap ({self.backoff_cap}) is below backoff_base "
                f"({self.backoff_base})"
            )
        if not 0 <= self.heartbeat_jitter < 1:
            raise ValueError(
                f"DaemonConfig.heartbeat_jitter must be in [0, 1), got {self.heartbeat_jitter}"
            )
        if not 0 < self.renew_fraction < 1:
            raise ValueError(
                f"DaemonConfig.renew_fraction must be in (0, 1), got {self.renew_fraction}"
            )
        if self.reconnect_backoff_max <= 0:
            raise ValueError("DaemonConfig.reconnect_backoff_max must be positive")
