"""The state directory: inconsistent ones are refused untouched; writes are atomic; crashes heal."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fleet_simulator import (
    CliResult,
    FakeCoordinator,
    FakeFleet,
    TestCA,
    key_sha256,
    snapshot,
    utc_now,
)

from fedota.cli.errors import EXIT_USAGE
from fedota.client import StateError, StateStore
from fedota.client.identity import Credentials, IdentityRecord

pytestmark = pytest.mark.timeout(60)
Run = Callable[..., CliResult]


@pytest.fixture
def enrolled(run_cli: Run, coordinator: FakeCoordinator, fleet: FakeFleet, state_dir: Path) -> Path:
    result = run_cli(
        "device",
        "run",
        "--once",
        "--coordinator",
        coordinator.address,
        "--token",
        fleet.mint_token(),
        "--state",
        str(state_dir),
    )
    assert result.code == 0, result.err
    return state_dir


def _foreign_certificate(ca: TestCA) -> bytes:
    other_key = ec.generate_private_key(ec.SECP256R1())
    now = utc_now()
    cert = ca.issue(other_key.public_key(), "dev_other", now, now.replace(year=now.year + 1))
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d, ca: (d / "identity.json").write_text("{not json"), "identity.json is corrupt"),
        (
            lambda d, ca: (d / "identity.json").write_text(json.dumps({"device_id": "dev_x"})),
            "field 'coordinator' is missing",
        ),
        (
            lambda d, ca: (d / "device.crt").write_bytes(_foreign_certificate(ca)),
            "is for public key",
        ),
        (lambda d, ca: (d / "device.crt").write_bytes(b"garbage"), "not a PEM certificate"),
        (
            lambda d, ca: (d / "ca.crt").write_bytes(TestCA("other").pem),
            "not issued by the fleet CA",
        ),
        (lambda d, ca: (d / "ca.crt").unlink(), "ca.crt is missing"),
        (lambda d, ca: (d / "device.key").write_bytes(b"-----BEGIN PRIVATE KEY-----\n"), "corrupt"),
        (lambda d, ca: (d / "device.pub").write_text("ssh-ed25519 AAAA other\n"), "does not match"),
    ],
    ids=[
        "identity-json",
        "identity-fields",
        "cert-other-key",
        "cert-garbage",
        "other-ca",
        "no-ca",
        "key",
        "pub",
    ],
)
def test_inconsistent_state_dir_exits_usage_and_is_left_untouched(
    run_cli: Run,
    enrolled: Path,
    fleet: FakeFleet,
    damage: Callable[[Path, TestCA], object],
    message: str,
) -> None:
    damage(enrolled, fleet.ca)
    before = snapshot(enrolled)
    beats = len(fleet.calls("Heartbeat"))

    result = run_cli("device", "run", "--once", "--state", str(enrolled))
    status = run_cli("device", "status", "--state", str(enrolled))

    assert result.code == EXIT_USAGE
    assert message in result.err
    assert len(result.err.strip().splitlines()) == 1
    assert status.code == EXIT_USAGE
    assert snapshot(enrolled) == before
    assert len(fleet.calls("Heartbeat")) == beats


def test_certificate_without_identity_is_refused_untouched(run_cli: Run, enrolled: Path) -> None:
    (enrolled / "identity.json").unlink()
    before = snapshot(enrolled)

    result = run_cli("device", "run", "--once", "--state", str(enrolled))

    assert result.code == EXIT_USAGE
    assert "no identity.json" in result.err
    assert snapshot(enrolled) == before


def test_status_shows_the_identity_offline(run_cli: Run, enrolled: Path, fleet: FakeFleet) -> None:
    device = fleet.only_device()
    key = serialization.load_pem_private_key((enrolled / "device.key").read_bytes(), password=None)

    table = run_cli("device", "status", "--state", str(enrolled))
    as_json = run_cli("device", "status", "--state", str(enrolled), "--json")

    assert table.code == as_json.code == 0
    view = json.loads(as_json.out)
    assert view["device_id"] == device.id
    assert int(view["certificate_serial"], 16) == device.serial
    assert view["public_key_sha256"] == key_sha256(key.public_key()) == device.key_sha256
    assert view["hardware_class"] == device.hardware.hardware_class
    for value in (device.id, view["certificate_serial"], view["public_key_sha256"]):
        assert value in table.out


def test_status_of_an_empty_dir_is_a_usage_error(run_cli: Run, tmp_path: Path) -> None:
    result = run_cli("device", "status", "--state", str(tmp_path / "nothing"))

    assert result.code == EXIT_USAGE
    assert "holds no enrolled device" in result.err
    assert not (tmp_path / "nothing").exists()


def test_an_enrollment_interrupted_after_its_journal_is_finished_on_restart(
    enrolled: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = StateStore(enrolled).load()
    assert source is not None
    target = tmp_path / "crashed"
    store = StateStore(target)
    target.mkdir(mode=0o700)
    for name in ("device.key", "device.pub"):
        (target / name).write_bytes((enrolled / name).read_bytes())

    def crash(*args: object) -> None:
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(StateStore, "_unpack", crash)
    with pytest.raises(KeyboardInterrupt):
        store.commit_enrollment(source.record, source.credentials)
    monkeypatch.undo()
    assert sorted(snapshot(target)) == ["device.key", "device.pub", "enrollment.journal"]

    seen = store.load()  # read-only: the journal counts as the enrollment
    assert sorted(snapshot(target)) == ["device.key", "device.pub", "enrollment.journal"]
    store.recover()

    assert seen is not None and seen.record == source.record
    assert sorted(snapshot(target)) == [
        "ca.crt",
        "device.crt",
        "device.key",
        "device.pub",
        "identity.json",
    ]
    reloaded = store.load()
    assert reloaded is not None and reloaded.record == source.record
    assert reloaded.credentials.certificate_pem == source.credentials.certificate_pem


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(
    enrolled: Path, fleet: FakeFleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = StateStore(enrolled)
    current = store.load()
    assert current is not None
    before = snapshot(enrolled)
    now = utc_now()
    renewed_pem = fleet.ca.issue(
        current.credentials.key.public_key(), "dev", now, now.replace(year=now.year + 1)
    ).public_bytes(serialization.Encoding.PEM)
    renewed = Credentials.from_pem(
        current.credentials.key_pem, renewed_pem, current.credentials.ca_pem
    )

    def failing_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(StateError, match="No space left on device"):
        store.replace_certificate(renewed)
    monkeypatch.undo()

    assert snapshot(enrolled) == before
    store.replace_certificate(renewed)
    after = snapshot(enrolled)
    assert after["device.crt"] == (renewed_pem, 0o600)
    assert sorted(after) == sorted(before)


def test_new_key_files_are_private(tmp_path: Path) -> None:
    old_umask = os.umask(0o022)
    try:
        store = StateStore(tmp_path / "fresh")
        store.create_key()
    finally:
        os.umask(old_umask)

    assert snapshot(tmp_path / "fresh")["device.key"][1] == 0o600
    assert os.stat(tmp_path / "fresh").st_mode & 0o777 == 0o700
    with pytest.raises(RuntimeError):
        store.create_key()


def test_identity_record_round_trips(enrolled: Path) -> None:
    text = (enrolled / "identity.json").read_bytes()

    assert IdentityRecord.from_json(text).to_json() == text
