"""`fedota demo` (what `make demo` runs) works end to end and leaves nothing running."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]


def test_demo_enrolls_accepts_and_stops_everything(tmp_path: Path) -> None:
    kept = tmp_path / "demo"
    done = subprocess.run(
        [sys.executable, "-m", "fedota", "demo", "--devices", "2", "--keep", str(kept)],
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    fleet_table = done.stdout.split("5.", 1)[1].split("6.", 1)[0]
    assert fleet_table.count("accepted") == 2
    # Both devices got version 1 whole, then version 2 by patch, and answer from it.
    assert done.stdout.count("digits@v2") >= 4
    assert "% of full)" in done.stdout
    # Then a campaign learned from their examples and its result answers on both.
    campaign = done.stdout.split("11.", 1)[1]
    assert "completed" in campaign
    result = campaign.split("12. each device answers from ", 1)[1].split()[0]
    assert result.startswith("digits@v") and result != "digits@v2"
    assert campaign.count(f"{result} (") >= 2
    assert "stopped cleanly" in done.stdout
    for device in ("device-1", "device-2"):
        assert (kept / device / "identity.json").is_file()
    # Every process exited on SIGTERM: nothing holds the coordinator's database open.
    log = (kept / "logs" / "coordinator.log").read_text()
    assert "Traceback" not in log


def test_demo_refuses_bad_arguments(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "fedota", "demo", "--devices", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == "fedota: error: --devices must be between 1 and 10, not 0"
