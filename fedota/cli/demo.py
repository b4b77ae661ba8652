"""`fedota demo`: a coordinator and a few device daemons on this machine, end to end.

Everything runs as real processes on loopback ports in a temporary directory: the coordinator
starts on embedded defaults (SQLite), an enrollment token is minted, the daemons enroll, the
operator accepts them and the fleet table is shown; then two model versions are released and
rolled out to the daemons (the second by patch) and each daemon answers inference from it; the
daemons collect examples, a federated campaign on Flower learns from them, its result is rolled
out by patch and answers in turn; and every process is stopped again.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from fedota.cli.errors import EXIT_FAILURE, CliError

HARDWARE_CLASSES = ("fp32", "int8", "int4")
# The daemons ask for updates this often, so a rollout completes in seconds.
UPDATE_INTERVAL = "1s"
ACCEPTED_LINE = re.compile(r"accepted")


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--devices", type=int, default=3, metavar="N", help="device daemons to start (1-10)"
    )
    parser.add_argument(
        "--keep",
        type=Path,
        metavar="DIR",
        help="keep the coordinator data, state directories and logs in DIR (default: a temp dir)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=90.0,
        metavar="S",
        help="deadline for each step (for the campaign: each of its exchanges)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.devices <= 10:
        raise CliError(f"--devices must be between 1 and 10, not {args.devices}")
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        if any(args.keep.iterdir()):
            raise CliError(f"--keep {args.keep}: the directory must be empty")
        return _demo(args.keep, args.devices, args.timeout)
    with tempfile.TemporaryDirectory(prefix="fedota-demo-") as tmp:
        return _demo(Path(tmp), args.devices, args.timeout)


def _demo(root: Path, device_count: int, timeout: float) -> int:
    from rich.console import Console

    from fedota.cli._demo_campaign import learn_from_the_fleet
    from fedota.cli._demo_updates import ship_two_versions
    from fedota.cli._local_fleet import (
        LocalCoordinator,
        ProcessFailed,
        run_admin,
        start_device,
    )

    console = Console(stderr=False)
    logs = root / "logs"
    logs.mkdir()
    running: list[Any] = []  # coordinator first, daemons after; stopped in reverse
    try:
        try:
            console.print("[bold]1.[/] starting the coordinator (SQLite, loopback ports)")
            coordinator = LocalCoordinator.start(
                root / "coordinator",
                log_dir=logs,
                extra_args=["--heartbeat-interval", "2s"],
                timeout=timeout,
            )
            running.append(coordinator.process)
            console.print(
                f"   public port {coordinator.public_address}, "
                f"device port (mTLS) {coordinator.device_address}"
            )

            console.print(f"[bold]2.[/] minting an enrollment token for {device_count} devices")
            minted = json.loads(
                run_admin(coordinator, "tokens", "create", "--uses", str(device_count), "--json")
            )
            console.print(
                f"   token {minted['id']}: {device_count} uses, expires {minted['expires_at']}"
            )

            console.print(f"[bold]3.[/] starting {device_count} device daemons; each enrolls")
            daemons = []
            for index in range(device_count):
                hardware_class = HARDWARE_CLASSES[index % len(HARDWARE_CLASSES)]
                daemon = start_device(
                    f"device-{index + 1}",
                    coordinator.public_address,
                    minted["token"],
                    root / f"device-{index + 1}",
                    log_dir=logs,
                    extra_args=[
                        *("--hardware-class", hardware_class),
                        *("--label", f"site=lab-{index % 2}"),
                        *("--update-interval", UPDATE_INTERVAL),
                    ],
                )
                running.append(daemon)
                daemons.append(daemon)
            devices = _wait_for_devices(coordinator, device_count, timeout)
            console.print(run_admin(coordinator, "devices", "list"), end="")

            console.print("[bold]4.[/] the operator accepts them")
            for device in devices:
                run_admin(coordinator, "devices", "accept", device["id"])
            for daemon in daemons:
                daemon.wait_for_line(ACCEPTED_LINE, timeout)
            _wait_for_heartbeats_since_accept(coordinator, device_count, timeout)

            console.print("[bold]5.[/] the fleet")
            console.print(run_admin(coordinator, "devices", "list"), end="")

            states = [root / f"device-{index + 1}" for index in range(device_count)]
            ship_two_versions(console, coordinator, states, root, timeout)
            learn_from_the_fleet(console, coordinator, states, timeout)
        except ProcessFailed as exc:
            console.print(f"[red]demo failed:[/] {exc}")
            console.print(f"   logs: {logs}")
            return EXIT_FAILURE
        console.print("[bold]13.[/] stopping every process")
    finally:
        unclean = [(p.name, status) for p in reversed(running) if (status := p.stop()) != 0]
    if unclean:
        named = ", ".join(f"{name} exited {status}" for name, status in unclean)
        console.print(f"[red]unclean shutdown:[/] {named}; logs: {logs}")
        return EXIT_FAILURE
    console.print("[green]demo finished[/]: coordinator and devices stopped cleanly (exit 0)")
    return 0


def _list_devices(coordinator: Any) -> list[dict[str, Any]]:
    from fedota.cli._local_fleet import run_admin

    return json.loads(run_admin(coordinator, "devices", "list", "--json"))


def _wait_for_devices(coordinator: Any, count: int, timeout: float) -> list[dict[str, Any]]:
    from fedota.cli._local_fleet import ProcessFailed

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        devices = _list_devices(coordinator)
        if len(devices) >= count:
            return devices
        time.sleep(0.5)
    raise ProcessFailed(f"only {len(devices)} of {count} devices enrolled within {timeout:.0f} s")


def _wait_for_heartbeats_since_accept(coordinator: Any, count: int, timeout: float) -> None:
    """Wait until every device is accepted and has been seen since."""
    from fedota.cli._local_fleet import ProcessFailed

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        devices = _list_devices(coordinator)
        seen = [d for d in devices if d["state"] == "accepted" and d.get("last_seen")]
        if len(seen) >= count:
            return
        time.sleep(0.5)
    raise ProcessFailed(f"devices did not report in as accepted within {timeout:.0f} s")
