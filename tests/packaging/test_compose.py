"""docker-compose.yml and the Dockerfile, checked against the repository and the real CLI.

No Docker engine runs here, so the compose file is read as data: its services, build contexts,
volumes and wiring, and every command is parsed by `fedota`'s own argparse tree, so a renamed or
removed flag breaks this test rather than a deployment.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from fedota.cli.main import build_parser

REPO = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
DEVICES = sorted(name for name in SERVICES if name.startswith("device-"))
FEDOTA_SERVICES = ["coordinator", *DEVICES]
DOCKERFILE = (REPO / "Dockerfile").read_text()


def _entrypoint() -> list[str]:
    (line,) = [line for line in DOCKERFILE.splitlines() if line.startswith("ENTRYPOINT ")]
    entrypoint: list[str] = json.loads(line.removeprefix("ENTRYPOINT "))
    return entrypoint


def _parse(service: str) -> argparse.Namespace:
    """The service's command as the `fedota` in its image parses it."""
    command = [str(arg) for arg in SERVICES[service]["command"]]
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            return build_parser().parse_args(command)
    except SystemExit:
        pytest.fail(f"{service}: `fedota {' '.join(command)}` does not parse: {stderr.getvalue()}")


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def _mounts(service: str) -> dict[str, str]:
    """Container path -> volume name (or host path) of a service."""
    mounts = {}
    for entry in SERVICES[service].get("volumes", []):
        source, target = entry.split(":")[:2]
        mounts[target] = source
    return mounts


def test_the_services_exist() -> None:
    assert {"postgres", "coordinator"} <= set(SERVICES)
    assert len(DEVICES) >= 2


@pytest.mark.parametrize("service", FEDOTA_SERVICES)
def test_build_context_is_this_repository_and_its_dockerfile(service: str) -> None:
    build = SERVICES[service]["build"]
    context = (REPO / build["context"]).resolve()

    assert context == REPO
    assert (context / build.get("dockerfile", "Dockerfile")).resolve() == REPO / "Dockerfile"


def test_the_image_runs_fedota() -> None:
    assert _entrypoint() == ["fedota"]


@pytest.mark.parametrize("service", FEDOTA_SERVICES)
def test_every_command_parses_with_the_real_cli(service: str) -> None:
    args = _parse(service)

    assert callable(args.handler)


def test_every_named_volume_is_declared() -> None:
    declared = set(COMPOSE.get("volumes") or {})
    for service in SERVICES:
        for source in _mounts(service).values():
            if not source.startswith((".", "/", "~", "$")):
                assert source in declared, f"{service} mounts undeclared volume {source!r}"


def test_the_coordinator_keeps_its_data_on_a_volume_and_uses_postgres() -> None:
    args = _parse("coordinator")
    url = args.db

    assert args.command == "coordinator"
    assert _mounts("coordinator").get(str(args.data)) in COMPOSE["volumes"]
    assert url.startswith("postgresql+psycopg://")
    assert re.search(r"@postgres:5432/", url), url
    assert SERVICES["coordinator"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "healthcheck" in SERVICES["postgres"]
    assert _mounts("postgres").get("/var/lib/postgresql/data") in COMPOSE["volumes"]
    assert SERVICES["postgres"]["image"].startswith("postgres:16")


@pytest.mark.parametrize("device", DEVICES)
def test_devices_reach_the_coordinator_service(device: str) -> None:
    coordinator = _parse("coordinator")
    args = _parse(device)
    host, port = _host_port(args.coordinator)

    assert args.command == "device"
    assert host == "coordinator"
    assert port == _host_port(coordinator.listen)[1]
    # The device verifies the server certificate against the name it dials.
    assert host in coordinator.san
    assert args.token == "${FEDOTA_ENROLL_TOKEN}"
    assert "coordinator" in SERVICES[device]["depends_on"]


def test_each_device_has_a_state_volume_of_its_own() -> None:
    volumes = []
    for device in DEVICES:
        volume = _mounts(device).get(str(_parse(device).state))
        assert volume in COMPOSE["volumes"], f"{device}: --state is not on a declared volume"
        volumes.append(volume)

    assert len(set(volumes)) == len(DEVICES)


def test_the_dockerfile_installs_cpu_torch_before_the_project() -> None:
    lines = DOCKERFILE.splitlines()
    torch = next(i for i, line in enumerate(lines) if re.search(r"pip install .*TORCH", line))
    project = next(i for i, line in enumerate(lines) if 'pip install ".[postgres]"' in line)

    assert [line for line in lines if line.startswith("FROM ")] == ["FROM python:3.11-slim"]
    assert "https://download.pytorch.org/whl/cpu" in DOCKERFILE
    assert "--index-url" in lines[torch]
    assert torch < project


def test_the_dockerfile_copies_every_part_of_the_package() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    folders = set(config["tool"]["setuptools"]["package-dir"].values())
    copied = set(re.findall(r"^COPY (\S+) ", DOCKERFILE, re.MULTILINE))

    assert folders <= copied, f"not copied into the image: {sorted(folders - copied)}"


def test_the_build_context_leaves_out_the_local_environment() -> None:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    ignored = {line.strip() for line in lines if line.strip() and not line.startswith("#")}

    assert {".git", ".venv"} <= ignored
    assert not {"pyproject.toml", "README.md", "fedota"} & ignored
