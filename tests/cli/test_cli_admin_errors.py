"""Failures of `fedota admin`: one line on stderr and the exit code the status maps to."""

from __future__ import annotations

import socket

import grpc
import pytest
from cli_harness import Coordinator, Run

from fedota.trust import ENROLLMENT_KIND, new_token


@pytest.mark.parametrize(
    ("status", "exit_code"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, 2),
        (grpc.StatusCode.NOT_FOUND, 2),
        (grpc.StatusCode.FAILED_PRECONDITION, 2),
        (grpc.StatusCode.ALREADY_EXISTS, 2),
        (grpc.StatusCode.UNAUTHENTICATED, 4),
        (grpc.StatusCode.PERMISSION_DENIED, 4),
    ],
)
def test_refusals_print_the_coordinator_message(
    admin: Run, coordinator: Coordinator, status: grpc.StatusCode, exit_code: int
) -> None:
    coordinator.fake.failures["ListDevices"] = (status, "the coordinator's\nown words")

    result = admin("devices", "list")

    assert result.code == exit_code
    assert result.err == "fedota: error: the coordinator's own words\n"
    assert result.out == ""


def test_unavailable_names_the_coordinator(admin: Run, coordinator: Coordinator) -> None:
    coordinator.fake.failures["GetDevice"] = (grpc.StatusCode.UNAVAILABLE, "draining")

    result = admin("devices", "show", "dev-1")

    assert result.code == 3
    assert result.err == (
        f"fedota: error: coordinator at {coordinator.address} is unreachable (draining)\n"
    )


def test_deadline_exceeded_is_unreachable(run: Run, coordinator: Coordinator) -> None:
    coordinator.fake.stalls["ListCohorts"] = 10.0

    result = run(
        "admin",
        "cohorts",
        "list",
        "--coordinator",
        coordinator.address,
        "--token",
        coordinator.api_token,
        "--timeout",
        "0.5",
    )

    assert result.code == 3
    assert result.err == (
        f"fedota: error: coordinator at {coordinator.address} is unreachable (no answer in time)\n"
    )


def test_other_failures_exit_1_with_the_status(admin: Run, coordinator: Coordinator) -> None:
    coordinator.fake.failures["ListCohorts"] = (grpc.StatusCode.INTERNAL, "disk full")

    result = admin("cohorts", "list")

    assert result.code == 1
    assert result.err == "fedota: error: coordinator failed (INTERNAL): disk full\n"


def test_a_wrong_api_token_is_refused(run: Run, coordinator: Coordinator) -> None:
    wrong = str(new_token("fdta1", coordinator.pki.ca_pem))

    result = run("admin", "--coordinator", coordinator.address, "--token", wrong, "devices", "list")

    assert result.code == 4
    assert result.err == "fedota: error: invalid or missing API token\n"


def test_the_token_goes_as_a_bearer_header(admin: Run, coordinator: Coordinator) -> None:
    admin("cohorts", "list")

    assert coordinator.fake.authorizations == [f"Bearer {coordinator.api_token}"]


def test_missing_coordinator_address(run: Run, coordinator: Coordinator) -> None:
    result = run("admin", "--token", coordinator.api_token, "devices", "list")

    assert result.code == 2
    assert result.err.count("\n") == 1
    assert "no coordinator address" in result.err
    assert "--coordinator HOST:PORT" in result.err
    assert "FEDOTA_COORDINATOR" in result.err


def test_missing_token(run: Run, coordinator: Coordinator) -> None:
    result = run("admin", "--coordinator", coordinator.address, "devices", "list")

    assert result.code == 2
    assert result.err.count("\n") == 1
    assert "no operator API token" in result.err
    assert "FEDOTA_TOKEN" in result.err
    assert coordinator.fake.authorizations == []


@pytest.mark.parametrize(
    ("address", "token_kind", "message"),
    [
        ("localhost", "fdta1", "coordinator address 'localhost' is not HOST:PORT"),
        ("127.0.0.1:99999", "fdta1", "is not HOST:PORT"),
        (None, ENROLLMENT_KIND, "this is not an operator API token"),
    ],
)
def test_malformed_settings(
    run: Run, coordinator: Coordinator, address: str | None, token_kind: str, message: str
) -> None:
    token = str(new_token(token_kind, coordinator.pki.ca_pem))

    target = address or coordinator.address
    result = run("admin", "--coordinator", target, "--token", token, "cohorts", "list")

    assert result.code == 2
    assert message in result.err
    assert coordinator.fake.authorizations == []


def test_settings_come_from_the_environment(
    run: Run, coordinator: Coordinator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEDOTA_COORDINATOR", coordinator.address)
    monkeypatch.setenv("FEDOTA_TOKEN", coordinator.api_token)

    assert run("admin", "cohorts", "list").code == 0
    # A flag wins over its variable.
    monkeypatch.setenv("FEDOTA_COORDINATOR", "127.0.0.1:1")
    assert run("admin", "cohorts", "list", "--coordinator", coordinator.address).code == 0


def test_nothing_listening(run: Run, coordinator: Coordinator) -> None:
    with socket.socket() as placeholder:
        # A port that was free a moment ago and has no listener: connection refused.
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    address = f"127.0.0.1:{port}"

    token = coordinator.api_token
    result = run("admin", "--coordinator", address, "--token", token, "cohorts", "list")

    assert result.code == 3
    assert result.err.startswith(f"fedota: error: coordinator at {address} is unreachable")
    assert result.err.count("\n") == 1
