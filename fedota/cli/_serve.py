"""`fedota device serve`: serve a model file on the local inference API until signalled.

The daemon proper will serve the model its updater activates; this command serves a given
checkpoint, for app development and for devices that get their models another way.
"""

from __future__ import annotations

import argparse
import signal
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

from fedota.cli.errors import EXIT_UNAVAILABLE, CliError

# fedota.client.data.STORE_FILE, spelled out so that `--help` and `infer` load no device code
# (a test holds the two equal).
STORE_FILE = "examples.db"
EXAMPLES_MAX_BYTES = 64 << 20
EXAMPLES_MAX_AGE = timedelta(days=30)


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        required=True,
        metavar="FILE",
        help="a fedota checkpoint (.safetensors) to serve, or builtin:minilm[:fp32|int8|int4] "
        "for all-MiniLM-L6-v2 sentence embeddings (needs the bench extra)",
    )
    parser.add_argument(
        "--state",
        type=Path,
        required=True,
        metavar="DIR",
        help=f"the device state directory: the socket and the example store ({STORE_FILE}) "
        "live here",
    )
    parser.add_argument("--socket", type=Path, metavar="PATH", help="serve here instead")
    parser.add_argument(
        "--tcp-port", type=int, metavar="PORT", help="also serve on 127.0.0.1:PORT (0: any)"
    )
    parser.add_argument(
        "--names-file",
        type=Path,
        metavar="FILE",
        help="names (one per line) the desensitiser replaces in stored examples",
    )


def run(args: argparse.Namespace) -> int:
    """Load, serve, wait for SIGTERM/SIGINT, drain and stop.

    Raises:
        CliError: the model cannot be loaded (exit 2), the state directory or example store is
            unusable (exit 2), or another server holds the socket (exit 3).
    """
    from fedota.client.data import Desensitizer, ExampleStore, StoreError
    from fedota.client.inference import InferenceServer, SocketInUse, default_socket_path
    from fedota.client.inference.loading import (
        BUILTIN_PREFIX,
        ModelLoadError,
        load_builtin_model,
        load_served_model,
    )

    try:
        if args.model.startswith(BUILTIN_PREFIX):
            model = load_builtin_model(args.model.removeprefix(BUILTIN_PREFIX))
        else:
            model = load_served_model(Path(args.model))
    except ModelLoadError as error:
        raise CliError(f"--model: {error}") from None
    try:
        args.state.mkdir(mode=0o700, parents=True, exist_ok=True)
        names = _names(args.names_file)
        store = ExampleStore(
            args.state / STORE_FILE,
            max_bytes=EXAMPLES_MAX_BYTES,
            max_age=EXAMPLES_MAX_AGE,
            desensitizer=Desensitizer(names),
        )
    except (OSError, StoreError, ValueError) as error:
        raise CliError(f"--state: {error}") from None
    socket_path = args.socket or default_socket_path(args.state)
    server = InferenceServer(model, socket_path=socket_path, tcp_port=args.tcp_port, examples=store)
    try:
        server.start()
    except SocketInUse as error:
        store.close()
        raise CliError(str(error), EXIT_UNAVAILABLE) from None
    info = model.info
    where = ", ".join(t for t in (server.unix_target, server.tcp_target) if t)
    print(f"serving {info.architecture} {info.variant} {info.version[:12]} on {where}", flush=True)
    try:
        _wait_for_signal()
    finally:
        server.stop()
        store.close()
    return 0


def _names(path: Path | None) -> list[str]:
    if path is None:
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip()]


def _wait_for_signal() -> None:
    """Block until SIGTERM or SIGINT (the handler only sets an event)."""
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while not stop.wait(0.2):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
