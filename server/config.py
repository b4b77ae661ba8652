"""Every limit and setting of the coordinator in one place, with safe defaults."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from fedota.server.releases.tuf_config import TufConfig

KIB = 1024
MIB = 1024 * KIB


@dataclass(frozen=True)
class Limits:
    """Caps on what a request may carry and the timings the coordinator hands out.

    Raises (on construction):
        ValueError: a limit that cannot work (non-positive sizes or times, a heartbeat interval
            under a second, a renew fraction outside (0, 1)).
    """

    # Transport.
    max_message_bytes: int = 4 * MIB
    thread_pool_size: int = 16
    shutdown_grace_seconds: float = 5.0

    # Request fields.
    max_token_chars: int = 200
    max_csr_bytes: int = 16 * KIB
    max_labels: int = 32
    max_label_key_chars: int = 63
    max_label_value_chars: int = 255
    max_profile_string_chars: int = 255
    max_reason_chars: int = 500
    max_description_chars: int = 500
    max_id_chars: int = 40
    max_page_token_chars: int = 512

    # Enrollment tokens.
    min_token_ttl: dt.timedelta = dt.timedelta(seconds=60)
    max_token_ttl: dt.timedelta = dt.timedelta(days=365)
    max_token_uses: int = 1_000_000

    # Device listing.
    default_page_size: int = 100
    max_page_size: int = 1000

    # Certificates and liveness.
    certificate_lifetime: dt.timedelta = dt.timedelta(days=30)
    # Certificates start a little in the past so a replica with a slightly late clock accepts them.
    certificate_backdate: dt.timedelta = dt.timedelta(seconds=60)
    heartbeat_interval: dt.timedelta = dt.timedelta(seconds=30)
    renew_fraction: float = 2 / 3
    ca_lifetime: dt.timedelta = dt.timedelta(days=3650)
    server_certificate_lifetime: dt.timedelta = dt.timedelta(days=365)
    server_certificate_min_remaining: dt.timedelta = dt.timedelta(days=7)

    # Models and updates.
    max_model_bytes: int = 2 * 1024 * MIB
    fetch_chunk_bytes: int = MIB

    # API tokens: last_used_at is bookkeeping, written at most this often per token.
    api_token_touch_interval: dt.timedelta = dt.timedelta(seconds=60)

    def __post_init__(self) -> None:
        positive_ints = {
            "max_message_bytes": self.max_message_bytes,
            "thread_pool_size": self.thread_pool_size,
            "max_token_chars": self.max_token_chars,
            "max_csr_bytes": self.max_csr_bytes,
            "max_labels": self.max_labels,
            "max_token_uses": self.max_token_uses,
            "default_page_size": self.default_page_size,
            "max_page_size": self.max_page_size,
            "max_model_bytes": self.max_model_bytes,
            "fetch_chunk_bytes": self.fetch_chunk_bytes,
        }
        for name, value in positive_ints.items():
            if value <= 0:
                raise ValueError(f"{name} must be positive (got {value})")
        if self.certificate_lifetime.total_seconds() <= 0:
            raise ValueError(
                f"certificate_lifetime must be positive (got {self.certificate_lifetime})"
            )
        # Devices get whole seconds on the wire.
        if self.heartbeat_interval.total_seconds() < 1:
            raise ValueError(
                f"heartbeat_interval must be at least 1s (got {self.heartbeat_interval})"
            )
        if not 0 < self.renew_fraction < 1:
            raise ValueError(f"renew_fraction must be in (0, 1) (got {self.renew_fraction})")
        if self.default_page_size > self.max_page_size:
            raise ValueError("default_page_size must not exceed max_page_size")


@dataclass(frozen=True)
class Address:
    """A `HOST:PORT` to listen on; port 0 asks the system for a free one."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Address:
        """Parse `HOST:PORT` or `[IPv6]:PORT`.

        Raises:
            ValueError: no port, a port outside 0..65535, or an empty host.
        """
        host, sep, port_text = text.strip().rpartition(":")
        if not sep or not host or not port_text.isdigit():
            raise ValueError(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:7443)")
        port = int(port_text)
        if port > 65535:
            raise ValueError(f"{text!r}: port {port} is not in 0..65535")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        return cls(host, port)

    def with_port(self, port: int) -> Address:
        return Address(self.host, port)

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


DEFAULT_PUBLIC = Address("127.0.0.1", 7443)


@dataclass(frozen=True)
class Settings:
    """Where one coordinator keeps its state and listens.

    `device_listen` None means the public host on the public port + 1 (or a free port when the
    public port is 0). `advertise_device_port` is what enrolling devices are told to dial, for a
    coordinator behind a port mapping; None means the port actually bound.
    """

    data_dir: Path
    db_url: str | None = None
    listen: Address = DEFAULT_PUBLIC
    device_listen: Address | None = None
    # The read-only HTTP update repository (TUF layout); None: public port + 2 (or a free one).
    repository_listen: Address | None = None
    advertise_device_port: int | None = None
    # Extra subject alternative names (IP addresses or DNS names) for the server certificate.
    sans: tuple[str, ...] = ()
    migrate: bool = True
    limits: Limits = field(default_factory=Limits)
    # Expiry of each update-metadata role and when it is re-signed.
    tuf: TufConfig = field(default_factory=TufConfig)
    # The Flower SuperLink for training campaigns (port 0: a free one); None: no federation.
    federation_listen: Address | None = None

    def repository_address(self) -> Address:
        """The HTTP repository port to bind, resolving the default."""
        if self.repository_listen is not None:
            return self.repository_listen
        port = self.listen.port + 2 if self.listen.port else 0
        return self.listen.with_port(port)

    def device_address(self) -> Address:
        """The device port to bind, resolving the default."""
        if self.device_listen is not None:
            return self.device_listen
        port = self.listen.port + 1 if self.listen.port else 0
        return self.listen.with_port(port)
