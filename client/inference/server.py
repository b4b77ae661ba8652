"""`InferenceServer`: the local inference API on a Unix socket (0600) and optionally loopback TCP.

The daemon builds one at start-up with the model it runs (or none yet: calls then answer
UNAVAILABLE), calls `swap` whenever the updater has installed and verified a new version, and
`stop` on shutdown, which lets calls in flight finish for a grace period.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import socket
import stat
import sys
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType

import grpc

from fedota.client.inference.config import InferenceConfig
from fedota.client.inference.errors import ErrorTable, InferenceError, SocketInUse
from fedota.client.inference.examples import ExampleSink
from fedota.client.inference.model import ServedModel
from fedota.client.inference.predictions import PredictionCache
from fedota.client.inference.service import LocalInferenceService
from fedota.client.inference.swap import ModelHolder, Released
from fedota.protos.v1 import inference_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

SOCKET_NAME = "inference.sock"
SOCKET_MODE = 0o600
# sun_path holds 108 bytes on Linux and 104 on the BSDs and macOS, the terminating NUL included.
MAX_SOCKET_PATH = 107 if sys.platform.startswith("linux") else 103


def default_socket_path(state_dir: Path) -> Path:
    """Where the daemon of `state_dir` serves, and where `fedota device infer` looks."""
    return state_dir / SOCKET_NAME


class InferenceServer:
    """The LocalInference service over gRPC; `start`, `swap`, `stop` (or use it with `with`)."""

    def __init__(
        self,
        model: ServedModel | None = None,
        *,
        socket_path: Path | None = None,
        tcp_port: int | None = None,
        tcp_host: str = "127.0.0.1",
        config: InferenceConfig | None = None,
        examples: ExampleSink | None = None,
        errors: Mapping[type[BaseException], type[InferenceError]] | None = None,
    ) -> None:
        """Prepare a server; nothing listens before `start()`.

        Args:
            model: the model to serve first, or None until the first `swap`.
            socket_path: the Unix socket to serve on (its directory should be private).
            tcp_port: also serve on this loopback port (0 picks a free one).
            tcp_host: the loopback address for `tcp_port`.
            config: limits and batching; the defaults are safe.
            examples: where SubmitExample/SubmitFeedback store examples; None refuses them.
            errors: typed errors of the model, engine or store and what they mean here, besides
                the ones `ErrorTable` knows.

        Raises:
            ValueError: no address, a socket path over the system limit, or a non-loopback host.
        """
        if socket_path is None and tcp_port is None:
            raise ValueError("InferenceServer needs a socket_path, a tcp_port or both")
        if socket_path is not None and len(os.fsencode(socket_path)) > MAX_SOCKET_PATH:
            raise ValueError(
                f"socket path {socket_path} is {len(os.fsencode(socket_path))} bytes, over the "
                f"system limit of {MAX_SOCKET_PATH}: pick a shorter path"
            )
        if tcp_port is not None and not _is_loopback(tcp_host):
            raise ValueError(
                f"the local inference API serves on loopback only, not on {tcp_host!r}"
            )
        self.config = config or InferenceConfig()
        self._socket_path = socket_path
        self._tcp_host = tcp_host
        self._tcp_port = tcp_port
        self._bound_port: int | None = None
        self._table = ErrorTable(errors)
        self._holder = ModelHolder(self.config, self._table.translate)
        self._predictions = PredictionCache(
            self.config.prediction_cache,
            self.config.prediction_ttl,
            self.config.prediction_cache_bytes,
        )
        self._examples = examples
        self._first_model = model
        self._executor: ThreadPoolExecutor | None = None
        self._server: grpc.Server | None = None
        self._stopped = False

    @property
    def unix_target(self) -> str | None:
        """The gRPC target of the socket (`unix:/path`), when serving on one."""
        return f"unix:{self._socket_path}" if self._socket_path is not None else None

    @property
    def tcp_target(self) -> str | None:
        """`host:port` of the loopback port, once started with one."""
        if self._bound_port is None:
            return None
        host = f"[{self._tcp_host}]" if ":" in self._tcp_host else self._tcp_host
        return f"{host}:{self._bound_port}"

    @property
    def model_version(self) -> str | None:
        """The version new requests go to, or None before the first model."""
        slot = self._holder.current
        return slot.info.version if slot else None

    def queued(self) -> dict[str, int]:
        """Requests of the current model waiting per capability (empty before the first model)."""
        slot = self._holder.current
        return {str(c): n for c, n in slot.queued().items()} if slot else {}

    def start(self) -> None:
        """Load the first model (if given) and listen.

        Raises:
            SocketInUse: another server answers on the socket path, or it is not a socket.
            RuntimeError: already started or stopped, or gRPC could not bind an address.
            Exception: whatever the first model raised while starting.
        """
        if self._server is not None or self._stopped:
            raise RuntimeError("an inference server starts once; make a new one")
        if self._first_model is not None:
            self._holder.swap(self._first_model)
            self._first_model = None
        config = self.config
        executor = ThreadPoolExecutor(config.max_workers, thread_name_prefix="fedota-infer")
        server = grpc.server(
            executor,
            maximum_concurrent_rpcs=config.max_concurrent_rpcs,
            options=[
                ("grpc.max_receive_message_length", config.max_message_bytes),
                ("grpc.max_send_message_length", config.max_message_bytes),
                # Two daemons must not share a port silently.
                ("grpc.so_reuseport", 0),
            ],
        )
        service = LocalInferenceService(
            self._holder, config, self._predictions, self._examples, self._table.translate
        )
        pb_grpc.add_LocalInferenceServicer_to_server(service, server)
        try:
            if self._socket_path is not None:
                _claim_socket_path(self._socket_path)
                server.add_insecure_port(f"unix:{self._socket_path}")
                # The API is for the device's own apps only.
                os.chmod(self._socket_path, SOCKET_MODE)
            if self._tcp_port is not None:
                self._bound_port = server.add_insecure_port(f"{self._tcp_host}:{self._tcp_port}")
            server.start()
        except BaseException:
            self._stopped = True
            server.stop(None)
            executor.shutdown(wait=False)
            self._holder.close(self.config.stop_grace)
            raise
        self._executor, self._server = executor, server
        targets = [t for t in (self.unix_target, self.tcp_target) if t]
        log.info("local inference API on %s", ", ".join(targets))

    def swap(self, model: ServedModel) -> Released:
        """Send new requests to `model`; requests in flight finish on the one it replaces.

        Returns a handle set when the replaced model has finished its last request and was
        closed (at once when nothing was in flight or nothing was loaded).

        Raises:
            Stopping: the server is stopping.
            ValueError: the model's info or capabilities are malformed.
            Exception: whatever the model raised while starting; the old one keeps serving.
        """
        return self._holder.swap(model)

    def stop(self, grace: float | None = None) -> bool:
        """Stop listening, let calls in flight finish for `grace` seconds, then cancel the rest.

        Returns True when every thread the server started has ended.
        """
        grace = self.config.stop_grace if grace is None else grace
        self._stopped = True
        server, self._server = self._server, None
        if server is not None:
            server.stop(grace).wait(grace + 5)
        clean = self._holder.close(timeout=grace + 5)
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        if server is not None and self._socket_path is not None:
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISSOCK(os.lstat(self._socket_path).st_mode):
                    _unlink_if_stale(self._socket_path)
        return clean

    def __enter__(self) -> InferenceServer:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def serve(
    model: ServedModel | None,
    *,
    socket_path: Path | None = None,
    tcp_port: int | None = None,
    config: InferenceConfig | None = None,
    examples: ExampleSink | None = None,
    errors: Mapping[type[BaseException], type[InferenceError]] | None = None,
) -> InferenceServer:
    """Start serving `model` (see `InferenceServer`); the caller stops the returned server.

    Raises:
        ValueError: see `InferenceServer`.
        SocketInUse: see `InferenceServer.start`.
        RuntimeError: gRPC could not bind an address.
    """
    server = InferenceServer(
        model,
        socket_path=socket_path,
        tcp_port=tcp_port,
        config=config,
        examples=examples,
        errors=errors,
    )
    server.start()
    return server


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _claim_socket_path(path: Path) -> None:
    """Make `path` free for binding: create a private parent, remove a dead server's socket.

    gRPC unlinks whatever socket is at the path before it binds, so a live server must be
    detected here or it would silently lose its address.

    Raises:
        SocketInUse: a server answers on it, or the path is something other than a socket.
    """
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise SocketInUse(f"{path} exists and is not a socket: refusing to replace it")
    if not _unlink_if_stale(path):
        raise SocketInUse(f"another inference server is listening on {path}")


def _unlink_if_stale(path: Path) -> bool:
    """Remove the socket at `path` if nothing listens on it; True when it is gone."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(os.fspath(path))
    except (ConnectionRefusedError, FileNotFoundError):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return True
    except OSError:
        return False
    finally:
        probe.close()
    return False


__all__ = [
    "MAX_SOCKET_PATH",
    "SOCKET_MODE",
    "SOCKET_NAME",
    "InferenceServer",
    "default_socket_path",
    "serve",
]
