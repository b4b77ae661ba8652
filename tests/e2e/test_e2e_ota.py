"""Model updates end to end: real coordinator and daemon processes, real sockets, real signing.

Three daemons (fp32, int8 and int4 devices) get version 1 by full download, then version 2 by
patch through a staged rollout; each then answers inference from version 2. The operator drives
it all through `fedota admin`, as in the demo.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_support import list_devices, wait_until

from fedota.cli._demo_models import DemoModels, write_demo_models
from fedota.cli._demo_updates import release_and_roll_out
from fedota.cli._local_fleet import LocalCoordinator, LocalProcess, run_admin, start_device

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

HARDWARE_CLASSES = ("fp32", "int8", "int4")
UPDATE_INTERVAL = "1s"


@pytest.fixture(scope="module")
def demo_models(tmp_path_factory: pytest.TempPathFactory) -> DemoModels:
    return write_demo_models(tmp_path_factory.mktemp("models"))


@pytest.fixture
def fleet(
    coordinator: LocalCoordinator, tmp_path: Path
) -> Iterator[tuple[LocalCoordinator, list[tuple[LocalProcess, Path]]]]:
    """Three accepted daemons polling for updates every second; all stopped at the end."""
    minted = json.loads(run_admin(coordinator, "tokens", "create", "--uses", "3", "--json"))
    started: list[tuple[LocalProcess, Path]] = []
    try:
        for index, hardware_class in enumerate(HARDWARE_CLASSES):
            state = tmp_path / f"device-{index + 1}"
            daemon = start_device(
                f"device-{index + 1}",
                coordinator.public_address,
                minted["token"],
                state,
                log_dir=tmp_path / "logs",
                extra_args=[
                    *("--hardware-class", hardware_class),
                    *("--update-interval", UPDATE_INTERVAL),
                ],
            )
            started.append((daemon, state))
        wait_until(lambda: len(list_devices(coordinator)) == 3, "three enrollments", 90)
        for device in list_devices(coordinator):
            run_admin(coordinator, "devices", "accept", device["id"])
        yield coordinator, started
    finally:
        for daemon, _ in started:
            daemon.stop()


def _rollout(coordinator: LocalCoordinator, rollout_id: str) -> dict[str, Any]:
    return json.loads(run_admin(coordinator, "rollouts", "show", rollout_id, "--json"))


def _served(state: Path) -> dict[str, Any]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "fedota",
            "device",
            "infer",
            "info",
            "--state",
            str(state),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_three_daemons_go_from_v1_to_v2_by_patch_and_answer_from_v2(
    fleet: tuple[LocalCoordinator, list[tuple[LocalProcess, Path]]], demo_models: DemoModels
) -> None:
    coordinator, daemons = fleet

    first = release_and_roll_out(coordinator, demo_models.base, "digits@v1", "100%", 90)
    second = release_and_roll_out(coordinator, demo_models.fine_tuned, "digits@v2", "34%,100%", 90)

    assert sum(int(stage.get("healthy", 0)) for stage in first["stages"]) == 3
    assert sum(int(stage.get("healthy", 0)) for stage in second["stages"]) == 3
    # Version 1 came whole; version 2 by patches far smaller than the artifacts.
    assert int(first["bytes_sent"]) >= int(first["full_bytes"]) > 0
    assert 0 < int(second["bytes_sent"]) < int(second["full_bytes"]) // 4
    for _, state in daemons:
        served = _served(state)
        assert served["version"].startswith("digits@v2")


def test_a_daemon_killed_during_a_rollout_restarts_on_a_verified_model_and_the_rollout_completes(
    fleet: tuple[LocalCoordinator, list[tuple[LocalProcess, Path]]],
    demo_models: DemoModels,
    tmp_path: Path,
) -> None:
    coordinator, daemons = fleet
    victim, state = daemons[0]
    run_admin(coordinator, "models", "import", str(demo_models.base), "--family", "digits")
    run_admin(coordinator, "releases", "create", "digits@v1", timeout=300)
    created = json.loads(
        run_admin(
            coordinator,
            "rollouts",
            "create",
            "digits@v1",
            "--cohort",
            "default",
            "--stages",
            "100%",
            "--json",
        )
    )

    # Whatever step its update pass is at (asking, downloading, applying), a power cut.
    time.sleep(0.5)
    victim.kill()
    restarted = start_device(
        "device-1-restarted",
        coordinator.public_address,
        "",
        state,
        log_dir=tmp_path / "logs",
        extra_args=["--update-interval", UPDATE_INTERVAL],
    )
    daemons.append((restarted, state))

    wait_until(
        lambda: _rollout(coordinator, created["id"])["state"] == "completed",
        "the rollout to complete after the restart",
        90,
    )
    stages = _rollout(coordinator, created["id"])["stages"]
    assert sum(int(stage.get("healthy", 0)) for stage in stages) == 3
    assert sum(int(stage.get("failed", 0)) for stage in stages) == 0
    assert _served(state)["version"] == "digits@v1"
