"""`fedota device run|status|infer`: the device daemon, an offline view of its identity, and
calls to the model it serves.

fedota.client is imported only when a subcommand runs; its typed errors are mapped to exit codes
here, once (`exit_code_for`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from fedota.cli.durations import parse_duration
from fedota.cli.errors import (
    EXIT_FAILURE,
    EXIT_REFUSED,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    CliError,
)

if TYPE_CHECKING:
    from fedota.client import ClientError, Daemon

_T = TypeVar("_T")
# The same list as fedota.client.HARDWARE_CLASSES (a test keeps them equal); spelled out here so
# that building the parser does not import the daemon.
HARDWARE_CLASSES = ("fp32", "int8", "int4", "mcu-int8")
COORDINATOR_ENV = "FEDOTA_COORDINATOR"
TOKEN_ENV = "FEDOTA_ENROLL_TOKEN"
# The same name as fedota.cli._infer_client.SOCKET_ENV, spelled out to keep grpc out of --help.
INFER_SOCKET_ENV = "FEDOTA_INFERENCE_SOCKET"
# How long a stopping daemon may take to finish a call in flight before the process exits anyway.
STOP_GRACE_SECONDS = 0.8

log = logging.getLogger("fedota.client")


def register(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="device_command", metavar="COMMAND", required=True)
    run = commands.add_parser(
        "run",
        help="enroll (first run), heartbeat, install model updates and serve the model",
        description="Enroll with the coordinator on the first run, then heartbeat over mutual TLS "
        "and renew the device certificate until stopped (SIGTERM or Ctrl-C exit 0). Once "
        "accepted, the daemon asks for model updates every --update-interval, installs them "
        "into A/B slots (verified, health-checked, rolled back on failure) and serves the active "
        "model on the local inference API (`fedota device infer --state DIR`). Exit codes: "
        "2 bad input or state directory (or another daemon on it), 3 coordinator unreachable or "
        "untrusted, 4 refused (token, device rejected or revoked, certificate expired).",
    )
    run.add_argument(
        "--coordinator",
        metavar="HOST:PORT",
        help=f"the coordinator's public address (default: ${COORDINATOR_ENV}); "
        "needed only to enroll",
    )
    run.add_argument(
        "--token",
        help=f"enrollment token (default: ${TOKEN_ENV}); needed only on the first run",
    )
    _state_argument(run)
    run.add_argument(
        "--ca-cert",
        type=Path,
        metavar="FILE",
        help="trust this fleet CA certificate instead of the one the token pins",
    )
    run.add_argument(
        "--hardware-class",
        choices=HARDWARE_CLASSES,
        help="model variant this device runs (default: from its memory)",
    )
    run.add_argument(
        "--label",
        action="append",
        default=[],
        type=_label,
        metavar="KEY=VALUE",
        help="a label for the device record (repeatable; first run only)",
    )
    run.add_argument(
        "--heartbeat-interval",
        type=parse_duration,
        metavar="DURATION",
        help="override the coordinator's heartbeat interval (e.g. 30s)",
    )
    run.add_argument(
        "--update-interval",
        type=parse_duration,
        metavar="DURATION",
        help="how often to ask for a model update once accepted (default: 30s)",
    )
    run.add_argument(
        "--no-federation",
        action="store_true",
        help="take no part in training campaigns (run no Flower SuperNode)",
    )
    api = run.add_mutually_exclusive_group()
    api.add_argument(
        "--no-inference", action="store_true", help="do not serve the local inference API"
    )
    api.add_argument(
        "--inference-socket",
        type=Path,
        metavar="PATH",
        help="serve the local inference API here (default: DIR/inference.sock)",
    )
    run.add_argument(
        "--inference-port",
        type=int,
        metavar="PORT",
        help="also serve the local inference API on 127.0.0.1:PORT (0: any)",
    )
    run.add_argument(
        "--names-file",
        type=Path,
        metavar="FILE",
        help="names (one per line) the desensitiser replaces in examples apps submit",
    )
    run.add_argument(
        "--once",
        action="store_true",
        help="enroll if needed, send one heartbeat, print the device id and state, exit "
        "(no updates, no inference API)",
    )
    run.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    run.set_defaults(handler=_run)

    status = commands.add_parser(
        "status",
        help="show the device identity in a state directory (offline)",
        description="Show the device id, coordinator, certificate and key of a state directory "
        "without contacting the coordinator.",
    )
    _state_argument(status)
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    status.set_defaults(handler=_status)

    infer = commands.add_parser(
        "infer",
        help="call the model the daemon serves on its local inference API",
        description="Call the model a running daemon serves on its Unix socket: --state DIR "
        f"finds it, --socket PATH (or ${INFER_SOCKET_ENV}) names it, --address HOST:PORT picks "
        "a loopback port instead. Exit codes: 2 a bad request or one the model cannot serve, "
        "3 daemon unreachable, busy or without a model, 1 the server failed.",
    )
    _infer_commands(infer)

    serve = commands.add_parser(
        "serve",
        help="serve a model file on the local inference API until stopped",
        description="Serve a fedota checkpoint on the device's Unix socket (the one `fedota "
        "device infer --state DIR` calls), with examples apps submit kept desensitised in the "
        "state directory. Stops on SIGTERM/SIGINT after in-flight requests finish. Exit codes: "
        "2 bad model file or state directory, 3 another server holds the socket.",
    )
    from fedota.cli import _serve

    _serve.register(serve)
    serve.set_defaults(handler=_serve_model)


def _serve_model(args: argparse.Namespace) -> int:
    from fedota.cli import _serve

    return _serve.run(args)


def _infer_commands(parser: argparse.ArgumentParser) -> None:
    common = argparse.ArgumentParser(add_help=False)
    where = common.add_mutually_exclusive_group()
    where.add_argument("--state", type=Path, metavar="DIR", help="the daemon's state directory")
    where.add_argument("--socket", metavar="PATH", help="the daemon's inference socket")
    where.add_argument("--address", metavar="HOST:PORT", help="the daemon's loopback port")
    common.add_argument(
        "--timeout",
        type=_positive_float,
        default=30.0,
        metavar="SECONDS",
        help="deadline of the call (default: 30)",
    )
    common.add_argument("--json", action="store_true", help="print JSON instead of text")
    commands = parser.add_subparsers(dest="infer_command", metavar="COMMAND", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=[common], help=help_text, description=help_text)
        sub.set_defaults(handler=_infer)
        return sub

    predict = command("predict", "classify one feature vector")
    predict.add_argument("features", nargs="+", type=float, metavar="FEATURE")
    embed = command("embed", "embed texts into vectors")
    embed.add_argument("texts", nargs="+", metavar="TEXT")
    generate = command("generate", "generate text after a prompt, printed as it comes")
    generate.add_argument("prompt", metavar="PROMPT")
    generate.add_argument(
        "--max-new-tokens", type=_positive_int, default=64, metavar="N", help="(default: 64)"
    )
    generate.add_argument(
        "--temperature", type=float, default=0.0, metavar="T", help="0 is greedy (default)"
    )
    generate.add_argument("--seed", type=int, metavar="N", help="makes sampling reproducible")
    generate.add_argument("--stop", metavar="TEXT", help="stop once this text is generated")
    command("info", "show the model being served and the daemon's memory")
    submit = command("submit", "store a labelled example for on-device training")
    submit.add_argument("--label", required=True, help="the example's class or answer")
    given = submit.add_mutually_exclusive_group(required=True)
    given.add_argument("--text", help="a text example (desensitised before it is stored)")
    given.add_argument("--features", nargs="+", type=float, metavar="F", help="a feature vector")
    feedback = command("feedback", "correct a recent prediction (stores its input)")
    feedback.add_argument("prediction_id", metavar="PREDICTION_ID", help="from `infer predict`")
    feedback.add_argument("correct_label", metavar="LABEL", help="the right class name")


def _infer(args: argparse.Namespace) -> int:
    from fedota.cli._infer_client import run

    return run(args)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _state_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state", type=Path, required=True, metavar="DIR", help="the device state directory"
    )


def _label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key.strip(), value


def exit_code_for(exc: ClientError) -> int:
    """The CLI exit code of a daemon failure (see fedota.cli.errors)."""
    from fedota import client

    table: tuple[tuple[type[Exception], int], ...] = (
        (client.StateError, EXIT_USAGE),
        (client.UsageError, EXIT_USAGE),
        (client.RequestInvalid, EXIT_USAGE),
        (client.UntrustedCoordinator, EXIT_UNAVAILABLE),
        (client.CoordinatorUnavailable, EXIT_UNAVAILABLE),
        (client.CoordinatorFailed, EXIT_UNAVAILABLE),
        (client.EnrollmentRefused, EXIT_REFUSED),
        (client.AlreadyEnrolled, EXIT_REFUSED),
        (client.DeviceRefused, EXIT_REFUSED),
        (client.CredentialRefused, EXIT_REFUSED),
        (client.CertificateExpired, EXIT_REFUSED),
    )
    for kind, code in table:
        if isinstance(exc, kind):
            return code
    return EXIT_FAILURE


def _run(args: argparse.Namespace) -> int:
    from fedota.client import (
        Daemon,
        DaemonConfig,
        DaemonOptions,
        Endpoint,
        EnrollOptions,
        StateStore,
    )
    from fedota.client.local_api import LocalApiOptions

    _configure_logging(args.verbose)
    coordinator_text = args.coordinator or os.environ.get(COORDINATOR_ENV)
    try:
        coordinator = Endpoint.parse(coordinator_text) if coordinator_text else None
    except ValueError as exc:
        raise CliError(f"--coordinator: {exc}") from exc
    labels = dict(args.label)
    if len(labels) != len(args.label):
        raise CliError("--label: a key is given more than once")
    interval = args.heartbeat_interval.total_seconds() if args.heartbeat_interval else None
    config = DaemonConfig()
    if args.update_interval is not None:
        config = DaemonConfig(update_interval=args.update_interval.total_seconds())
    if args.inference_port is not None and not 0 <= args.inference_port <= 65535:
        raise CliError(f"--inference-port: {args.inference_port} is not a port number")
    serving = not (args.no_inference or args.once)
    names = _read_names(args.names_file)
    options = DaemonOptions(
        enroll=EnrollOptions(
            coordinator=coordinator,
            token=args.token or os.environ.get(TOKEN_ENV) or None,
            ca_pem=_read_ca(args.ca_cert) if args.ca_cert else None,
            hardware_class=args.hardware_class,
            labels=labels,
        ),
        heartbeat_interval=interval,
        local_api=LocalApiOptions(
            socket_path=args.inference_socket,
            tcp_port=args.inference_port,
            open_examples=lambda: _open_examples(args.state, names),
        )
        if serving
        else None,
        federation=not args.no_federation,
    )
    daemon = Daemon(StateStore(args.state), options, config)
    if args.once:
        status = _until_signalled(daemon, daemon.run_once)
        if status is not None:
            print(f"{status.device_id} {status.state}")
        return 0
    _until_signalled(daemon, daemon.run)
    return 0


def _read_names(names_file: Path | None) -> list[str]:
    if names_file is None:
        return []
    try:
        lines = names_file.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise CliError(f"--names-file: cannot read {names_file}: {exc.strerror}") from None
    return [line.strip() for line in lines if line.strip()]


def _open_examples(state: Path, names: list[str]) -> Any:
    """The store of examples apps submit, in the (enrolled) state directory, as `device serve`
    keeps it.

    Raises:
        StateError: the store cannot be opened.
    """
    from fedota.cli._serve import EXAMPLES_MAX_AGE, EXAMPLES_MAX_BYTES
    from fedota.client import StateError
    from fedota.client.data import Desensitizer, ExampleStore, StoreError
    from fedota.client.data.store import STORE_FILE

    try:
        return ExampleStore(
            state / STORE_FILE,
            max_bytes=EXAMPLES_MAX_BYTES,
            max_age=EXAMPLES_MAX_AGE,
            desensitizer=Desensitizer(names),
        )
    except (OSError, StoreError, ValueError) as exc:
        raise StateError(f"the example store in {state}: {exc}") from None


def _status(args: argparse.Namespace) -> int:
    from fedota.client import ClientError, DaemonConfig, StateStore
    from fedota.client.schedule import renewal_point

    store = StateStore(args.state)
    try:
        enrollment = store.load()
    except ClientError as exc:
        raise CliError(str(exc), exit_code_for(exc)) from exc
    if enrollment is None:
        raise CliError(f"{args.state} holds no enrolled device (`fedota device run` enrolls one)")
    record, credentials = enrollment.record, enrollment.credentials
    view: dict[str, Any] = {
        "device_id": record.device_id,
        "coordinator": str(record.coordinator),
        "device_endpoint": str(record.device_endpoint),
        "enrolled_at": record.enrolled_at.isoformat(),
        "hardware_class": record.hardware_class,
        "certificate_serial": credentials.serial_hex,
        "certificate_not_before": credentials.not_before.isoformat(),
        "certificate_expires_at": credentials.not_after.isoformat(),
        "certificate_renews_after": renewal_point(
            credentials.not_before, credentials.not_after, DaemonConfig().renew_fraction
        ).isoformat(),
        "public_key_sha256": credentials.key_sha256,
        **_model_view(store),
    }
    if args.json:
        print(json.dumps(view, indent=2))
    else:
        width = max(len(name) for name in view)
        for name, value in view.items():
            print(f"{name.replace('_', ' '):<{width}}  {value}")
    return 0


def _model_view(store: Any) -> dict[str, str]:
    """The active model and the update trust root, read from the state directory."""
    from fedota.client import ClientError
    from fedota.client.local_api import release_name
    from fedota.client.update import SlotStore
    from fedota.client.update.trust import has_trust_root

    try:
        active = SlotStore(store.root).active()
    except ClientError as exc:
        model = {"model": f"unreadable: {exc}"}
    else:
        model = (
            {"model": "none yet"}
            if active is None
            else {
                "model": release_name(active),
                "model_variant": active.target.variant,
                "model_content_sha256": active.content_sha256,
                "model_installed_at": active.installed_at,
            }
        )
    root = "present" if has_trust_root(store.update_dir) else "missing (fetched on the next update)"
    return {**model, "update_trust_root": root}


def _read_ca(path: Path) -> bytes:
    from cryptography import x509

    try:
        pem = path.read_bytes()
        x509.load_pem_x509_certificate(pem)
    except OSError as exc:
        raise CliError(f"--ca-cert: cannot read {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise CliError(f"--ca-cert: {path} is not a PEM certificate") from exc
    return pem


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S%z",
        stream=sys.stderr,
    )


def _until_signalled(daemon: Daemon, target: Callable[[], _T]) -> _T | None:
    """Run `target` in a worker thread; SIGTERM/SIGINT stop the daemon promptly.

    The signal handler only records the signal (an Event.set() inside a handler can deadlock on
    the lock the interrupted main thread holds); the main thread, which only joins the worker,
    then calls `daemon.stop()` (which cancels calls in flight) and gives the worker a short grace.

    Raises:
        CliError: the daemon failed, with the exit code of its error.
    """
    from fedota.client import ClientError

    signalled: list[int] = []
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["result"] = target()
        except BaseException as exc:  # handed to the main thread, which reports it
            outcome["error"] = exc

    def on_signal(signum: int, frame: object) -> None:
        signalled.append(signum)

    previous = _install_handlers(on_signal)
    worker = threading.Thread(target=work, name="fedota-device", daemon=True)
    try:
        worker.start()
        while worker.is_alive() and not signalled:
            worker.join(0.05)
        if signalled:
            log.info("stopping")
            daemon.stop()
            worker.join(STOP_GRACE_SECONDS)
            return None
    finally:
        _restore_handlers(previous)
    error = outcome.get("error")
    if isinstance(error, ClientError):
        detail = getattr(error, "detail", "")
        message = f"{error} ({detail})" if detail else str(error)
        raise CliError(message, exit_code_for(error)) from error
    if error is not None:
        raise error
    return outcome.get("result")


def _install_handlers(handler: Callable[[int, Any], None]) -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}


def _restore_handlers(previous: dict[int, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)
