"""`fedota admin rollouts` against a real coordinator (SQLite and PostgreSQL): create, list, show,
pause, resume, abort, rollback, and bad input refused with exit code 2."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from cli_harness import Result, Run, parse_table
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fedota.ml import digits
from fedota.ml.checkpoint import save_checkpoint
from fedota.protos.v1 import device_pb2, fleet_pb2, fleet_pb2_grpc
from fedota.server import Address, Coordinator, Limits, Settings

pytestmark = pytest.mark.timeout(120)

LOOPBACK = Address("127.0.0.1", 0)


@dataclasses.dataclass(frozen=True)
class Fleet:
    """A running coordinator with digits@v1 released and one accepted device in `default`."""

    coordinator: Coordinator
    device_id: str


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model, _ = digits.train_digits(seed=0, epochs=1)
    path = tmp_path_factory.mktemp("model") / "digits.safetensors"
    save_checkpoint(
        path,
        model.state_dict(),
        architecture=digits.ARCHITECTURE,
        config=digits.config_of(model),
        variant="fp32",
    )
    return path


@pytest.fixture
def real(db_url: str, tmp_path: Path) -> Iterator[Coordinator]:
    settings = Settings(
        data_dir=tmp_path / "data",
        db_url=db_url,
        listen=LOOPBACK,
        device_listen=LOOPBACK,
        repository_listen=LOOPBACK,
        limits=Limits(thread_pool_size=8),
    )
    coordinator = Coordinator.start(settings)
    try:
        yield coordinator
    finally:
        coordinator.stop(grace=0)


def _ok(result: Result) -> str:
    assert result.code == 0, result.err
    return result.out


def _enroll(coordinator: Coordinator, token: str) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "device")]))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )
    credentials = grpc.ssl_channel_credentials(root_certificates=coordinator.ca_certificate_pem)
    with grpc.secure_channel(f"127.0.0.1:{coordinator.public.port}", credentials) as channel:
        response = fleet_pb2_grpc.FleetStub(channel).Enroll(
            fleet_pb2.EnrollRequest(
                token=token,
                csr_pem=csr,
                hardware=device_pb2.HardwareProfile(hardware_class="fp32", cpu_count=1),
            ),
            timeout=10,
        )
    return str(response.device_id)


@pytest.fixture
def fleet(admin_of: Run, real: Coordinator, checkpoint: Path) -> Fleet:
    _ok(admin_of("models", "import", str(checkpoint), "--family", "digits"))
    _ok(admin_of("releases", "create", "digits@v1", "--variant", "fp32"))
    minted = json.loads(_ok(admin_of("tokens", "create", "--auto-accept", "--json")))
    return Fleet(real, _enroll(real, minted["token"]))


def _show(admin_of: Run, rollout_id: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(_ok(admin_of("rollouts", "show", rollout_id, "--json")))
    return document


def test_an_operator_drives_a_rollout_through_every_command(admin_of: Run, fleet: Fleet) -> None:
    created = json.loads(
        _ok(
            admin_of(
                *("rollouts", "create", "digits@v1", "--cohort", "default"),
                *("--stages", "50%,100%", "--success-threshold", "90%", "--max-failure", "0%"),
                "--json",
            )
        )
    )
    rollout_id = created["id"]
    assert created["version"] == "digits@v1" and created["cohort"] == "default"
    assert created["success_threshold"] == pytest.approx(0.9) and created["max_failure"] == 0
    assert [s["fraction"] for s in created["stages"]] == [0.5, 1.0]
    # An empty first stage passes at once, so the one device is assigned either way.
    assert created["state"] == "running" and sum(s["devices"] for s in created["stages"]) == 1

    listed = parse_table(_ok(admin_of("rollouts", "list")))
    assert [(r["ID"], r["VERSION"], r["STATE"]) for r in listed] == [
        (rollout_id, "digits@v1", created["state"])
    ]

    shown = _ok(admin_of("rollouts", "show", rollout_id))
    assert f"{rollout_id}" in shown and "Bytes sent" in shown and "Max failure" in shown
    stages = parse_table(shown[shown.index("STAGE") :])
    assert [row["SHARE"] for row in stages] == ["50%", "100%"]
    assert {"DEVICES", "HEALTHY", "FAILED", "IN PROGRESS", "ROLLED BACK"} <= set(stages[0])

    assert "is paused" in _ok(admin_of("rollouts", "pause", rollout_id, "--reason", "lunch"))
    assert _show(admin_of, rollout_id)["reason"] == "lunch"
    assert "is running" in _ok(admin_of("rollouts", "resume", rollout_id))
    aborted = _ok(admin_of("rollouts", "abort", rollout_id, "--reason", "bad canary"))
    assert aborted.startswith(f"rollout {rollout_id} is aborted: bad canary")
    rolled = json.loads(_ok(admin_of("rollouts", "rollback", rollout_id, "--json")))
    assert rolled["state"] == "aborted"
    assert rolled["reason"].startswith("rolled back by an operator")


def test_a_running_rollout_pauses_and_a_second_one_for_the_cohort_is_refused(
    admin_of: Run, fleet: Fleet
) -> None:
    created = json.loads(
        _ok(
            admin_of(
                *("rollouts", "create", "digits@v1", "--cohort", "default"),
                *("--stages", "100%", "--json"),
            )
        )
    )
    # One stage of 100%: the accepted device is assigned and has not reported yet.
    assert created["state"] == "running" and created["stages"][0]["devices"] == 1

    paused = json.loads(_ok(admin_of("rollouts", "pause", created["id"], "--json")))
    second = admin_of("rollouts", "create", "digits@v1", "--cohort", "default", "--stages", "100%")
    again = admin_of("rollouts", "pause", created["id"])

    assert paused["state"] == "paused"
    assert second.code == 2 and second.out == ""
    assert second.err == (
        f"fedota: error: cohort default already has rollout {created['id']} paused; abort it or "
        "let it complete first\n"
    )
    assert again.code == 2
    assert again.err == f"fedota: error: rollout {created['id']} is paused; it cannot be paused\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--stages", "10%,5%,100%"), "stage 2 (5%) must be above stage 1 (10%)"),
        (("--stages", "10%,50%"), "the last stage must be 100% (got 50%)"),
        (("--stages", "100%", "--cohort", "nope"), "cohort nope does not exist"),
    ],
)
def test_rules_the_coordinator_checks_are_one_line_and_exit_2(
    admin_of: Run, fleet: Fleet, args: tuple[str, ...], message: str
) -> None:
    options = {"--cohort": "default", **dict(zip(args[::2], args[1::2], strict=True))}
    flat = [part for pair in options.items() for part in pair]

    result = admin_of("rollouts", "create", "digits@v1", *flat)

    assert result.code == 2 and result.out == ""
    assert result.err.count("\n") == 1 and message in result.err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--stages", "ten,100%"), "'ten' is not a percentage from 0% to 100%"),
        (("--stages", "150%"), "'150%' is not a percentage"),
        (("--stages", "100%", "--success-threshold", "0%"), "must be above 0%"),
        (("--stages", "100%", "--max-failure=-1%"), "'-1%' is not a percentage"),
        (("--stages", ",".join(["1%"] * 21)), "at most 20 stages"),
        ((), "the following arguments are required: --stages"),
    ],
)
def test_malformed_flags_are_refused_before_any_call(
    run: Run, args: tuple[str, ...], message: str
) -> None:
    result = run(
        *("admin", "--coordinator", "127.0.0.1:1", "--token", "unused"),
        *("rollouts", "create", "digits@v1", "--cohort", "default", *args),
    )

    assert result.code == 2 and result.out == ""
    assert message in result.err.splitlines()[-1]


def test_unknown_rollouts_are_not_found_with_exit_2(admin_of: Run, real: Coordinator) -> None:
    shown = admin_of("rollouts", "show", "rol_00ff")
    bad = admin_of("rollouts", "abort", "nope")
    empty = admin_of("rollouts", "list")

    assert shown.code == 2 and "rollout rol_00ff does not exist" in shown.err
    assert bad.code == 2 and "'nope' is not a rollout id of the form rol_<hex>" in bad.err
    assert _ok(empty).strip() == "no rollouts"
