"""First run, restart, trust bootstrap and refusals of `fedota device run --once`."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from fleet_simulator import (
    ACCEPTED,
    CliResult,
    FakeCoordinator,
    FakeFleet,
    TestCA,
    key_sha256,
    snapshot,
)

from fedota.cli.errors import EXIT_REFUSED, EXIT_UNAVAILABLE, EXIT_USAGE
from fedota.trust import ENROLLMENT_KIND, new_token

pytestmark = pytest.mark.timeout(60)
Run = Callable[..., CliResult]


def once(run_cli: Run, coordinator: FakeCoordinator, state: Path, *extra: str) -> CliResult:
    return run_cli(
        "device",
        "run",
        "--once",
        "--coordinator",
        coordinator.address,
        "--state",
        str(state),
        *extra,
    )


def test_first_run_enrolls_and_writes_the_state_dir(
    run_cli: Run, coordinator: FakeCoordinator, fleet: FakeFleet, state_dir: Path
) -> None:
    token = fleet.mint_token()

    result = once(
        run_cli,
        coordinator,
        state_dir,
        "--token",
        token,
        "--label",
        "site=lab",
        "--hardware-class",
        "int8",
    )

    assert result.code == 0, result.err
    device = fleet.only_device()
    assert result.out == f"{device.id} pending\n"
    assert f"enrolled as {device.id} (pending approval)" in result.log
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    files = snapshot(state_dir)
    assert sorted(files) == ["ca.crt", "device.crt", "device.key", "device.pub", "identity.json"]
    assert all(mode == 0o600 for _, mode in files.values())

    key = serialization.load_pem_private_key(files["device.key"][0], password=None)
    assert key_sha256(key.public_key()) == device.key_sha256
    certificate = x509.load_pem_x509_certificate(files["device.crt"][0])
    assert certificate.serial_number == device.serial
    assert files["ca.crt"][0] == fleet.ca.pem
    pub = files["device.pub"][0].decode()
    assert pub.startswith("ecdsa-sha2-nistp256 ")
    expected_pub = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    assert pub.split()[:2] == expected_pub.decode().split()

    identity = json.loads(files["identity.json"][0])
    assert identity["device_id"] == device.id
    assert identity["coordinator"] == coordinator.address
    assert identity["device_endpoint"] == f"127.0.0.1:{coordinator.device_port}"
    assert identity["hardware_class"] == "int8"

    (enroll,) = fleet.calls("Enroll")
    assert enroll.token == token
    assert dict(enroll.labels) == {"site": "lab"}
    assert enroll.hardware.hardware_class == "int8"
    assert enroll.hardware.cpu_count >= 1 and enroll.hardware.memory_bytes > 0
    assert enroll.hardware.python_version and enroll.hardware.daemon_version
    assert len(fleet.calls("Heartbeat")) == 1
    # The private key never leaves the device: no request carries any form of it.
    secret = key.private_numbers().private_value.to_bytes(32, "big")
    for _, request in fleet.requests:
        wire = request.SerializeToString()
        assert secret not in wire and files["device.key"][0] not in wire


def test_restart_reuses_the_identity_and_never_enrolls_again(
    run_cli: Run, coordinator: FakeCoordinator, fleet: FakeFleet, state_dir: Path
) -> None:
    token = fleet.mint_token(uses=5)
    assert once(run_cli, coordinator, state_dir, "--token", token).code == 0
    before = snapshot(state_dir)
    device = fleet.only_device()
    device.state = ACCEPTED

    again = once(run_cli, coordinator, state_dir, "--token", token)
    # Neither token nor coordinator is needed once enrolled.
    bare = run_cli("device", "run", "--once", "--state", str(state_dir))

    assert (again.code, again.out) == (0, f"{device.id} accepted\n")
    assert "enrollment token is not needed and is ignored" in again.log
    assert (bare.code, bare.out) == (0, f"{device.id} accepted\n")
    assert len(fleet.calls("Enroll")) == 1
    assert len(fleet.calls("Heartbeat")) == 3
    assert snapshot(state_dir) == before


def test_auto_accepted_device_reports_accepted(
    run_cli: Run, coordinator: FakeCoordinator, fleet: FakeFleet, state_dir: Path
) -> None:
    result = once(run_cli, coordinator, state_dir, "--token", fleet.mint_token(auto_accept=True))

    assert (result.code, result.out) == (0, f"{fleet.only_device().id} accepted\n")


def test_ca_cert_file_with_a_bare_secret_enrolls(
    run_cli: Run, coordinator: FakeCoordinator, fleet: FakeFleet, state_dir: Path, tmp_path: Path
) -> None:
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(fleet.ca.pem)
    secret = fleet.mint_token().split(".")[1]

    result = once(run_cli, coordinator, state_dir, "--token", secret, "--ca-cert", str(ca_file))

    assert result.code == 0, result.err
    assert fleet.calls("Enroll")[0].token == secret


def test_environment_supplies_coordinator_and_token(
    run_cli: Run,
    coordinator: FakeCoordinator,
    fleet: FakeFleet,
    state_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FEDOTA_COORDINATOR", coordinator.address)
    monkeypatch.setenv("FEDOTA_ENROLL_TOKEN", fleet.mint_token())

    result = run_cli("device", "run", "--once", "--state", str(state_dir))

    assert (result.code, result.out) == (0, f"{fleet.only_device().id} pending\n")


def test_token_pinning_another_ca_refuses_and_writes_nothing(
    run_cli: Run, coordinator: FakeCoordinator, fleet: FakeFleet, state_dir: Path
) -> None:
    impostor_pin = str(new_token(ENROLLMENT_KIND, TestCA("another fleet").pem))

    result = once(run_cli, coordinator, state_dir, "--token", impostor_pin)

    assert result.code == EXIT_UNAVAILABLE
    assert "is not the coordinator this token was made for" in result.err
    assert len(result.err.strip().splitlines()) == 1
    assert not state_dir.exists()
    assert fleet.requests == []


def test_ca_cert_that_the_token_does_not_pin_refuses_and_writes_nothing(
    run_cli: Run, coordinator: FakeCoordinator, fleet: FakeFleet, state_dir: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other-ca.pem"
    other.write_bytes(TestCA("another fleet").pem)

    result = once(
        run_cli, coordinator, state_dir, "--token", fleet.mint_token(), "--ca-cert", str(other)
    )

    assert result.code == EXIT_UNAVAILABLE
    assert "for different coordinators" in result.err
    assert not state_dir.exists()
    assert fleet.requests == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda fleet, secret: fleet.tokens.pop(secret), "enrollment token unknown"),
        (
            lambda fleet, secret: setattr(fleet.tokens[secret], "expired", True),
            "enrollment token expired",
        ),
        (
            lambda fleet, secret: setattr(fleet.tokens[secret], "revoked", True),
            "enrollment token revoked",
        ),
        (
            lambda fleet, secret: setattr(fleet.tokens[secret], "uses_left", 0),
            "enrollment token exhausted",
        ),
    ],
    ids=["unknown", "expired", "revoked", "exhausted"],
)
def test_refused_token_exits_refused_and_keeps_only_the_key(
    run_cli: Run,
    coordinator: FakeCoordinator,
    fleet: FakeFleet,
    state_dir: Path,
    change: Callable[[FakeFleet, str], object],
    message: str,
) -> None:
    token = fleet.mint_token()
    change(fleet, token.split(".")[1])

    result = once(run_cli, coordinator, state_dir, "--token", token)

    assert result.code == EXIT_REFUSED
    assert result.err == f"fedota: error: enrollment refused: {message}\n"
    # The key is generated once and kept, so a retry proves the same key; no identity is written.
    assert sorted(snapshot(state_dir)) == ["device.key", "device.pub"]
    assert fleet.devices == {}


def test_a_retry_after_a_refusal_enrolls_the_same_key(
    run_cli: Run, coordinator: FakeCoordinator, fleet: FakeFleet, state_dir: Path
) -> None:
    refused = fleet.mint_token(uses=0)
    assert once(run_cli, coordinator, state_dir, "--token", refused).code == EXIT_REFUSED
    key_before = (state_dir / "device.key").read_bytes()

    result = once(run_cli, coordinator, state_dir, "--token", fleet.mint_token())

    assert result.code == 0
    assert (state_dir / "device.key").read_bytes() == key_before
    key = serialization.load_pem_private_key(key_before, password=None)
    assert fleet.only_device().key_sha256 == key_sha256(key.public_key())


def test_invalid_argument_exits_usage_and_writes_no_identity(
    run_cli: Run, coordinator: FakeCoordinator, fleet: FakeFleet, state_dir: Path
) -> None:
    fleet.fail_next("Enroll", grpc.StatusCode.INVALID_ARGUMENT, "label key too long\n(max 63)")

    result = once(run_cli, coordinator, state_dir, "--token", fleet.mint_token())

    assert result.code == EXIT_USAGE
    assert result.err == "fedota: error: Enroll refused as invalid: label key too long (max 63)\n"
    assert not (state_dir / "identity.json").exists()


def test_key_enrolled_before_a_crash_tells_the_operator_the_way_out(
    run_cli: Run, coordinator: FakeCoordinator, fleet: FakeFleet, state_dir: Path
) -> None:
    token = fleet.mint_token(uses=2)
    assert once(run_cli, coordinator, state_dir, "--token", token).code == 0
    # A crash after the coordinator accepted the CSR, before the reply was journaled.
    for name in ("identity.json", "device.crt", "ca.crt"):
        (state_dir / name).unlink()
    before = snapshot(state_dir)

    result = once(run_cli, coordinator, state_dir, "--token", token)

    assert result.code == EXIT_REFUSED
    device_id = fleet.only_device().id
    assert f"this key is already enrolled as device {device_id}" in result.err
    assert f"revoke that device, then remove {state_dir}" in result.err
    assert len(result.err.strip().splitlines()) == 1
    assert snapshot(state_dir) == before


def test_token_for_another_fleet_on_an_enrolled_dir_is_an_error(
    run_cli: Run, coordinator: FakeCoordinator, fleet: FakeFleet, state_dir: Path
) -> None:
    assert once(run_cli, coordinator, state_dir, "--token", fleet.mint_token()).code == 0
    before = snapshot(state_dir)
    other_fleet_token = str(new_token(ENROLLMENT_KIND, TestCA("another fleet").pem))

    result = once(run_cli, coordinator, state_dir, "--token", other_fleet_token)

    assert result.code == EXIT_USAGE
    assert "the token is for another fleet" in result.err
    assert snapshot(state_dir) == before
    assert len(fleet.calls("Heartbeat")) == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--token", "not-a-token"], "not a fedota token"),
        ([], "an enrollment token is needed"),
    ],
    ids=["malformed-token", "no-token"],
)
def test_bad_enrollment_input_exits_usage_and_writes_nothing(
    run_cli: Run,
    coordinator: FakeCoordinator,
    fleet: FakeFleet,
    state_dir: Path,
    argv: list[str],
    message: str,
) -> None:
    result = once(run_cli, coordinator, state_dir, *argv)

    assert result.code == EXIT_USAGE
    assert message in result.err
    assert not state_dir.exists()
    assert fleet.requests == []


def test_no_coordinator_to_enroll_with_is_a_usage_error(run_cli: Run, state_dir: Path) -> None:
    token = str(new_token(ENROLLMENT_KIND, TestCA().pem))

    result = run_cli("device", "run", "--once", "--token", token, "--state", str(state_dir))

    assert result.code == EXIT_USAGE
    assert "--coordinator" in result.err
    assert not state_dir.exists()
