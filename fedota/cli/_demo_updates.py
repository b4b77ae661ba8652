"""The demo's update steps: two model versions released, rolled out, and answered from.

Version 1 reaches the devices as full downloads, version 2 as patches through a staged rollout;
the operator's commands (`fedota admin models|releases|rollouts`) do all of it, as they would on
a real fleet, and each daemon's local inference API shows the version it now runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from fedota.cli._demo_models import SEED, write_demo_models
from fedota.cli._local_fleet import LocalCoordinator, ProcessFailed, run_admin
from fedota.cli.output import human_bytes

FAMILY = "digits"
# A release builds every variant's artifact and signs them: slower than a listing.
RELEASE_TIMEOUT = 300.0


def ship_two_versions(
    console: Console, coordinator: LocalCoordinator, states: list[Path], root: Path, timeout: float
) -> None:
    """Train, release and roll out versions 1 and 2; show bytes sent and what devices serve.

    Raises:
        ProcessFailed: a command failed or a rollout did not complete within `timeout`.
    """
    console.print("[bold]6.[/] training two versions of a digits classifier")
    models = write_demo_models(root / "models")
    console.print(
        f"   v1: accuracy {models.base_accuracy:.3f}; v2 retrains v1's output layer: "
        f"accuracy {models.fine_tuned_accuracy:.3f}"
    )

    console.print("[bold]7.[/] releasing v1 and rolling it out to every device (full downloads)")
    first = release_and_roll_out(coordinator, models.base, f"{FAMILY}@v1", "100%", timeout)
    print_bytes(console, first)

    console.print("[bold]8.[/] releasing v2 and rolling it out in two stages (patches)")
    second = release_and_roll_out(
        coordinator, models.fine_tuned, f"{FAMILY}@v2", "34%,100%", timeout
    )
    console.print(run_admin(coordinator, "rollouts", "show", second["id"]), end="")
    print_bytes(console, second)

    console.print("[bold]9.[/] each device answers from what it now runs")
    show_answers(console, coordinator, states)


def show_answers(console: Console, coordinator: LocalCoordinator, states: list[Path]) -> None:
    """Each device's served version and its reading of a held-out digit; then the fleet table."""
    pixels, label = _held_out_digit()
    for state in states:
        info = _device_cli("infer", "info", "--state", str(state), "--json")
        answer = _device_cli("infer", "predict", "--state", str(state), "--json", *pixels)
        console.print(
            f"   {state.name}: {info.get('version', '?')} ({info.get('variant', '?')}) "
            f"reads a held-out {label} as {answer.get('label', '?')}"
        )
    console.print(run_admin(coordinator, "devices", "list"), end="")


def release_and_roll_out(
    coordinator: LocalCoordinator, checkpoint: Path, ref: str, stages: str, timeout: float
) -> dict[str, Any]:
    """Import `checkpoint`, release it as `ref`, roll it out to the default cohort in `stages`
    and wait until the rollout completes; the rollout as `rollouts show --json` prints it.

    Raises:
        ProcessFailed: a command failed, the rollout aborted, or `timeout` passed.
    """
    run_admin(coordinator, "models", "import", str(checkpoint), "--family", FAMILY)
    return roll_out(coordinator, ref, stages, timeout)


def roll_out(
    coordinator: LocalCoordinator, ref: str, stages: str, timeout: float
) -> dict[str, Any]:
    """Release the registry's version `ref` and roll it out as `release_and_roll_out` does.

    Raises:
        ProcessFailed: a command failed, the rollout aborted, or `timeout` passed.
    """
    run_admin(coordinator, "releases", "create", ref, timeout=RELEASE_TIMEOUT)
    created = json.loads(
        run_admin(
            coordinator,
            "rollouts",
            "create",
            ref,
            "--cohort",
            "default",
            "--stages",
            stages,
            "--json",
        )
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        shown = json.loads(run_admin(coordinator, "rollouts", "show", created["id"], "--json"))
        if shown["state"] == "completed":
            return shown  # type: ignore[no-any-return]
        if shown["state"] == "aborted":
            raise ProcessFailed(f"the rollout of {ref} aborted: {shown.get('reason', '')}")
        time.sleep(0.5)
    raise ProcessFailed(f"the rollout of {ref} did not complete within {timeout:.0f} s")


def print_bytes(console: Console, rollout: dict[str, Any]) -> None:
    sent, full = int(rollout.get("bytes_sent", 0)), int(rollout.get("full_bytes", 0))
    share = f" ({sent / full:.1%} of full)" if full else ""
    console.print(
        f"   bytes sent to the devices: {human_bytes(sent)}; full models: {human_bytes(full)}"
        f"{share}"
    )


def _held_out_digit() -> tuple[list[str], int]:
    """The first test-split digit of the demo models' data: its 64 pixels and its label."""
    from fedota.ml import digits

    data = digits.load_digits_data(seed=SEED)
    return [f"{value:g}" for value in data.x_test[0]], int(data.y_test[0])


def _device_cli(*args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "fedota", "device", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise ProcessFailed(f"fedota device {' '.join(args)}: {done.stderr.strip()}")
    return json.loads(done.stdout)  # type: ignore[no-any-return]
