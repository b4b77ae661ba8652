"""Certificate renewal (same key, atomic, retried) and the expired-certificate refusal."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from daemon_runner import capture_info, log_lines, make_daemon, running_daemon, wait_for
from fleet_simulator import CliResult, FakeCoordinator, FakeFleet, key_sha256, snapshot, utc_now

from fedota.cli.errors import EXIT_REFUSED
from fedota.client import CertificateExpired

pytestmark = pytest.mark.timeout(60)
Run = Callable[..., CliResult]


def _serial(state: Path) -> int:
    return x509.load_pem_x509_certificate((state / "device.crt").read_bytes()).serial_number


def _enroll_once(run_cli: Run, coordinator: FakeCoordinator, fleet: FakeFleet, state: Path) -> None:
    result = run_cli(
        "device", "run", "--once", "--coordinator", coordinator.address,
        "--token", fleet.mint_token(), "--state", str(state),
    )  # fmt: skip
    assert result.code == 0, result.err


def test_renewal_when_the_coordinator_asks_replaces_the_certificate_with_the_same_key(
    coordinator: FakeCoordinator,
    fleet: FakeFleet,
    state_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    capture_info(caplog)
    daemon = make_daemon(state_dir, coordinator.address, fleet.mint_token())
    with running_daemon(daemon) as run:
        wait_for(lambda: fleet.calls("Heartbeat"), what="a heartbeat")
        before = snapshot(state_dir)
        old_serial = _serial(state_dir)
        device = fleet.only_device()
        device.renew_requested = True
        wait_for(lambda: fleet.calls("RenewCertificate"), what="a renewal")
        beats = len(fleet.calls("Heartbeat"))
        # The coordinator now refuses the old certificate, so these prove the switch.
        wait_for(lambda: len(fleet.calls("Heartbeat")) >= beats + 2, what="beats on the new cert")
        assert not run.error

    after = snapshot(state_dir)
    assert sorted(after) == sorted(before)  # no temp file left behind
    assert after["device.crt"][0] != before["device.crt"][0]
    assert after["device.crt"][1] == 0o600
    assert _serial(state_dir) == device.serial != old_serial
    assert after["device.key"] == before["device.key"]
    key = serialization.load_pem_private_key(after["device.key"][0], password=None)
    (renewal,) = fleet.calls("RenewCertificate")
    csr = x509.load_pem_x509_csr(renewal.csr_pem)
    assert key_sha256(csr.public_key()) == key_sha256(key.public_key())
    assert log_lines(caplog, f"certificate renewed: serial {device.serial:x}")


@pytest.mark.parametrize(("age_days", "renews"), [(21, True), (19, False)])
def test_renewal_after_two_thirds_of_the_lifetime_by_the_local_clock(
    run_cli: Run,
    coordinator: FakeCoordinator,
    fleet: FakeFleet,
    state_dir: Path,
    age_days: int,
    renews: bool,
) -> None:
    _enroll_once(run_cli, coordinator, fleet, state_dir)
    not_before = utc_now() - dt.timedelta(days=age_days)  # of 30 days: 2/3 is day 20
    aged = _install_certificate(fleet, state_dir, not_before, not_before + dt.timedelta(days=30))

    result = run_cli("device", "run", "--once", "--state", str(state_dir))

    assert result.code == 0
    assert not fleet.only_device().renew_requested  # the coordinator did not ask
    assert len(fleet.calls("RenewCertificate")) == (1 if renews else 0)
    assert (_serial(state_dir) != aged) == renews
    assert _serial(state_dir) == fleet.only_device().serial


def test_failed_renewal_is_retried_while_the_old_certificate_keeps_working(
    coordinator: FakeCoordinator,
    fleet: FakeFleet,
    state_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    capture_info(caplog)
    fleet.fail_next("RenewCertificate", grpc.StatusCode.UNAVAILABLE, "signer busy", times=2)
    daemon = make_daemon(state_dir, coordinator.address, fleet.mint_token())
    with running_daemon(daemon) as run:
        wait_for(lambda: fleet.calls("Heartbeat"), what="a heartbeat")
        old_serial = _serial(state_dir)
        fleet.only_device().renew_requested = True
        wait_for(lambda: len(fleet.calls("RenewCertificate")) >= 3, what="three renewal attempts")
        wait_for(lambda: _serial(state_dir) != old_serial, what="the renewed certificate")
        assert not run.error

    failures = log_lines(caplog, "certificate renewal failed: coordinator unavailable")
    assert len(failures) == 2
    assert all("retrying in" in line for line in failures)
    assert _serial(state_dir) == fleet.only_device().serial


def test_renewed_certificate_for_another_key_is_rejected_and_not_written(
    run_cli: Run,
    coordinator: FakeCoordinator,
    fleet: FakeFleet,
    state_dir: Path,
) -> None:
    _enroll_once(run_cli, coordinator, fleet, state_dir)
    before = snapshot(state_dir)
    fleet.renewal_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    fleet.only_device().renew_requested = True

    result = run_cli("device", "run", "--once", "--state", str(state_dir))

    assert result.code == 0  # a failed renewal is not fatal: the old certificate still works
    assert len(fleet.calls("RenewCertificate")) == 1
    assert "certificate renewal failed: the renewed certificate is unusable" in result.log
    assert "is for public key" in result.log
    assert snapshot(state_dir) == before


def _install_certificate(
    fleet: FakeFleet, state: Path, not_before: dt.datetime, not_after: dt.datetime
) -> int:
    """Put a certificate with this validity for the device key in place; its serial."""
    key = serialization.load_pem_private_key((state / "device.key").read_bytes(), password=None)
    certificate = fleet.ca.issue(key.public_key(), fleet.only_device().id, not_before, not_after)
    fleet.only_device().serial = certificate.serial_number
    (state / "device.crt").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return certificate.serial_number


def test_expired_certificate_exits_refused_with_the_way_out(
    run_cli: Run, coordinator: FakeCoordinator, fleet: FakeFleet, state_dir: Path
) -> None:
    _enroll_once(run_cli, coordinator, fleet, state_dir)
    not_after = (utc_now() - dt.timedelta(hours=1)).replace(microsecond=0)
    _install_certificate(fleet, state_dir, not_after - dt.timedelta(days=30), not_after)
    before = snapshot(state_dir)
    beats = len(fleet.calls("Heartbeat"))

    result = run_cli("device", "run", "--once", "--state", str(state_dir))

    assert result.code == EXIT_REFUSED
    assert result.err == (
        f"fedota: error: device certificate expired at {not_after.isoformat()}; the coordinator "
        f"will refuse it: re-enroll with a new enrollment token (remove {state_dir})\n"
    )
    assert len(fleet.calls("Heartbeat")) == beats
    assert snapshot(state_dir) == before
    with pytest.raises(CertificateExpired):
        make_daemon(state_dir, coordinator.address, None).run()
    assert snapshot(state_dir) == before
