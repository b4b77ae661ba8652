"""`fedota admin` as an operator runs it: a real process, settings from the environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from cli_harness import Coordinator
from cli_pki import ServerPki
from fake_admin import make_device


def _fedota(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fedota", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_devices_list_json_in_a_real_process(coordinator: Coordinator) -> None:
    coordinator.fake.devices.extend(make_device(n) for n in range(1, 4))
    env = {"FEDOTA_COORDINATOR": coordinator.address, "FEDOTA_TOKEN": coordinator.api_token}

    result = _fedota("admin", "devices", "list", "--json", env=env)

    assert result.returncode == 0, result.stderr
    assert [d["id"] for d in json.loads(result.stdout)] == ["dev-0001", "dev-0002", "dev-0003"]
    assert result.stderr == ""


def test_a_failed_handshake_is_one_line_on_stderr(
    coordinator: Coordinator, other_pki: ServerPki, tmp_path: Path
) -> None:
    other_ca = tmp_path / "other-ca.pem"
    other_ca.write_bytes(other_pki.ca_pem)
    env = {
        "FEDOTA_COORDINATOR": coordinator.address,
        "FEDOTA_TOKEN": coordinator.api_token,
        "FEDOTA_CA_CERT": str(other_ca),
    }

    result = _fedota("admin", "cohorts", "list", env=env)

    assert result.returncode == 3
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("fedota: error: coordinator at ")
