"""Connecting the operator CLI to a coordinator's Admin API: address, token, trust and channel.

Trust comes from `--ca-cert FILE` when given; otherwise from the operator API token itself, which
pins the fleet CA's SHA-256 (see fedota.trust): the CA is fetched from the coordinator's TLS chain,
checked against the pin, and used to verify the coordinator like any CA. Nothing is cached.
"""

from __future__ import annotations

import os

# gRPC's C core logs a failed handshake to stderr on its own unless told otherwise before it
# loads; the CLI reports failures itself, in one line. An explicit GRPC_VERBOSITY still wins.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import grpc
from cryptography import x509
from google.protobuf.message import Message

from fedota.cli._grpc_errors import cli_error
from fedota.cli.errors import EXIT_UNAVAILABLE, EXIT_USAGE, CliError
from fedota.protos.v1 import admin_pb2_grpc
from fedota.trust import API_KIND, Token, TokenFormatError, TrustError, fetch_pinned_ca, parse_token

ENV_COORDINATOR = "FEDOTA_COORDINATOR"
ENV_TOKEN = "FEDOTA_TOKEN"
ENV_CA_CERT = "FEDOTA_CA_CERT"
DEFAULT_TIMEOUT = 10.0
_MAX_CA_FILE_BYTES = 1024 * 1024

Response = TypeVar("Response", bound=Message)


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_endpoint(text: str) -> Endpoint:
    """Parse `HOST:PORT` (`[v6]:PORT` for an IPv6 literal).

    Raises:
        CliError: not HOST:PORT, or the port is not 1 to 65535.
    """
    host, sep, port = text.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise CliError(f"coordinator address {text!r} is not HOST:PORT (e.g. 127.0.0.1:7443)")
    return Endpoint(host, int(port))


@dataclass(frozen=True)
class AdminSettings:
    """Where the coordinator is, who we are to it, and how we trust it."""

    endpoint: Endpoint
    token: Token
    ca_cert: Path | None = None
    timeout: float = DEFAULT_TIMEOUT

    @classmethod
    def resolve(
        cls,
        *,
        coordinator: str | None,
        token: str | None,
        ca_cert: str | None,
        timeout: float | None,
        environ: Mapping[str, str] = os.environ,
    ) -> AdminSettings:
        """Settings from flags, falling back to FEDOTA_COORDINATOR, FEDOTA_TOKEN, FEDOTA_CA_CERT.

        Raises:
            CliError: the address or token is missing or malformed (exit code 2, with a hint).
        """
        address = coordinator or environ.get(ENV_COORDINATOR)
        if not address:
            raise CliError(
                "no coordinator address: pass --coordinator HOST:PORT "
                f"or set {ENV_COORDINATOR} (the coordinator's public TLS port)"
            )
        secret = token or environ.get(ENV_TOKEN)
        if not secret:
            raise CliError(
                f"no operator API token: set {ENV_TOKEN} or pass --token "
                "(a new coordinator writes its first admin token to DATA/admin-token)"
            )
        try:
            parsed = parse_token(secret, API_KIND)
        except TokenFormatError as exc:
            raise CliError(f"operator API token: {exc}") from None
        ca_path = ca_cert or environ.get(ENV_CA_CERT)
        return cls(
            endpoint=parse_endpoint(address),
            token=parsed,
            ca_cert=Path(ca_path) if ca_path else None,
            timeout=timeout or DEFAULT_TIMEOUT,
        )


def root_certificates(settings: AdminSettings) -> bytes:
    """The PEM CA certificate to verify the coordinator with.

    Raises:
        CliError: the CA file is unreadable or not PEM (exit 2), the coordinator is unreachable or
            does not present the pinned CA (exit 3).
    """
    if settings.ca_cert is not None:
        return _read_ca_file(settings.ca_cert)
    endpoint = settings.endpoint
    try:
        return fetch_pinned_ca(
            endpoint.host, endpoint.port, settings.token.ca_sha256, timeout=settings.timeout
        )
    except TrustError as exc:
        raise CliError(str(exc), EXIT_UNAVAILABLE) from None
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise CliError(
            f"coordinator at {endpoint} is unreachable ({reason})", EXIT_UNAVAILABLE
        ) from None


def _read_ca_file(path: Path) -> bytes:
    try:
        with path.open("rb") as file:
            pem = file.read(_MAX_CA_FILE_BYTES + 1)
    except OSError as exc:
        raise CliError(f"--ca-cert {path}: {exc.strerror or exc}", EXIT_USAGE) from None
    try:
        if len(pem) > _MAX_CA_FILE_BYTES:
            raise ValueError("file too large")
        x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise CliError(f"--ca-cert {path}: not a PEM certificate", EXIT_USAGE) from None
    return pem


class AdminClient:
    """An authenticated TLS channel to one coordinator's Admin service.

    Use as a context manager; `call` turns every gRPC failure into a one-line CliError.
    """

    def __init__(self, settings: AdminSettings) -> None:
        """Raises: CliError (see root_certificates)."""
        self.settings = settings
        credentials = grpc.ssl_channel_credentials(root_certificates=root_certificates(settings))
        self._channel = grpc.secure_channel(str(settings.endpoint), credentials)
        self._stub = admin_pb2_grpc.AdminStub(self._channel)
        self._metadata = (("authorization", f"Bearer {settings.token}"),)

    def call(
        self,
        method: str,
        request: Message,
        returns: type[Response],
        *,
        timeout: float | None = None,
    ) -> Response:
        """Call Admin.<method> with the token and deadline (`timeout` overrides the setting for
        calls that do long work, such as building a release).

        Raises:
            CliError: the call failed; its exit code follows the gRPC status (_grpc_errors).
        """
        rpc = getattr(self._stub, method)
        try:
            response = rpc(
                request, timeout=timeout or self.settings.timeout, metadata=self._metadata
            )
        except grpc.RpcError as exc:
            raise cli_error(exc, str(self.settings.endpoint)) from None
        if not isinstance(response, returns):
            raise TypeError(f"Admin.{method} returned {type(response).__name__}")
        return response

    def call_stream(
        self,
        method: str,
        requests: Iterator[Message],
        returns: type[Response],
        *,
        timeout: float,
    ) -> Response:
        """Call a client-streaming Admin.<method> (e.g. an upload) with its own deadline.

        Raises:
            CliError: as `call`.
        """
        rpc = getattr(self._stub, method)
        try:
            response = rpc(requests, timeout=timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise cli_error(exc, str(self.settings.endpoint)) from None
        if not isinstance(response, returns):
            raise TypeError(f"Admin.{method} returned {type(response).__name__}")
        return response

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


__all__ = [
    "ENV_CA_CERT",
    "ENV_COORDINATOR",
    "ENV_TOKEN",
    "AdminClient",
    "AdminSettings",
    "Endpoint",
    "parse_endpoint",
    "root_certificates",
]
